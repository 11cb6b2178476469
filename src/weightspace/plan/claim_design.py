"""Which headline claims a study's design can decide, read from its config before anything runs.

A headline claim is "not testable" when the smallest p its test can reach (the floor: one over the
number of distinct relabelings or sign patterns at its unit) exceeds alpha / the family's headline
count: no data could make it hold (verdicts.py). That floor depends on the design alone, so the
workflow says it at start-up, naming the claim and what the design lacks, instead of after hours of
compute. Ties in the data can raise a floor (1-NN, purity): these are lower bounds.
"""

from __future__ import annotations

from collections import Counter

from weightspace import study
from weightspace.geometry import clusters, interpolation
from weightspace.plan import fusion, traversal
from weightspace.stats import inference, verdicts


def _count(n: int) -> str:
    if n < 10**7:
        return f"{n:,}"
    if n.bit_length() < 1000:
        return f"{n:.2e}"
    # beyond a float's range (the reassignments of a 106-dataset study): read off the digits
    exponent = len(str(n)) - 1
    mantissa = round(n / 10**exponent, 2)
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.2f}e+{exponent}"


# headline claims per family, as the claims code names them (the Bonferroni threshold divides by
# their count)
GEOMETRY_COUNT = Counter(clusters.HEADLINE.values())
LINES_AND_REGIONS = interpolation.FAMILY


def _row(family: str, claim_id: str, floor: float, count: int, design: str, lacks: str) -> dict:
    threshold = verdicts.ALPHA / count
    return {
        "family": family,
        "claim_id": claim_id,
        "floor": floor,
        "threshold": threshold,
        "testable": floor <= threshold,
        "design": design,
        "lacks": lacks,
    }


def floors(config: dict) -> list[dict]:
    """One row per headline claim the config's stages make: its floor, its Bonferroni threshold,
    whether it is testable, the design in words and what a testable design needs."""
    rows = []
    datasets = study.datasets(config)
    tasks = Counter(study.task_of(config, d) for d in datasets)
    n_seeds = len(study.seeds(config))
    # dataset geometry: models reassigned to datasets within their task
    within = 1
    for count in tasks.values():
        within *= inference.partitions_count([n_seeds] * count)
    design = (
        f"{_count(within)} ways to reassign {len(datasets) * n_seeds} models to datasets "
        "within their tasks"
    )
    for claim in (
        c for c, family in clusters.HEADLINE.items() if family == clusters.DATASET_FAMILY
    ):
        rows.append(
            _row(
                clusters.DATASET_FAMILY,
                claim,
                1 / within,  # int / int: exact rounding, no overflow at 10^700
                GEOMETRY_COUNT[clusters.DATASET_FAMILY],
                design,
                "two seeds per dataset and tasks with two or more datasets",
            )
        )
    # task geometry: datasets reassigned to tasks
    splits = inference.partitions_count(list(tasks.values())) if tasks else 1
    sizes = ", ".join(str(c) for c in sorted(tasks.values(), reverse=True))
    design = f"{_count(splits)} ways to split {len(datasets)} datasets into tasks of {sizes}"
    for claim in (c for c, family in clusters.HEADLINE.items() if family == clusters.TASK_FAMILY):
        rows.append(
            _row(
                clusters.TASK_FAMILY,
                claim,
                1 / splits,
                GEOMETRY_COUNT[clusters.TASK_FAMILY],
                design,
                "more datasets per task (8 in tasks of 4, 2, 2 give 210 splits; "
                "9 in 3 x 3 give 280)",
            )
        )
    # lines and regions: signs of group effects flipped
    section = config.get("interpolation", {})
    lines_on = section.get("enabled", True)
    region_on = config.get("region", {}).get("enabled", True)
    if lines_on or region_on:
        same = (
            {study.parse(a).dataset for a, _ in traversal.chosen_pairs(config, "same_dataset")}
            if lines_on and "same_dataset" in section.get("relations", traversal.RELATIONS)
            else set()
        )
        extrapolated = (
            same
            if "same_dataset" in section.get("extrapolate", traversal.RELATIONS)
            and any(a < 0 or a > 1 for a in section.get("alphas", []))
            else set()
        )
        regions = (
            {dict(p.info)["group"] for p in traversal.region_points(config)} if region_on else set()
        )
        lacks = (
            "more groups: a dataset per same-dataset line group, a region group per dataset or task"
        )
        groups = {
            "interior_same_dataset": same,
            "extrapolation_raises_loss": extrapolated,
            "centroid_beats_own_members": regions,
        }
        for claim in interpolation.HEADLINE:
            floor, design = inference.sign_flip_design(len(groups[claim]), "groups")
            rows.append(
                _row(LINES_AND_REGIONS, claim, floor, len(interpolation.HEADLINE), design, lacks)
            )
    # fusion: signs of target means flipped
    if config.get("fusion", {}).get("enabled", True):
        scope_of = {b.model_id: b.scope for b in fusion.fused_bases(config)}
        keys = {
            (scope_of[r.base], r.mode, r.size) for r in fusion.runs(config) if r.base in scope_of
        }
        headline = fusion.headline_keys(keys)
        floor, design = inference.sign_flip_design(len(fusion.targets(config)), "targets")
        for scope, mode, size in sorted(headline, key=str):
            rows.append(
                _row(
                    fusion.FAMILY,
                    f"fusion_gain_{scope}_{mode}_n{size}",
                    floor,
                    max(len(headline), 1),
                    design,
                    "6 targets for one headline fusion row, 7 for two",
                )
            )
    return rows


def warnings(config: dict) -> list[str]:
    """One sentence per headline claim this design can never decide."""
    return [
        f"claim {r['claim_id']} ({r['family']}) is not testable in this design: "
        f"{r['design']}: p >= "
        f"{r['floor']:.3g} > {r['threshold']:.3g}; it needs {r['lacks']}"
        for r in floors(config)
        if not r["testable"]
    ]
