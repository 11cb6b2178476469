"""Brought models: a user's own fine-tuned checkpoints of the base (config key ``models``).

A brought model is a Hugging Face folder (``path``) or a hub id (``hub``, read at the commit its
``revision`` resolves to). Its encoder, the head removed, must match the base's tensor for tensor:
the same canonical names and shapes (weights.encoder_keys strips a task model's ``bert.`` or
``roberta.`` prefix). Local folders are checked at start-up from their safetensors headers alone,
before any job runs; a hub model is checked by its import job, with the same message. Its encoder
is then written like any fine-tune's (results/weights/brought.{name}.safetensors), and from there on
it is a stored model like the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from weightspace import WeightspaceError
from weightspace.model import weights

log = logging.getLogger(__name__)

# what an import needs from a hub repository (never a pickle)
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json"]


def first_mismatch(layout: dict, base: dict) -> str | None:
    """The first tensor (in name order) where a model's encoder differs from the base's, said in
    words; None where they match."""
    for name in sorted(set(layout) | set(base)):
        if name not in layout:
            return f"'{name}' is missing (the base has it, shape {base[name]})"
        if name not in base:
            return f"'{name}' (shape {layout[name]}) is not in the base's encoder"
        if tuple(layout[name]) != tuple(base[name]):
            return f"'{name}' has shape {tuple(layout[name])}, the base's {tuple(base[name])}"
    return None


def _folder_error(name: str, folder: Path) -> str | None:
    if not folder.is_dir():
        return f"config key models.{name}.path: {folder} is not a folder"
    if not (folder / "config.json").exists():
        return f"config key models.{name}.path: {folder} has no config.json"
    return None


def check_folder(name: str, folder: str | Path, base_layout: dict, base_name: str) -> None:
    """Raise a WeightspaceError naming the model and its first mismatched tensor where its encoder
    is not the base's."""
    folder = Path(folder).expanduser()
    problem = _folder_error(name, folder)
    if problem:
        raise WeightspaceError(problem)
    try:
        layout = weights.encoder_layout(folder)
    except WeightspaceError as err:
        raise WeightspaceError(f"brought model '{name}' ({folder}): {err}") from None
    mismatch = first_mismatch(layout, base_layout)
    if mismatch:
        raise WeightspaceError(
            f"brought model '{name}' ({folder}) is not a fine-tune of the base {base_name}: its "
            f"encoder tensor {mismatch}. A brought model must share the base's encoder: the same "
            "tensor names and shapes once the head is removed"
        )


def check(config: dict, base_folder: str | Path | None, base_name: str) -> None:
    """Start-up check of every local brought model against the base folder (skipped where the
    base is a hub id: its import jobs check)."""
    entries = config.get("models") or {}
    if not entries or base_folder is None:
        return
    base_layout = weights.encoder_layout(base_folder)
    for name, entry in entries.items():
        if "path" in entry:
            check_folder(name, entry["path"], base_layout, base_name)
        label = entry.get("dataset")
        if label in config["datasets"] and entry.get("task") not in (
            None,
            config["datasets"][label]["task"],
        ):
            raise WeightspaceError(
                f"config key models.{name}.task: '{entry['task']}', but dataset '{label}' is of "
                f"task '{config['datasets'][label]['task']}' in this study"
            )


def resolve(name: str, spec: dict) -> tuple[Path, dict]:
    """The local folder of a brought model and what to record of its source (a hub model is
    downloaded at one commit: safetensors and config only)."""
    if "path" in spec:
        return Path(spec["path"]).expanduser(), {"source": str(spec["path"])}
    from huggingface_hub import snapshot_download

    from weightspace.model import hub

    commit = hub.resolve_commit(spec["hub"], spec.get("revision"))
    folder = snapshot_download(
        spec["hub"], revision=commit or spec.get("revision"), allow_patterns=HUB_FILES
    )
    return Path(folder), {"source": f"{spec['hub']} (hub)", "commit": commit or ""}


def materialise(name: str, spec: dict, base_dir: str | Path, out_path: str | Path) -> dict:
    """Check a brought model against the materialised base and write its encoder weights."""
    folder, source = resolve(name, spec)
    base_dir = Path(base_dir)
    base_json = base_dir / "base.json"
    base_name = json.loads(base_json.read_text())["source"] if base_json.exists() else str(base_dir)
    check_folder(name, folder, weights.encoder_layout(base_dir), base_name)
    shapes = weights.extract_folder(folder, out_path, f"brought.{name}", base_dir, **source)
    log.info("brought.%s from %s: %d encoder tensors", name, source["source"], len(shapes))
    return source
