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
