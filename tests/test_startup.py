"""A job's start pauses the cyclic garbage collector around its imports, and only there; and
transformers (the pinned version only) scans its model files once, to the same import tables."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

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
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"during": 0, "enabled": True, "after": 2}


def run_fresh(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python process (as a job starts); its last line of output, JSON."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# imports transformers as a job does, then reports the scan's cache and the lazy import tables
SCAN = """
import hashlib, json, sys
import weightspace.startup as startup
if sys.argv[1] != "-":
    startup.PINNED_TRANSFORMERS = sys.argv[1]
hook = sys.argv[2]
if hook == "before":
    startup.scan_transformers_once()
    startup.scan_transformers_once()  # twice: harmless
import transformers
from transformers import AutoModel
if hook == "after":  # transformers imported already: patched at once (the scan is over by then)
    startup.scan_transformers_once()
    first = transformers.utils.import_utils.create_import_structure_from_path
    startup.scan_transformers_once()
    assert transformers.utils.import_utils.create_import_structure_from_path is first
scan = transformers.utils.import_utils.create_import_structure_from_path
info = scan.cache_info()
def table(module):
    return [sorted(module._class_to_module.items()), sorted(module._modules),
            sorted((k, sorted(v)) for k, v in module._object_missing_backend.items())]
tables = [table(sys.modules["transformers"]), table(sys.modules["transformers.models"])]
print(json.dumps({
    "hits": info.hits, "misses": info.misses, "maxsize": info.maxsize,
    "hooks": sum(type(f).__name__ == "_ScanOnceFinder" for f in sys.meta_path),
    "names": [len(t[0]) for t in tables],
    "tables": hashlib.sha256(repr(tables).encode()).hexdigest(),
    "automodel": AutoModel.__module__,
}))
"""


def pinned_transformers() -> None:
    from importlib.metadata import version

    from weightspace.startup import PINNED_TRANSFORMERS

    if version("transformers") != PINNED_TRANSFORMERS:
        pytest.skip(f"transformers {version('transformers')} is not the pinned one")


def test_transformers_scans_its_models_once_and_builds_the_same_import_tables():
    """With the hook: the scan's second pass is all cache hits (unbounded cache); transformers'
    lazy import tables are those of a process without it (the scan missing 128-entry cache)."""
    pinned_transformers()
    plain = run_fresh(SCAN, "-", "none")
    hooked = run_fresh(SCAN, "-", "before")
    assert plain["maxsize"] == 128 and plain["hits"] == 0  # the scan twice, every folder missed
    assert hooked["maxsize"] is None and hooked["hits"] > 400
    assert hooked["misses"] < plain["misses"] / 1.5  # each folder read once
    assert hooked["hooks"] == 0  # the finder is gone once it patched
    assert min(plain["names"]) > 500  # the tables are the real ones
    assert {k: hooked[k] for k in ("names", "tables", "automodel")} == {
        k: plain[k] for k in ("names", "tables", "automodel")
    }


def test_the_scan_is_patched_at_once_where_transformers_is_imported_already():
    pinned_transformers()
    after = run_fresh(SCAN, "-", "after")
    assert after["maxsize"] is None and after["hooks"] == 0


def test_another_transformers_version_is_left_as_it_is():
    pinned_transformers()  # the scan's own cache (128 entries) is the pinned version's
    for hook in ("before", "after"):
        other = run_fresh(SCAN, "4.0.0", hook)
        assert other["maxsize"] == 128 and other["hits"] == 0, hook
