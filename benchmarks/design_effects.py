"""The random effects a finished study measured, for the power simulations of its design.

tests/test_default_design.py simulates the default's design at the effects its run measured; this
script measures them from that run's results/ (README "Design of the default"), so that the numbers
the test hard-codes can be traced and re-measured after a change of design.

  fusion   per target and seed the gain of the fused start over the pretrained one (accuracy
           points; fusion/summary.csv, the headline's scope, mode and smallest size). A target's
           gain is its effect plus seed noise, so the sd of the target means over-states the
           targets' spread by the seeds' share: between-target variance = var(target means) -
           mean within-target variance / seeds (one-way random effects, method of moments).
  lines    per same-dataset line the interior gain (mean of the ends' losses - the interior
           points' loss) and the extrapolation rise (the outer points' loss - the nearer end's),
           each a mean over test examples with its standard error over them; between-group
           variance = var(group means) - mean squared standard error (one line per group here).
  regions  per region group the centroid's gain over its own members (the claim's cells), same
           decomposition.

Usage: python benchmarks/design_effects.py RESULTS
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace import study
from weightspace.probe import store


def between(means: np.ndarray, noise_var: float) -> float:
    """The between-unit sd left once the units' own noise variance is taken out (0 if none)."""
    return float(np.sqrt(max(0.0, means.var(ddof=1) - noise_var)))


def fusion(results: Path) -> str:
    runs = pd.read_csv(results / "fusion" / "summary.csv")
    runs = runs[(runs["mode"] == "full") & (runs["size"] == runs["size"].min())]
    runs = runs.assign(start=np.where(runs["base"] == "pretrained", "pretrained", "fused"))
    runs = runs[(runs["scope"] == "all") | (runs["start"] == "pretrained")]
    paired = runs.pivot_table(index=["target", "seed"], columns="start", values="accuracy")
    gain = 100 * (paired["fused"] - paired["pretrained"])
    means = gain.groupby(level="target").mean()
    seeds = gain.groupby(level="target").size().mean()
    within = float(gain.groupby(level="target").var(ddof=1).mean())
    return (
        f"fusion: {len(means)} targets x {seeds:g} seeds, gain {means.mean():.2f} points, sd of "
        f"target means {means.std(ddof=1):.2f}, seed sd {np.sqrt(within):.2f}, between-target sd "
        f"{between(means.to_numpy(), within / seeds):.2f}"
    )


def _probe_losses(results: Path) -> dict:
    probe = results / "probe"
    return store.read([*probe.glob("groups/*.json"), *probe.glob("models/*.json")])


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


def lines(results: Path, by_key: dict) -> list[str]:
    table = pd.read_csv(results / "interpolation" / "lines.csv")
    table = table[table["relation"] == "same_dataset"]
    interior: dict[str, list] = {}
    edge: dict[str, list] = {}
    for _pair, g in table.groupby("pair"):
        curve = {
            float(a): np.asarray(by_key[(m, d)]["test_losses"], dtype=float)
            for a, m, d in zip(g["alpha"], g["model_id"], g["eval_dataset"])
        }
        group = g["eval_dataset"].iloc[0]
        ends = 0.5 * (curve[0.0] + curve[1.0])
        inside = [ends - curve[a] for a in curve if 0 < a < 1]
        outside = [curve[a] - curve[0.0 if a < 0 else 1.0] for a in curve if a < 0 or a > 1]
        interior.setdefault(group, []).append(np.mean(inside, axis=0))
        if outside:
            edge.setdefault(group, []).append(np.mean(outside, axis=0))
    return [_summarise("interior", interior), _summarise("extrapolation", edge)]


def regions(results: Path, by_key: dict) -> str:
    table = pd.read_csv(results / "interpolation" / "region.csv")
    cells: dict[str, list] = {}
    for (group, dataset), g in table.groupby(["group", "eval_dataset"]):
        centroid = g[g["kind"] == "centroid"]
        own = [
            np.asarray(by_key[(m, dataset)]["test_losses"], dtype=float)
            for m in g.loc[g["kind"] == "member", "model_id"]
            if study.parse(m).dataset == dataset
        ]
        if centroid.empty or not own:
            continue
        losses = np.asarray(by_key[(centroid["model_id"].iloc[0], dataset)]["test_losses"])
        cells.setdefault(group, []).append(np.mean(own, axis=0) - losses)
    return _summarise("centroid over its own members", cells)


def main(results: Path) -> None:
    by_key = _probe_losses(results)
    print(fusion(results))
    for line in lines(results, by_key):
        print(line)
    print(regions(results, by_key))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
