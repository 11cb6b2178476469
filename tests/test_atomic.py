"""Atomic writes: a failed write leaves nothing; a finished one is readable like any file."""

from __future__ import annotations

import os
import stat

import pytest

from weightspace import atomic


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic.write_json(target, {"a": object()})
    assert target.read_text().strip().startswith("{")
    assert '"a": 1' in target.read_text()


def test_written_files_follow_the_umask(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic.write_text(target, "x")
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode == 0o666 & ~atomic._UMASK


def test_the_same_weights_are_the_same_bytes_in_every_process(tmp_path):
    """safetensors orders its header maps by a per-process hash: without the canonical header, a
    resumed fine-tune and an uninterrupted one wrote the same tensors in different bytes, and
    content-keyed caches saw new weights."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys, torch\nfrom weightspace.model import weights\n"
        "tensors = {f'layer.{i}.weight': torch.full((3, 2), float(i)) for i in range(8)}\n"
        "weights.save(sys.argv[1], tensors, 'toy.seed0', base='x', base_commit='y', "
        "a='1', b='2', c='3')\n"
    )
    digests = set()
    for i in range(4):  # four processes, four hash seeds
        out = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    from safetensors import safe_open

    # still a valid file
    with safe_open(str(tmp_path / "w0.safetensors"), framework="pt") as handle:
        assert handle.metadata()["model_id"] == "toy.seed0" and len(list(handle.keys())) == 8
