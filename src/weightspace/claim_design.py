"""Which headline claims a study's design can decide, read from its config before anything runs.

A headline claim is "not testable" when the smallest p its test can reach (the floor: one over the number of
distinct relabelings or sign patterns at its unit) exceeds alpha / the family's headline count: no data could make
it hold (verdicts.py). That floor depends on the design alone, so the workflow says it at start-up, naming the
claim and what the design lacks, instead of after hours of compute. Ties in the data can raise a floor (1-NN,
purity): these are lower bounds.
"""

from __future__ import annotations

from collections import Counter

from . import fusion, inference, study, traversal, verdicts


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**7 else f"{n:.2e}"


def _row(family: str, claim_id: str, floor: float, count: int, design: str, lacks: str) -> dict:
    threshold = verdicts.ALPHA / count
    return {"family": family, "claim_id": claim_id, "floor": floor, "threshold": threshold,
            "testable": floor <= threshold, "design": design, "lacks": lacks}


def floors(config: dict) -> list[dict]:
    """One row per headline claim the config's stages make: its floor, its Bonferroni threshold, whether it is
    testable, the design in words and what a testable design needs."""
    rows = []
    datasets = study.datasets(config)
    tasks = Counter(study.task_of(config, d) for d in datasets)
    n_seeds = len(study.seeds(config))
    # dataset geometry: models reassigned to datasets within their task
    within = 1
    for count in tasks.values():
        within *= inference.partitions_count([n_seeds] * count)
    design = f"{_count(within)} ways to reassign {len(datasets) * n_seeds} models to datasets within their tasks"
    for claim in ("dataset_closer_than_task", "nn1_dataset"):
        rows.append(_row("dataset geometry", claim, 1.0 / within, 2, design,
                         "two seeds per dataset and tasks with two or more datasets"))
    # task geometry: datasets reassigned to tasks
    splits = inference.partitions_count(list(tasks.values())) if tasks else 1
    sizes = ", ".join(str(c) for c in sorted(tasks.values(), reverse=True))
    design = f"{_count(splits)} ways to split {len(datasets)} datasets into tasks of {sizes}"
    for claim in ("task_closer_than_across", "nn1_task"):
        rows.append(_row("task geometry", claim, 1.0 / splits, 2, design,
                         "more datasets per task (8 in tasks of 4, 2, 2 give 210 splits; 9 in 3 x 3 give 280)"))
    # lines and regions: signs of group effects flipped
    lines_on = config.get("interpolation", {}).get("enabled", True)
    region_on = config.get("region", {}).get("enabled", True)
    if lines_on or region_on:
        same = {study.parse(a).dataset for a, _ in traversal.chosen_pairs(config, "same_dataset")} if lines_on and \
            "same_dataset" in config.get("interpolation", {}).get("relations", traversal.RELATIONS) else set()
        section = config.get("interpolation", {})
        extrapolated = same if "same_dataset" in section.get("extrapolate", traversal.RELATIONS) and any(
            a < 0 or a > 1 for a in section.get("alphas", [])) else set()
        regions = {dict(p.info)["group"] for p in traversal.region_points(config)} if region_on else set()
        lacks = "more groups: a dataset per same-dataset line group, a region group per dataset or task"
        for claim, k in (("interior_same_dataset", len(same)), ("extrapolation_raises_loss", len(extrapolated)),
                         ("centroid_beats_own_members", len(regions))):
            rows.append(_row("lines and regions", claim, 1.0 / 2 ** k, 3, f"{k} groups ({_count(2 ** k)} sign patterns)",
                             lacks))
    # fusion: signs of target means flipped
    if config.get("fusion", {}).get("enabled", True):
        scope_of = {b.model_id: b.scope for b in fusion.fused_bases(config)}
        keys = {(scope_of[r.base], r.mode, r.size) for r in fusion.runs(config) if r.base in scope_of}
        headline = fusion.headline_keys(keys)
        targets = len(fusion.targets(config))
        for scope, mode, size in sorted(headline, key=str):
            rows.append(_row("fusion", f"fusion_gain_{scope}_{mode}_n{size}", 1.0 / 2 ** targets,
                             max(len(headline), 1), f"{targets} targets ({_count(2 ** targets)} sign patterns)",
                             "6 targets for one headline fusion row, 7 for two"))
    return rows


def warnings(config: dict) -> list[str]:
    """One sentence per headline claim this design can never decide."""
    return [f"claim {r['claim_id']} ({r['family']}) is not testable in this design: {r['design']} give p >= "
            f"{r['floor']:.3g} > {r['threshold']:.3g}; it needs {r['lacks']}"
            for r in floors(config) if not r["testable"]]
