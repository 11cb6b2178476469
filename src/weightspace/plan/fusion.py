"""Fusion: the average of a region's fine-tuned models as a new starting point.

For a target dataset, the fused base of a scope is the element-wise mean (over models
only) of the fine-tuned encoders of the *other* datasets — within the target's task
(scope 'task') or across every task (scope 'all'). The target's own models are never
members (nor a brought model labelled with the target). Each fused base and the pretrained base
are fine-tuned on the target with the same seeds, budget, mode (full or BitFit) and training-set
size; the tables say how often and by how much the fused start wins.

Merged bases (`fusion.merges`) take the same members through a PEFT merge (task arithmetic, TIES,
DARE) instead of the mean; they are fine-tuned the same way and compared paired with the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from weightspace import study

SCOPES = ("task", "all")
MEAN = "mean"


@dataclass(frozen=True)
class FusedBase:
    model_id: str
    target: str
    scope: str
    members: tuple[str, ...]
    method: str = MEAN  # mean, or a PEFT merge method


def fused_id(target: str, scope: str) -> str:
    return f"fused.{target}.{scope}"


def merged_id(target: str, scope: str, method: str) -> str:
    return f"merged.{target}.{scope}.{method}"


def section(config: dict) -> dict:
    return config.get("fusion", {})


def targets(config: dict) -> list[str]:
    if not section(config).get("enabled", True):
        return []
    chosen = section(config).get("targets") or study.datasets(config)
    return [t for t in chosen if t in config["datasets"]]


def members(config: dict, target: str, scope: str) -> list[str]:
    """The fine-tunes, and the labelled brought models, of the other datasets (of the target's
    task, for scope 'task')."""
    task = study.task_of(config, target)
    return [
        m
        for m, dataset, model_task in study.labelled_models(config)
        if dataset != target and (scope == "all" or model_task == task)
    ]


def fused_bases(config: dict) -> list[FusedBase]:
    out = []
    for target in targets(config):
        for scope in section(config).get("scopes", list(SCOPES)):
            chosen = members(config, target, scope)
            if chosen:  # a task with one dataset has no 'task' region to fuse for it
                out.append(FusedBase(fused_id(target, scope), target, scope, tuple(chosen)))
    return out


def merge_settings(config: dict) -> dict:
    return section(config).get("merges") or {}


def merged_bases(config: dict) -> list[FusedBase]:
    """Each fused base's members merged by each configured method."""
    methods = merge_settings(config).get("methods") or []
    return [
        FusedBase(merged_id(b.target, b.scope, method), b.target, b.scope, b.members, method)
        for b in fused_bases(config)
        for method in methods
    ]


def size_label(size) -> str:
    return "all" if size in (None, "all") else str(int(size))


@dataclass(frozen=True)
class Run:
    target: str
    base: str  # pretrained | a fused model id
    mode: str  # full | bitfit
    size: str  # 'all' or a number of training examples
    seed: int

    @property
    def path(self) -> str:
        return f"fusion/runs/{self.target}/{self.base}/{self.mode}/n{self.size}/seed{self.seed}"


def run_of_path(path: str) -> Run:
    """The run whose metrics.json a path is: .../fusion/runs/{target}/{start}/{mode}/n{size}/
    seed{seed}/metrics.json, or a main fine-tune's .../finetune/{target}/seed{seed}/metrics.json
    (the pretrained start on all the data, reused)."""
    parts = str(path).replace("\\", "/").split("/")
    if parts[-4] == "finetune":
        return Run(parts[-3], study.PRETRAINED, "full", "all", int(parts[-2][len("seed") :]))
    target, start, mode, size, seed = parts[-6:-1]
    return Run(target, start, mode, size[1:], int(seed[len("seed") :]))


def seeds(config: dict) -> list[int]:
    """The fusion runs' seeds (every start, mode and size runs each)."""
    return [int(s) for s in section(config).get("seeds", study.seeds(config)[:1])]


def _runs(config: dict, target: str, bases: list[str]) -> list[Run]:
    sec = section(config)
    return [
        Run(target, base, mode, size_label(size), seed)
        for base in bases
        for mode in sec.get("modes", ["full"])
        for size in sec.get("train_sizes", [None])
        for seed in seeds(config)
    ]


def runs(config: dict) -> list[Run]:
    """The fusion runs: the pretrained start and each fused base (the mean) on its target."""
    bases_by_target: dict[str, list[str]] = {}
    for fused in fused_bases(config):
        bases_by_target.setdefault(fused.target, []).append(fused.model_id)
    out = []
    for target, fused_ids in bases_by_target.items():
        out += _runs(config, target, [study.PRETRAINED, *fused_ids])
    return out


def merge_runs(config: dict) -> list[Run]:
    """Each merged base's runs, twins of its mean's (same target, mode, size and seeds)."""
    out = []
    for merged in merged_bases(config):
        out += _runs(config, merged.target, [merged.model_id])
    return out


FAMILY = "fusion"  # the verdicts family of the fusion claims


def headline_keys(keys) -> set:
    """The fusion family's headline rows among (scope, mode, size) keys: the paper's scope ('all':
    every other dataset's models) and mode ('full') where run, else the first; its full-data size
    and its smallest few-shot size."""
    keys = list(keys)
    if not keys:
        return set()
    scopes = [k[0] for k in keys]
    scope = "all" if "all" in scopes else sorted(scopes)[0]
    modes = [k[1] for k in keys if k[0] == scope]
    mode = "full" if "full" in modes else sorted(modes)[0]
    sizes = [k[2] for k in keys if k[:2] == (scope, mode)]
    few = [v for v in sizes if str(v).isdigit()]
    chosen = [v for v in sizes if str(v) == "all"] + ([min(few, key=int)] if few else [])
    return {(scope, mode, v) for v in chosen}
