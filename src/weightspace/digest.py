"""Content digests: the one way a file's or a value's identity is computed in this package.

Caches key what they store by these digests (features, probe results, Gram entries, prepared data),
so two files with the same bytes are the same input wherever they lie.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from weightspace import WeightspaceError

_REMEMBERED: dict[tuple, str] = {}
CHUNK = 1 << 22


def file_stamp(path: str | Path) -> tuple:
    """(resolved path, size, mtime, inode): a file unchanged since its digest was taken
    keeps its stamp."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise WeightspaceError(f"file {path} does not exist") from None
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, hex; remembered for the process per file stamp
    (an unchanged file is read once)."""
    stamp = file_stamp(path)
    if stamp not in _REMEMBERED:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                h.update(chunk)
        _REMEMBERED[stamp] = h.hexdigest()
    return _REMEMBERED[stamp]


def value_digest(value, length: int = 32) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys), hex,
    its first ``length`` characters."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
        :length
    ]
