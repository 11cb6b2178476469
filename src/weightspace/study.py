"""What a study holds, read off its config: datasets, tasks, seeds and model ids.

The one place that names models. A model id is one of
  pretrained                  the base model's encoder
  {dataset}.seed{seed}        a model fine-tuned on a dataset with a seed
  fused.{target}.{scope}      the average of other datasets' models (see fusion)
  mix.{hash}                  a point built from stored models (lines, planes, regions)
Dataset names are lower-case words joined by '_' so that ids parse back unambiguously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import WeightspaceError

DATASET_PATTERN = r"[a-z][a-z0-9_]*"
SEED_PATTERN = r"[0-9]+"
PRETRAINED = "pretrained"
FINETUNED_PATTERN = rf"(?P<dataset>{DATASET_PATTERN})\.seed(?P<seed>{SEED_PATTERN})"
MODEL_ID_PATTERN = r"[a-z][a-z0-9_.]*"


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


def parse(model_id: str) -> ModelId:
    if model_id == PRETRAINED:
        return ModelId(model_id, "pretrained")
    m = re.fullmatch(FINETUNED_PATTERN, model_id)
    if m:
        return ModelId(model_id, "finetuned", m["dataset"], int(m["seed"]))
    m = re.fullmatch(rf"fused\.(?P<dataset>{DATASET_PATTERN})\.[a-z]+", model_id)
    if m:
        return ModelId(model_id, "fused", m["dataset"])
    if re.fullmatch(r"mix\.[0-9a-f]+", model_id):
        return ModelId(model_id, "mix")
    raise WeightspaceError(f"'{model_id}' is not a model id of this study")


def model_table(config: dict, model_ids: list[str]) -> list[dict]:
    """One row per model: id, kind, dataset, task, seed (None where not applicable)."""
    rows = []
    for mid in model_ids:
        m = parse(mid)
        task = task_of(config, m.dataset) if m.kind == "finetuned" else None
        rows.append({"model_id": mid, "kind": m.kind, "dataset": m.dataset if m.kind == "finetuned" else None,
                     "task": task, "seed": m.seed})
    return rows


def check(config: dict) -> None:
    """What the schema cannot say, checked at start-up (before any job): every builtin dataset exists, and
    early stopping has a validation loss to read.

    Raises a WeightspaceError that names the config key (and lists the known names).
    """
    from . import registry

    known = registry.names()
    for name, entry in config["datasets"].items():
        builtin = entry.get("builtin")
        if builtin is not None and builtin not in known:
            raise WeightspaceError(
                f"config key datasets.{name}.builtin: unknown builtin dataset '{builtin}'; known: {', '.join(known)}"
            )
    finetune = config.get("finetune", {})
    for key, recipe in (("finetune", finetune), ("fusion.finetune", config.get("fusion", {}).get("finetune") or {})):
        if finetune.get("validation") == "end" and recipe.get("early_stopping_patience"):
            raise WeightspaceError(f"config key finetune.validation: 'end' leaves {key}.early_stopping_patience no "
                                   "validation loss to read after each epoch; use 'epoch'")


# ---------------------------------------------------------------- size and cost of a study


# the finetune keys that decide a fine-tune's weights (the run policy, checkpoints and validation, does not)
FINETUNE_RECIPE_KEYS = ("epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "warmup_ratio",
                        "early_stopping_patience", "mixed_precision")


def dataset_max_length(config: dict, dataset: str) -> int:
    return config["datasets"][dataset].get("max_length", config.get("data", {}).get("max_length", 128))


def finetune_settings(config: dict, dataset: str) -> dict:
    """The fine-tuning recipe of one dataset: the finetune section's recipe keys plus its max_length."""
    section = config["finetune"]
    settings = {k: section[k] for k in FINETUNE_RECIPE_KEYS if k in section}
    if section.get("head_seed") is not None:  # absent when unset: older studies' params still match
        settings["head_seed"] = section["head_seed"]
    settings["max_length"] = dataset_max_length(config, dataset)
    return settings


def fusion_settings(config: dict, target: str, mode: str, size: str) -> dict:
    """A fusion run's recipe: the target's, with `fusion.finetune` over it, in a mode (full or BitFit) and
    at a training-set size ("all" or a number of examples)."""
    section = config.get("fusion", {})
    settings = dict(finetune_settings(config, target), **section.get("finetune", {}))
    if mode == "bitfit":
        settings["trainable"] = "bitfit"
        settings["learning_rate"] = section.get("bitfit_learning_rate", 1e-3)
    settings["train_size"] = None if size == "all" else int(size)
    return settings


def reused(config: dict, run) -> bool:
    """Whether a fusion run is the main fine-tune itself: the pretrained start on all the data with the
    study's own recipe, and every fusion seed a study seed (one job runs a start's seeds: it is reused
    whole or not at all). The rules read its metrics there; the job counts and the cost leave it out."""
    from . import fusion

    same_recipe = (fusion_settings(config, run.target, run.mode, run.size)
                   == dict(finetune_settings(config, run.target), train_size=None))
    return (run.base == PRETRAINED and run.mode == "full" and run.size == "all" and same_recipe
            and set(fusion.seeds(config)) <= set(seeds(config)))


def core_job_counts(config: dict) -> dict[str, int]:
    """Jobs per rule that follow from the datasets, seeds and fusion alone (a validated, default-filled config).

    The fine-tune of the pretrained start on all the data with the study's own recipe and seed is the
    main fine-tune, reused: it is no finetune_from job.
    """
    from . import fusion

    n = len(datasets(config)) * len(seeds(config))
    fusion_runs = fusion.runs(config)
    reused_runs = [r for r in fusion_runs if reused(config, r)]
    # a fine-tune writes its encoder weights itself: no extraction job but the pretrained one's; one
    # finetune_from job runs a (target, start, mode, size)'s seeds
    return {"base_model": 1, "prepare_dataset": len(datasets(config)), "finetune": n,
            "extract_pretrained_weights": 1, "fuse": len(fusion.fused_bases(config)),
            "finetune_from": (len(fusion_runs) - len(reused_runs)) // len(fusion.seeds(config))}


def probed_datasets(config: dict) -> dict[str, list[str]]:
    """Stored model id -> the datasets its evaluation job probes it on (a validated, default-filled config).

    The pretrained model: every dataset (it is every probe's baseline). A fine-tuned model: every
    dataset (`probe.scope: all`) or its own task's (`task`: the cells that say whether knowledge of a
    task transfers within it, at a third of the encoder passes with three tasks), plus any dataset a
    traversal line reads at that model's end. A fused base: its target only, where fusion fine-tunes
    it (its other cells would repeat its members').
    """
    from . import fusion, traversal

    names = datasets(config)
    scope = config.get("probe", {}).get("scope", "all")
    ends: dict[str, set[str]] = {}
    for model_id, dataset in traversal.evaluations(config):
        ends.setdefault(model_id, set()).add(dataset)
    plan = {PRETRAINED: names}
    for dataset in names:
        task = task_of(config, dataset)
        for seed in seeds(config):
            model_id = finetuned_id(dataset, seed)
            wanted = ends.get(model_id, set())
            plan[model_id] = [d for d in names
                              if scope == "all" or task_of(config, d) == task or d in wanted]
    for fused in fusion.fused_bases(config):
        plan[fused.model_id] = [fused.target]
    return plan


def builtin_source_sizes(config: dict) -> dict[str, tuple[int, int]]:
    """dataset -> (train, test) examples in its packaged source before the config's caps, for ``cost``; where the
    source has no test split, the preparation's split of test_fraction. Builtin datasets only."""
    from . import registry

    sizes = {}
    for name, spec in config["datasets"].items():
        if "builtin" not in spec:
            raise WeightspaceError(f"datasets.{name}: not a builtin dataset; its source size is not known offline")
        raw = registry.load(spec["builtin"])
        train = len(raw["train"])
        test = len(raw["test"]) if "test" in raw else 0
        if not test:  # the preparation splits test_fraction off
            fraction = spec.get("test_fraction", config["data"].get("test_fraction", 0.2))
            test = round(fraction * train)
            train -= test
        sizes[name] = (train, test)
    return sizes


def cost(config: dict, sizes: dict[str, tuple[int, int]], train_examples_per_second: float,
         encode_examples_per_second: float, encoder_parameters: int, head_parameters: int, hidden: int) -> dict:
    """An estimate of a study's GPU-hours and disk from its config and its datasets' sizes.

    ``sizes``: dataset -> (train, test) examples in the source, before the config's caps. Fine-tuning is
    counted at its upper bound (every epoch, no early stop, max_steps respected) plus a validation pass
    per epoch (`finetune.validation: epoch`) and a final one; evaluation is one encoder pass over a
    dataset's train and test split per (model, dataset) pair that `probed_datasets` plans, and per mix of
    the traversal studies; disk is the weights files, the fine-tuned models and the features, float32.
    """
    from . import fusion, traversal

    data = config.get("data", {})
    caps = data.get("max_examples") or {}
    fraction = data.get("validation_fraction", 0.1)

    def capped(name: str) -> tuple[int, int, int]:
        train, test = sizes[name]
        spec_caps = {**caps, **(config["datasets"][name].get("max_examples") or {})}
        validation = round(fraction * train)
        train -= validation
        cap = lambda n, split: min(n, spec_caps.get(split) or n)  # noqa: E731
        return cap(train, "train"), cap(validation, "validation"), cap(test, "test")

    ft = config["finetune"]

    def finetune_seconds(name: str, settings: dict | None = None, size: str = "all") -> float:
        settings = {**ft, **(settings or {})}
        train, validation, test = capped(name)
        if size != "all":  # a few-shot fusion run
            train = min(train, int(size))
        steps = settings["epochs"] * -(-train // settings["batch_size"])
        if settings.get("max_steps"):
            steps = min(steps, settings["max_steps"])
        trained = steps * settings["batch_size"]
        per_epoch = settings["epochs"] if settings.get("validation", "epoch") == "epoch" else 0
        evaluated = per_epoch * validation + validation + test
        return trained / train_examples_per_second + evaluated / encode_examples_per_second

    counts = core_job_counts(config)
    main = sum(finetune_seconds(d) for d in datasets(config)) * len(seeds(config))
    runs = [r for r in fusion.runs(config) if not reused(config, r)]
    from_fused = sum(finetune_seconds(r.target, fusion.section(config).get("finetune"), r.size) for r in runs)
    stored = 1 + counts["finetune"] + counts["fuse"]
    stored_pairs = [(m, d) for m, names in probed_datasets(config).items() for d in names]
    mix_pairs = {p for p in traversal.evaluations(config) if p[0].startswith("mix.")}
    pairs = len(stored_pairs) + len(mix_pairs)
    per_dataset = {d: sum(capped(d)[::2]) for d in datasets(config)}
    encoded = sum(per_dataset[d] for _, d in stored_pairs) + sum(per_dataset[d] for _, d in mix_pairs)
    gb = 1e9
    return {
        "models_stored": stored,
        "mixes": len({m for m, _ in traversal.evaluations(config) if m.startswith("mix.")}),
        "probe_pairs": pairs,
        "gpu_hours_finetune": main / 3600,
        "gpu_hours_finetune_from": from_fused / 3600,
        "gpu_hours_evaluate": encoded / encode_examples_per_second / 3600,
        "disk_weights_gb": stored * encoder_parameters * 4 / gb,
        "disk_models_gb": counts["finetune"] * (encoder_parameters + head_parameters) * 4 / gb,
        "disk_features_gb": encoded * hidden * 4 / gb,
    }
