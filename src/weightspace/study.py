"""What a study holds, read off its config: datasets, tasks, seeds and model ids.

The one place that names models. A model id is one of
  pretrained                  the base model's encoder
  {dataset}.seed{seed}        a model fine-tuned on a dataset with a seed
  brought.{name}              a user's own fine-tuned checkpoint (config key models), labelled
                              with a dataset and task or not
  fused.{target}.{scope}      the average of other datasets' models (see fusion)
  merged.{target}.{scope}.{method}  the same members merged by a PEFT method (see fusion)
  mix.{hash}                  a point built from stored models (lines, planes, regions)
Dataset names are lower-case words joined by '_' so that ids parse back unambiguously.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weightspace import WeightspaceError

if TYPE_CHECKING:
    import pandas as pd

DATASET_PATTERN = r"[a-z][a-z0-9_]*"
SEED_PATTERN = r"[0-9]+"
PRETRAINED = "pretrained"
FINETUNED_PATTERN = rf"(?P<dataset>{DATASET_PATTERN})\.seed(?P<seed>{SEED_PATTERN})"
MODEL_ID_PATTERN = r"[a-z][a-z0-9_.]*"
# a start to fine-tune from: any stored model (not a mix: it has no weights file)
START_PATTERN = r"(?!mix\.)[a-z][a-z0-9_.]*"
_FINETUNED = re.compile(FINETUNED_PATTERN)
_FUSED = re.compile(rf"fused\.(?P<dataset>{DATASET_PATTERN})\.[a-z]+")
_MERGED = re.compile(rf"merged\.(?P<dataset>{DATASET_PATTERN})\.[a-z]+\.[a-z_]+")
_BROUGHT = re.compile(rf"brought\.(?P<name>{DATASET_PATTERN})")
# the kinds whose dataset and task labels enter the claims (a brought model only where labelled)
LABELLED_KINDS = ("finetuned", "brought")
RESERVED = ("pretrained", "brought", "fused", "merged", "mix")
_MIX = re.compile(r"mix\.[0-9a-f]+")


@dataclass(frozen=True)
class ModelId:
    model_id: str
    kind: str  # pretrained | finetuned | brought | fused | merged | mix
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


def brought_id(name: str) -> str:
    return f"brought.{name}"


def brought_ids(config: dict) -> list[str]:
    """The user's own checkpoints (config key models), in config order."""
    return [brought_id(name) for name in config.get("models") or {}]


def brought_labels(config: dict, model_id: str) -> tuple[str | None, str | None]:
    """(dataset, task) of a brought model; the task of a study dataset where only the dataset is
    given; None where unlabelled."""
    entry = config["models"][model_id.split(".", 1)[1]]
    dataset, task = entry.get("dataset"), entry.get("task")
    if task is None and dataset in config["datasets"]:
        task = task_of(config, dataset)
    return dataset, task


def labelled_models(config: dict) -> list[tuple[str, str, str]]:
    """(model id, dataset, task) of every model whose labels enter the claims and the fused bases:
    the fine-tunes, and the brought models labelled with a dataset and a task."""
    out = [(m, parse(m).dataset, task_of(config, parse(m).dataset)) for m in finetuned_ids(config)]
    for model_id in brought_ids(config):
        dataset, task = brought_labels(config, model_id)
        if dataset is not None and task is not None:
            out.append((model_id, dataset, task))
    return out


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
    m = _MERGED.fullmatch(model_id)
    if m:
        return ModelId(model_id, "merged", m["dataset"])
    if _BROUGHT.fullmatch(model_id):
        return ModelId(model_id, "brought")
    if _MIX.fullmatch(model_id):
        return ModelId(model_id, "mix")
    raise WeightspaceError(f"'{model_id}' is not a model id of this study")


def model_table(config: dict, model_ids: list[str]) -> list[dict]:
    """One row per model: id, kind, dataset, task, seed (None where not applicable)."""
    rows = []
    for mid in model_ids:
        m = parse(mid)
        dataset, task = None, None
        if m.kind == "finetuned":
            dataset, task = m.dataset, task_of(config, m.dataset)
        elif m.kind == "brought":
            dataset, task = brought_labels(config, mid)
        rows.append(
            {"model_id": mid, "kind": m.kind, "dataset": dataset, "task": task, "seed": m.seed}
        )
    return rows


def labelled(table: pd.DataFrame) -> pd.Series:
    """Rows of a model table (a frame) whose labels enter the claims: fine-tunes and labelled
    brought models."""
    return table["kind"].isin(LABELLED_KINDS) & table["dataset"].notna() & table["task"].notna()


def check(config: dict) -> None:
    """What the schema cannot say, checked at start-up (before any job): every builtin dataset
    exists, and early stopping has a validation loss to read.

    Raises a WeightspaceError that names the config key (and lists the known names).
    """
    from weightspace.data import registry

    known = registry.names()
    for name in config["datasets"]:
        if name in RESERVED:  # a model id {name}.seed0 must not read as another kind of model
            raise WeightspaceError(
                f"config key datasets.{name}: '{name}' names a kind of model; call the dataset "
                "something else"
            )
    for name, entry in config["datasets"].items():
        builtin = entry.get("builtin")
        if builtin is not None and builtin not in known:
            raise WeightspaceError(
                f"config key datasets.{name}.builtin: unknown builtin dataset '{builtin}'; "
                f"known: {', '.join(known)}"
            )
    for key, chosen in (
        ("where_to_start.targets", (config.get("where_to_start") or {}).get("targets")),
        ("fusion.targets", (config.get("fusion") or {}).get("targets")),
    ):
        unknown = [t for t in chosen or [] if t not in config["datasets"]]
        if unknown:
            raise WeightspaceError(
                f"config key {key}: {', '.join(unknown)} not among the datasets "
                f"({', '.join(config['datasets'])})"
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
