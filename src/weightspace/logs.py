"""Logging for rule scripts: everything (ours, transformers', warnings) goes to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def to_file(path: str | Path | None, level: int = logging.INFO, append: bool = False) -> None:
    """Send the root logger and Python warnings to ``path`` (stderr when None).

    append: keep what earlier attempts wrote (a resumed fine-tune's log tells the whole story).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(path, mode="a" if append else "w")]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress-bar noise in log files
    os.environ.setdefault("TQDM_DISABLE", "1")
    for noisy in ("httpx", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
