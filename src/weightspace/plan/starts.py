"""Where to start: for each target dataset, the candidate starts ranked by their probe loss on it.

After "Where to start?" (Choshen et al., EMNLP 2023): a linear probe's loss on the target ranks
models cheaply; fine-tuning from the top ones tells whether the ranking picks a better start than
the pretrained model. The candidates of a target are the pretrained model, every stored model of
another dataset (fine-tuned here, or brought, labelled with another dataset or unlabelled) and every
fused or merged base that leaves the target out. The target's own fine-tunes are never candidates:
they would win trivially.

Use mode fine-tunes the top k and the pretrained start; evaluation mode fine-tunes every candidate,
the only way to measure the regret of the ranking and its rank correlation with the outcome. The
runs are fusion runs (plan.fusion.Run, full fine-tuning, the fusion seeds): a start fine-tuned on a
target once serves both stages.
"""

from __future__ import annotations

from weightspace import study
from weightspace.plan.fusion import FusedBase, Run, size_label

MODES = ("use", "evaluate")
MODE = "full"  # the runs fine-tune every parameter, as the paper's


def section(config: dict) -> dict:
    return config.get("where_to_start") or {}


def enabled(config: dict) -> bool:
    return bool(section(config).get("enabled", False))


def targets(config: dict) -> list[str]:
    if not enabled(config):
        return []
    chosen = section(config).get("targets") or study.datasets(config)
    return [t for t in chosen if t in config["datasets"]]


def sizes(config: dict) -> list[str]:
    chosen = section(config).get("train_sizes")
    if chosen is None:
        chosen = config.get("fusion", {}).get("train_sizes", [None])
    return [size_label(s) for s in chosen]


def candidates(config: dict, target: str, bases: list[FusedBase]) -> dict[str, str]:
    """Model id -> kind of every candidate start for a target, in stored-model order."""
    out = {study.PRETRAINED: "pretrained"}
    for model_id in study.finetuned_ids(config):
        if study.parse(model_id).dataset != target:
            out[model_id] = "finetuned"
    for model_id in study.brought_ids(config):
        if study.brought_labels(config, model_id)[0] != target:
            out[model_id] = "brought"
    for base in bases:
        if base.target == target:  # its members are other datasets' models
            out[base.model_id] = "fused" if base.method == "mean" else "merged"
    return out


def runs(target: str, chosen, sizes_, seeds_) -> tuple[Run, ...]:
    """The fine-tunes of a target from each chosen start, at each size, with each (fusion) seed."""
    return tuple(
        Run(target, start, MODE, size, seed)
        for start in chosen
        for size in sizes_
        for seed in seeds_
    )
