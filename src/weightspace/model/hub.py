"""Pins for Hugging Face hub sources: the commit a requested revision (a branch, a tag, None)
resolves to.

A base model or a dataset named by a hub id is read at the commit resolved once here, and that
commit is recorded in the outputs' metadata (results/base/base.json, results/data/*/meta.json),
so a study says exactly which weights and which data it used.
"""

from __future__ import annotations

import logging
import re

COMMIT = re.compile(r"^[0-9a-f]{40}$")

log = logging.getLogger(__name__)


def resolve_commit(
    repo_id: str, revision: str | None = None, repo_type: str = "model"
) -> str | None:
    """The commit hash ``revision`` of ``repo_id`` points to now; None where it cannot be told
    (offline, no cache)."""
    if revision and COMMIT.match(revision):
        return revision
    try:
        from huggingface_hub import HfApi, constants

        resolved = HfApi().resolve_revision(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_files_only=bool(constants.HF_HUB_OFFLINE),
        )
        return getattr(resolved, "resolved", None)
    except Exception as exc:  # unreachable hub, unknown repo: the load itself reports it
        log.warning(
            "could not resolve revision %s of %s %s: %s",
            revision or "main",
            repo_type,
            repo_id,
            exc,
        )
        return None
