"""The random effects a finished study measured, for the power simulations of its design.

tests/test_default_design.py simulates the default's design at the effects its run measured; this
script measures them from that run's results/ (README "Design of the default"), so that the numbers
the test hard-codes can be traced and re-measured after a change of design.

  fusion   per target and seed the gain of the fused start over the pretrained one (accuracy
           points; fusion_outcomes.paired_gains of fusion/summary.csv at the headline's scope, mode
           and smallest size). A target's gain is its effect plus seed noise, so the sd of the
           target means over-states the targets' spread by the seeds' share: between-target
           variance = var(target means) - mean within-target variance / seeds (one-way random
           effects, method of moments).
  lines    per same-dataset line the interior gain and the extrapolation rise, the claims' own
           cells (interpolation.line_cells), each a mean over test examples with its standard error
           over them; between-group variance = var(group means) - mean squared standard error.
  regions  per region group the centroid's gain over its own members (interpolation.region_cells),
           the same decomposition.

Usage: python benchmarks/design_effects.py RESULTS
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.geometry import interpolation
from weightspace.probe import store
from weightspace.train import fusion_outcomes


def between(means: np.ndarray, noise_var: float) -> float:
    """The between-unit sd left once the units' own noise variance is taken out (0 if none)."""
    return float(np.sqrt(max(0.0, means.var(ddof=1) - noise_var)))


def fusion(results: Path) -> str:
    paired = fusion_outcomes.paired_gains(pd.read_csv(results / "fusion" / "summary.csv"))
    paired = paired[(paired["mode"] == "full") & (paired["scope"] == "all")]
    by_target = fusion_outcomes.target_gains(paired[paired["size"] == paired["size"].min()])
    means = np.array([g.mean() for g in by_target.values()])
    seeds = np.mean([len(g) for g in by_target.values()])
    within = float(np.mean([g.var(ddof=1) for g in by_target.values()]))
    return (
        f"fusion: {len(means)} targets x {seeds:g} seeds, gain {means.mean():.2f} points, sd of "
        f"target means {means.std(ddof=1):.2f}, seed sd {np.sqrt(within):.2f}, between-target sd "
        f"{between(means, within / seeds):.2f}"
    )


def _with_losses(table: pd.DataFrame, by_key: dict) -> pd.DataFrame:
    """A lines or region table with each row's per-example test losses (the claims' input)."""
    return table.assign(
        test_losses=[
            by_key[(m, d)]["test_losses"] for m, d in zip(table["model_id"], table["eval_dataset"])
        ]
    )


def _summarise(name: str, cells: dict[str, list[np.ndarray]]) -> str:
    """cells: group -> per-example differences of each of its cells (a line, a dataset)."""
    means = np.array([np.mean([c.mean() for c in v]) for v in cells.values()])
    noise = np.array(
        [np.sum([c.var(ddof=1) / len(c) for c in v]) / len(v) ** 2 for v in cells.values()]
    )
    return (
        f"{name}: {len(means)} groups, mean {means.mean():.4f} nats, sd of group means "
        f"{means.std(ddof=1):.4f}, test-example se {np.sqrt(noise.mean()):.4f} (rms), "
        f"between-group sd {between(means, float(noise.mean())):.4f}, "
        f"{int((means > 0).sum())} of {len(means)} above 0"
    )


def main(results: Path) -> None:
    probe = results / "probe"
    by_key = store.read([*probe.glob("groups/*.json"), *probe.glob("models/*.json")])
    lines = _with_losses(pd.read_csv(results / "interpolation" / "lines.csv"), by_key)
    region = _with_losses(pd.read_csv(results / "interpolation" / "region.csv"), by_key)
    interior, edge = interpolation.line_cells(lines)
    own, _, _ = interpolation.region_cells(region, {})
    print(fusion(results))
    print(_summarise("interior", interior["same_dataset"]))
    print(_summarise("extrapolation", edge))
    print(_summarise("centroid over its own members", own))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
