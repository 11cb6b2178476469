"""Logging for rule scripts: everything (ours, transformers', warnings, an uncaught error) goes to
the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from weightspace import WeightspaceError

# A rule script's exit status when its input is wrong (a WeightspaceError): retrying cannot help.
BAD_INPUT_EXIT = 3


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
    sys.excepthook = _log_uncaught


def _log_uncaught(kind, error, tb) -> None:
    """An error nobody caught: its traceback into the rule's log (and stderr, the cluster job's
    log), then exit with BAD_INPUT_EXIT for a WeightspaceError (bad input: the message says what to
    fix) or 1 for anything else."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    logging.getLogger("weightspace").critical(
        "uncaught %s: %s\n%s",
        kind.__name__,
        error,
        "".join(traceback.format_exception(kind, error, tb)).rstrip(),
    )
    logging.shutdown()
    sys.__excepthook__(kind, error, tb)
    if issubclass(kind, WeightspaceError):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(BAD_INPUT_EXIT)
