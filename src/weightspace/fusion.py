"""Fusion: the average of a region's fine-tuned models as a new starting point.

For a target dataset, the fused base of a scope is the element-wise mean (over models
only) of the fine-tuned encoders of the *other* datasets — within the target's task
(scope 'task') or across every task (scope 'all'). The target's own models are never
members. Each fused base and the pretrained base are fine-tuned on the target with the
same seeds, budget, mode (full or BitFit) and training-set size; the tables say how
often and by how much the fused start wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import study

SCOPES = ("task", "all")


@dataclass(frozen=True)
class FusedBase:
    model_id: str
    target: str
    scope: str
    members: tuple[str, ...]


def fused_id(target: str, scope: str) -> str:
    return f"fused.{target}.{scope}"


def section(config: dict) -> dict:
    return config.get("fusion", {})


def targets(config: dict) -> list[str]:
    if not section(config).get("enabled", True):
        return []
    chosen = section(config).get("targets") or study.datasets(config)
    return [t for t in chosen if t in config["datasets"]]


def members(config: dict, target: str, scope: str) -> list[str]:
    task = study.task_of(config, target)
    return [
        m
        for m in study.finetuned_ids(config)
        if study.parse(m).dataset != target
        and (scope == "all" or study.task_of(config, study.parse(m).dataset) == task)
    ]


def fused_bases(config: dict) -> list[FusedBase]:
    out = []
    for target in targets(config):
        for scope in section(config).get("scopes", list(SCOPES)):
            chosen = members(config, target, scope)
            if chosen:  # a task with one dataset has no 'task' region to fuse for it
                out.append(FusedBase(fused_id(target, scope), target, scope, tuple(chosen)))
    return out


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


def runs(config: dict) -> list[Run]:
    sec = section(config)
    bases_by_target: dict[str, list[str]] = {}
    for fused in fused_bases(config):
        bases_by_target.setdefault(fused.target, []).append(fused.model_id)
    out = []
    for target, fused_ids in bases_by_target.items():
        for base in [study.PRETRAINED, *fused_ids]:
            for mode in sec.get("modes", ["full"]):
                for size in sec.get("train_sizes", [None]):
                    for seed in sec.get("seeds", study.seeds(config)[:1]):
                        out.append(Run(target, base, mode, size_label(size), int(seed)))
    return out


def summary_table(rows: list[dict]) -> pd.DataFrame:
    """One row per run: target, base, scope, mode, size, seed, accuracy, loss."""
    frame = pd.DataFrame(rows)
    columns = ["target", "base", "scope", "mode", "size", "seed", "accuracy", "loss", "validation_accuracy"]
    return frame[columns].sort_values(["target", "mode", "size", "base", "seed"]).reset_index(drop=True)


def wins_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per target, scope, mode and size: mean gain in test accuracy of the fused start over the pretrained one.

    Seeds are paired (same seed, same few-shot subset, same budget) before averaging.
    """
    keys = ["target", "mode", "size", "seed"]
    pretrained = summary[summary["base"] == study.PRETRAINED].set_index(keys)[["accuracy", "loss"]]
    rows = []
    for (scope, target, mode, size), group in summary[summary["base"] != study.PRETRAINED].groupby(
        ["scope", "target", "mode", "size"], sort=True
    ):
        paired = group.set_index(keys)[["accuracy", "loss"]].merge(
            pretrained, left_index=True, right_index=True, suffixes=("", "_pretrained"))
        if paired.empty:
            continue
        gain = paired["accuracy"] - paired["accuracy_pretrained"]
        rows.append({
            "scope": scope, "target": target, "mode": mode, "size": size, "seeds": len(paired),
            "fused_accuracy": paired["accuracy"].mean(), "pretrained_accuracy": paired["accuracy_pretrained"].mean(),
            "gain": gain.mean(), "gain_std": gain.std(ddof=1) if len(gain) > 1 else np.nan,
            "loss_change": (paired["loss"] - paired["loss_pretrained"]).mean(),
            "as_good_or_better": bool(gain.mean() >= 0),
        })
    return pd.DataFrame(rows, columns=["scope", "target", "mode", "size", "seeds", "fused_accuracy",
                                       "pretrained_accuracy", "gain", "gain_std", "loss_change",
                                       "as_good_or_better"])


def wins_overview(wins: pd.DataFrame) -> pd.DataFrame:
    """Per scope, mode and size: targets where fusion is as good or better, of how many, and the mean gain."""
    if wins.empty:
        return pd.DataFrame(columns=["scope", "mode", "size", "targets", "as_good_or_better", "mean_gain"])
    return (
        wins.groupby(["scope", "mode", "size"], sort=True)
        .agg(targets=("target", "nunique"), as_good_or_better=("as_good_or_better", "sum"), mean_gain=("gain", "mean"))
        .reset_index()
    )
