"""What a study holds, read off its config: datasets, tasks, seeds and model ids.

The one place that names models. A model id is one of
  pretrained                  the base model's encoder
  {dataset}.seed{seed}        a model fine-tuned on a dataset with a seed
  fused.{target}.{scope}      the average of other datasets' models (see fusion)
  mix.{hash}                  a point built from stored models (lines, planes, regions)
Dataset names are lower-case words joined by '_' so that ids parse back unambiguously.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from weightspace import WeightspaceError

DATASET_PATTERN = r"[a-z][a-z0-9_]*"
SEED_PATTERN = r"[0-9]+"
PRETRAINED = "pretrained"
FINETUNED_PATTERN = rf"(?P<dataset>{DATASET_PATTERN})\.seed(?P<seed>{SEED_PATTERN})"
MODEL_ID_PATTERN = r"[a-z][a-z0-9_.]*"
_FINETUNED = re.compile(FINETUNED_PATTERN)
_FUSED = re.compile(rf"fused\.(?P<dataset>{DATASET_PATTERN})\.[a-z]+")
_MIX = re.compile(r"mix\.[0-9a-f]+")


@dataclass(frozen=True)
class ModelId:
    model_id: str
    kind: str  # pretrained | finetuned | fused | mix
    dataset: str | None = None
    seed: int | None = None


def datasets(config: dict) -> list[str]:
    return list(config["datasets"])


def task_of(config: dict, dataset: str) -> str:
    try:
        return config["datasets"][dataset]["task"]
    except KeyError:
        raise WeightspaceError(f"dataset '{dataset}' is not in the config's datasets") from None


def tasks(config: dict) -> dict[str, list[str]]:
    """Task name -> its datasets, in config order."""
    out: dict[str, list[str]] = {}
    for name in datasets(config):
        out.setdefault(task_of(config, name), []).append(name)
    return out


def seeds(config: dict) -> list[int]:
    return [int(s) for s in config["seeds"]]


def finetuned_id(dataset: str, seed: int) -> str:
    return f"{dataset}.seed{seed}"


def finetuned_ids(config: dict) -> list[str]:
    return [finetuned_id(d, s) for d in datasets(config) for s in seeds(config)]


# a ModelId is frozen: cached, as planning a large study parses each id many times
@functools.lru_cache(maxsize=1 << 16)
def parse(model_id: str) -> ModelId:
    if model_id == PRETRAINED:
        return ModelId(model_id, "pretrained")
    m = _FINETUNED.fullmatch(model_id)
    if m:
        return ModelId(model_id, "finetuned", m["dataset"], int(m["seed"]))
    m = _FUSED.fullmatch(model_id)
    if m:
        return ModelId(model_id, "fused", m["dataset"])
    if _MIX.fullmatch(model_id):
        return ModelId(model_id, "mix")
    raise WeightspaceError(f"'{model_id}' is not a model id of this study")


def model_table(config: dict, model_ids: list[str]) -> list[dict]:
    """One row per model: id, kind, dataset, task, seed (None where not applicable)."""
    rows = []
    for mid in model_ids:
        m = parse(mid)
        task = task_of(config, m.dataset) if m.kind == "finetuned" else None
        rows.append(
            {
                "model_id": mid,
                "kind": m.kind,
                "dataset": m.dataset if m.kind == "finetuned" else None,
                "task": task,
                "seed": m.seed,
            }
        )
    return rows


def check(config: dict) -> None:
    """What the schema cannot say, checked at start-up (before any job): every builtin dataset
    exists, and early stopping has a validation loss to read.

    Raises a WeightspaceError that names the config key (and lists the known names).
    """
    from weightspace.data import registry

    known = registry.names()
    for name, entry in config["datasets"].items():
        builtin = entry.get("builtin")
        if builtin is not None and builtin not in known:
            raise WeightspaceError(
                f"config key datasets.{name}.builtin: unknown builtin dataset '{builtin}'; "
                f"known: {', '.join(known)}"
            )
    finetune = config.get("finetune", {})
    for key, recipe in (
        ("finetune", finetune),
        ("fusion.finetune", config.get("fusion", {}).get("finetune") or {}),
    ):
        if finetune.get("validation") == "end" and recipe.get("early_stopping_patience"):
            raise WeightspaceError(
                f"config key finetune.validation: 'end' leaves {key}.early_stopping_patience no "
                "validation loss to read after each epoch; use 'epoch'"
            )


# ---------------------------------------------------------------- size and cost of a study


# the finetune keys that decide a fine-tune's weights (the run policy, checkpoints and validation,
# does not)
FINETUNE_RECIPE_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "early_stopping_patience",
    "mixed_precision",
)


def dataset_max_length(config: dict, dataset: str) -> int:
    return config["datasets"][dataset].get(
        "max_length", config.get("data", {}).get("max_length", 128)
    )


def finetune_settings(config: dict, dataset: str) -> dict:
    """The fine-tuning recipe of one dataset: the finetune section's recipe keys plus its
    max_length."""
    section = config["finetune"]
    settings = {k: section[k] for k in FINETUNE_RECIPE_KEYS if k in section}
    if section.get("head_seed") is not None:  # absent when unset: older studies' params still match
        settings["head_seed"] = section["head_seed"]
    settings["max_length"] = dataset_max_length(config, dataset)
    return settings


def fusion_settings(config: dict, target: str, mode: str, size: str) -> dict:
    """A fusion run's recipe: the target's, with `fusion.finetune` over it, in a mode (full or
    BitFit) and at a training-set size ("all" or a number of examples)."""
    section = config.get("fusion", {})
    settings = dict(finetune_settings(config, target), **section.get("finetune", {}))
    if mode == "bitfit":
        settings["trainable"] = "bitfit"
        settings["learning_rate"] = section.get("bitfit_learning_rate", 1e-3)
    settings["train_size"] = None if size == "all" else int(size)
    return settings
