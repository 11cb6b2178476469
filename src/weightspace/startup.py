"""A heavy job's start: Python's cyclic garbage collector paused while the libraries import, and
transformers' scan of its model files done once, not twice.

Importing torch and transformers allocates millions of long-lived objects and frees almost none,
yet the collector walks them again at every allocation threshold: ~0.7-0.9 s of a ~5 s job start
on a 2-core Zen 3 (benchmarks/job_start_candidates.py, variant gc-off). Reference counting still
frees what it can meanwhile; nothing a job computes depends on when the collector runs (weights
stay bitwise identical). After the imports the survivors are frozen out of later collections.

transformers 5.23.0 reads its ~1,600 model files for their ``__all__`` twice per process: once for
``transformers/__init__``'s lazy table and again for ``transformers/models/__init__``'s. The scan
(``transformers.utils.import_utils.create_import_structure_from_path``) caches each folder's result,
but in an ``lru_cache`` of 128 entries, and there are ~550 folders: by the second scan every entry
has been evicted. ``scan_transformers_once`` gives the same function an unbounded cache, so the
second scan is free (~0.35-0.45 s a job; variant scan-once). The function and so the lazy tables
are unchanged; the patch is applied only on the version it was checked against
(``PINNED_TRANSFORMERS``), and on any other version, or any error, transformers is left as it is.
"""

from __future__ import annotations

import functools
import gc
import importlib.machinery
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# the transformers version whose scan the unbounded cache was checked against
PINNED_TRANSFORMERS = "5.23.0"
_SCAN_MODULE = "transformers.utils.import_utils"


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block (a job's imports) with the cyclic collector off; freeze what survived it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


@contextmanager
def job_imports() -> Iterator[None]:
    """A heavy job's imports (torch, transformers, the model code): transformers' scan done once,
    the collector paused. The one way the scripts and the base's loaders import them."""
    scan_transformers_once()
    with collector_paused():
        yield


def _transformers_version() -> str | None:
    """The version of the transformers being imported: its ``__version__`` (set on the first line
    of its ``__init__``, before it imports its utils), else the installed distribution's."""
    version = getattr(sys.modules.get("transformers"), "__version__", None)
    if version is None:
        from importlib.metadata import version as installed

        version = installed("transformers")
    return version


def _scan_once(module) -> bool:
    """Give ``module.create_import_structure_from_path`` an unbounded cache, on the pinned version
    only; True where it has one afterwards."""
    if _transformers_version() != PINNED_TRANSFORMERS:
        return False
    scan = module.create_import_structure_from_path
    if scan.cache_parameters()["maxsize"] is None:
        return True  # patched already
    module.create_import_structure_from_path = functools.lru_cache(maxsize=None)(scan.__wrapped__)
    return True


class _ScanOnceFinder:
    """A meta path finder: finds transformers.utils.import_utils as the path finder does, and
    patches the module right after it executes, before transformers/__init__ goes on to scan its
    models. (Not an importlib.abc.MetaPathFinder: importing importlib.abc costs ~20 ms.)"""

    def find_spec(self, name, path=None, target=None):
        if name != _SCAN_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None  # another finder's module: the import goes on without us
        run = spec.loader.exec_module

        def exec_module(module):
            try:
                sys.meta_path.remove(self)  # one module to patch, once
            except ValueError:
                pass
            run(module)
            try:
                _scan_once(module)
            except Exception:
                pass  # transformers as it is

        spec.loader.exec_module = exec_module
        return spec


def scan_transformers_once() -> None:
    """Have transformers scan its model files once per process (see the module's docstring): patch
    its import utilities now if they are imported, else when they are. Call it before the first
    import of transformers; calling it again, or on another version of transformers, is harmless."""
    try:
        module = sys.modules.get(_SCAN_MODULE)
        if module is not None:
            _scan_once(module)
        elif not any(isinstance(finder, _ScanOnceFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _ScanOnceFinder())
    except Exception:
        pass  # transformers as it is
