"""A heavy job's start: Python's cyclic garbage collector paused while the libraries import.

Importing torch and transformers allocates millions of long-lived objects and frees almost none,
yet the collector walks them again at every allocation threshold: ~0.7-0.9 s of a ~5 s job start
on a 2-core Zen 3 (benchmarks/job_start_candidates.py, variant gc-off). Reference counting still
frees what it can meanwhile; nothing a job computes depends on when the collector runs (weights
stay bitwise identical). After the imports the survivors are frozen out of later collections.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
