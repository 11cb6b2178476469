"""A job's start pauses the cyclic garbage collector around its imports, and only there."""

from __future__ import annotations

import gc
import subprocess
import sys

from weightspace.startup import collector_paused


def test_the_collector_is_off_inside_and_back_on_after_even_on_an_error():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with collector_paused():
            raise ValueError("an import failed")
    except ValueError:
        pass
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_loading_the_base_runs_no_collection_and_leaves_the_collector_on(tmp_path):
    """In a fresh process (as a job): importing transformers and building the packaged base's
    encoder trigger no collection, and afterwards the collector runs again."""
    code = (
        "import gc, json, sys\n"
        "from weightspace.model import base_model\n"
        "out = sys.argv[1]\n"
        "base_model.materialise({'builtin': 'all-MiniLM-L6-v2'}, out)\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "base_model.load_tokenizer(out)\n"
        "base_model.load_encoder(out)\n"
        "during = len(runs)\n"
        "gc.collect()\n"
        "print(json.dumps({'during': during, 'enabled': gc.isenabled(), 'after': len(runs)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "base")],
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert found == {"during": 0, "enabled": True, "after": 2}
