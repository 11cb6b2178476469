"""Controls: the real claims code on synthetic weights and losses whose truth is known.

Negative: nothing is there, so no claim may 'hold'. Positive: the structure is planted
strongly, so every claim must 'hold' (clustering claims with p < 0.01). Boundary: an
effect planted at about the size of its own interval must come out 'inconclusive'.
Each test asserts the exact verdicts it expects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from weightspace import clusters, fusion, interpolation_report, verdicts

N_BOOT = 400


def long_frame(ids, X):
    D = cdist(X, X)
    n = len(ids)
    return pd.DataFrame({"model_a": np.repeat(ids, n), "model_b": np.tile(ids, n), "metric": "euclidean",
                         "space": "raw", "group": "all", "distance": D.ravel()})


def study(layout: dict[str, str], seeds: int, position, pretrained: np.ndarray):
    """layout: dataset -> task; position(dataset index, task index, seed) -> weights."""
    ids, rows, X = ["pretrained"], [{"model_id": "pretrained", "kind": "pretrained", "dataset": None, "task": None,
                                     "seed": None}], [pretrained]
    tasks = list(dict.fromkeys(layout.values()))
    for d, (dataset, task) in enumerate(layout.items()):
        for s in range(seeds):
            ids.append(f"{dataset}.seed{s}")
            rows.append({"model_id": ids[-1], "kind": "finetuned", "dataset": dataset, "task": task, "seed": s})
            X.append(position(d, tasks.index(task), s))
    return ids, rows, np.array(X)


def layout(n_tasks: int, per_task: int) -> dict[str, str]:
    return {f"d{t}{i}": f"task{t}" for t in range(n_tasks) for i in range(per_task)}


def claim_verdicts(found: pd.DataFrame) -> dict[str, str]:
    return {f"{r.metric}/{r.claim_id}": r.verdict for r in found.itertuples()}


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negative_random_perturbations_with_random_labels_hold_nothing(seed):
    """Fine-tuned models = the pretrained vector + a random direction of one norm; datasets and tasks assigned at
    random. In high dimension d(a, b) ≈ √2·r > r = d(a, pretrained): the old 'closer to the pretrained model' claim
    held for this; no claim may hold now."""
    rng = np.random.default_rng(seed)
    dim, radius = 4000, 4.0
    pretrained = rng.normal(size=dim)

    def position(d, t, s):
        u = rng.normal(size=dim)
        return pretrained + radius * u / np.linalg.norm(u)

    ids, table, X = study(layout(3, 2), 3, position, pretrained)
    # labels assigned at random: shuffle the fine-tuned models' rows of the table
    shuffled = rng.permutation(len(table) - 1) + 1
    for row, source in zip(table[1:], [table[i] for i in shuffled]):
        row["_x"] = source["model_id"]
    X = np.array([X[0]] + [X[ids.index(row["_x"])] for row in table[1:]])
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT, seed=seed)
    assert len(found) == 10
    held = {k: v for k, v in claim_verdicts(found).items() if v == verdicts.HOLDS}
    assert held == {}, found[["claim_id", "effect", "ci_low", "ci_high", "p_value"]]
    # and the quantity the old claim rested on is there: every model nearer the pretrained one than any other
    d = cdist(X, X)
    assert (d[0, 1:][:, None] < np.where(np.eye(len(X) - 1, dtype=bool), np.inf, d[1:, 1:])).all()


def test_positive_planted_dataset_and_task_structure_holds_every_clustering_claim():
    """12 datasets in 4 tasks, 3 seeds: tasks apart, datasets apart within a task, seeds tight. Every clustering
    claim holds with p < 0.01 (4 tasks of 3 datasets give 15 400 task partitions, so p can go that low)."""
    rng = np.random.default_rng(0)
    dim = 64
    eye = np.eye(dim)
    pretrained = np.zeros(dim)
    ids, table, X = study(layout(4, 3), 3,
                          lambda d, t, s: 10 * eye[t] + 3 * eye[8 + d] + 0.3 * rng.normal(size=dim), pretrained)
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT, n_perm=999)
    assert set(found["verdict"]) == {verdicts.HOLDS}, found[["claim_id", "verdict", "ci_low", "p_value", "note"]]
    assert (found["p_value"] < 0.01).all(), found[["claim_id", "p_value"]]
    assert (found["ci_low"] > 0).all()


def test_boundary_weak_dataset_structure_is_inconclusive():
    """A dataset offset about the size of the seed noise's effect on the mean distance: the within-dataset vs
    within-task difference is of the order of its interval."""
    rng = np.random.default_rng(5)
    dim = 400
    eye = np.eye(dim)
    ids, table, X = study(layout(3, 2), 3,
                          lambda d, t, s: 10 * eye[t] + 0.06 * eye[8 + d] + 0.1 * rng.normal(size=dim),
                          np.zeros(dim))
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT)
    row = found.set_index("claim_id").loc["dataset_closer_than_task"]
    assert row["verdict"] == verdicts.INCONCLUSIVE, row
    assert row["effect"] > 0 and row["ci_low"] < 0 < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] > row["effect"]


# ---------------------------------------------------------------- lines and regions (per-example losses)


def lines_frame(curves: dict[str, callable], n_test: int, rng, alphas=(-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
                lines_per_relation: int = 3) -> pd.DataFrame:
    """curves: relation -> f(alpha, base losses) -> per-example losses at alpha."""
    rows = []
    for relation, curve in curves.items():
        for k in range(lines_per_relation):
            base = rng.gamma(2.0, 0.3, size=n_test)  # one line's example difficulties
            for alpha in alphas:
                rows.append({"relation": relation, "pair": f"{relation}{k}a — {relation}{k}b",
                             "eval_dataset": f"data{k}", "alpha": alpha, "loss": np.nan,
                             "test_losses": curve(alpha, base)})
    return pd.DataFrame(rows)


def region_frame(n_test: int, rng, member_shift: float, sample_shift: float, centroid_shift: float) -> pd.DataFrame:
    rows = []
    for k in range(3):
        base = rng.gamma(2.0, 0.3, size=n_test)
        dataset = f"data{k}"
        for s in range(3):
            rows.append({"group": f"dataset:{dataset}", "kind": "member", "eval_dataset": dataset,
                         "model_id": f"{dataset}.seed{s}", "test_losses": base + member_shift
                         + 0.05 * rng.normal(size=n_test)})
        for s in range(2):
            rows.append({"group": f"dataset:{dataset}", "kind": "sample", "eval_dataset": dataset,
                         "model_id": f"mix.{k}{s}",
                         "test_losses": base + sample_shift + 0.05 * rng.normal(size=n_test)})
        rows.append({"group": f"dataset:{dataset}", "kind": "centroid", "eval_dataset": dataset,
                     "model_id": f"mix.c{k}", "test_losses": base + centroid_shift + 0.05 * rng.normal(size=n_test)})
    return pd.DataFrame(rows)


def noise(rng, scale=0.3):
    return lambda alpha, base: base + scale * rng.normal(size=len(base))


def test_negative_lines_and_regions_of_exchangeable_losses_hold_nothing():
    """Every point's losses are the same examples' difficulties plus independent noise: no claim holds."""
    rng = np.random.default_rng(0)
    lines = lines_frame({r: noise(rng) for r in ("same_dataset", "same_task", "cross_task")}, 200, rng)
    region = region_frame(200, rng, 0.0, 0.0, 0.0)
    pretrained = {f"data{k}": region[(region.eval_dataset == f"data{k}") & (region.kind == "member")]
                  ["test_losses"].iloc[0] + 0.05 * rng.normal(size=200) for k in range(3)}
    found = interpolation_report.claims(lines, region, pretrained, n_boot=N_BOOT)
    assert list(found.columns) == verdicts.CLAIM_COLUMNS
    assert verdicts.HOLDS not in set(found["verdict"]), found[["claim_id", "effect", "ci_low", "ci_high"]]
    assert len(found) == 7


def test_positive_a_basin_holds_every_line_and_region_claim():
    """Loss is a parabola in α with its minimum inside the line; the centroid and samples sit below the members,
    the pretrained model above."""
    rng = np.random.default_rng(1)
    basin = lambda alpha, base: base + 0.4 * (alpha - 0.5) ** 2 + 0.02 * rng.normal(size=len(base))  # noqa: E731
    lines = lines_frame({r: basin for r in ("same_dataset", "same_task", "cross_task")}, 200, rng)
    region = region_frame(200, rng, 0.2, 0.1, 0.0)
    pretrained = {f"data{k}": region[(region.eval_dataset == f"data{k}") & (region.kind == "member")]
                  ["test_losses"].iloc[0] + 0.3 for k in range(3)}
    found = interpolation_report.claims(lines, region, pretrained, n_boot=N_BOOT)
    assert set(found["verdict"]) == {verdicts.HOLDS}, found[["claim_id", "effect", "ci_low", "ci_high"]]
    assert (found.set_index("claim_id").loc[["interior_same_dataset", "centroid_beats_own_members"], "n"] == 3).all()


def test_a_barrier_does_not_hold():
    rng = np.random.default_rng(2)
    barrier = lambda alpha, base: base - 0.4 * (alpha - 0.5) ** 2 + 0.02 * rng.normal(size=len(base))  # noqa: E731
    found = interpolation_report.claims(lines_frame({"same_dataset": barrier}, 200, rng), pd.DataFrame(), {},
                                        n_boot=N_BOOT).set_index("claim_id")
    assert found.loc["interior_same_dataset", "verdict"] == verdicts.FAILS
    assert found.loc["extrapolation_raises_loss", "verdict"] == verdicts.FAILS
    assert found.loc["interior_cross_task", "verdict"] == verdicts.INCONCLUSIVE  # no such line
    assert "no cross_task line" in found.loc["interior_cross_task", "note"]


def test_boundary_an_interior_gain_of_one_standard_error_is_inconclusive():
    """Per-example differences with mean = one standard error of their mean: the 95% interval reaches zero."""
    rng = np.random.default_rng(3)
    n = 400
    diffs = rng.normal(size=n)
    diffs = (diffs - diffs.mean()) / diffs.std() * 0.5  # sd 0.5 exactly, mean 0
    shift = 0.5 / np.sqrt(n)  # one standard error
    curve = lambda alpha, base: base + (-(diffs + shift) if 0 < alpha < 1 else 0.0)  # noqa: E731
    found = interpolation_report.claims(lines_frame({"same_dataset": curve}, n, rng, lines_per_relation=1),
                                        pd.DataFrame(), {}, n_boot=N_BOOT).set_index("claim_id")
    row = found.loc["interior_same_dataset"]
    assert row["effect"] == pytest.approx(shift, rel=1e-9)
    assert row["verdict"] == verdicts.INCONCLUSIVE and row["ci_low"] < 0 < row["ci_high"]


# ---------------------------------------------------------------- fusion


def fusion_summary(gains_points: np.ndarray, targets: int, seeds: int) -> pd.DataFrame:
    rows, k = [], 0
    for t in range(targets):
        for s in range(seeds):
            acc = 0.7 + 0.01 * t
            rows.append({"target": f"t{t}", "base": "pretrained", "scope": "pretrained", "mode": "full", "size": "all",
                         "seed": s, "accuracy": acc, "loss": 0.5, "validation_accuracy": acc})
            rows.append({"target": f"t{t}", "base": f"fused.t{t}.all", "scope": "all", "mode": "full", "size": "all",
                         "seed": s, "accuracy": acc + gains_points[k] / 100, "loss": 0.5, "validation_accuracy": acc})
            k += 1
    return pd.DataFrame(rows)


def test_fusion_controls():
    rng = np.random.default_rng(0)
    # negative: gains are noise around 0
    null = fusion.claims(fusion_summary(rng.normal(0, 3, size=12), 4, 3), n_boot=N_BOOT)
    assert null["verdict"].tolist() == [verdicts.INCONCLUSIVE]
    # positive: +3 points with sd 1
    gain = fusion.claims(fusion_summary(3 + rng.normal(0, 1, size=12), 4, 3), n_boot=N_BOOT)
    assert gain["verdict"].tolist() == [verdicts.HOLDS] and gain["n"].tolist() == [12]
    assert gain["unit"].iloc[0] == "targets × seeds (4 targets)"
    # boundary: mean gain = one standard error
    g = rng.normal(size=12)
    g = (g - g.mean()) / g.std(ddof=1) * 3 + 3 / np.sqrt(12)
    edge = fusion.claims(fusion_summary(g, 4, 3), n_boot=N_BOOT)
    assert edge["verdict"].tolist() == [verdicts.INCONCLUSIVE] and edge["effect"].iloc[0] == pytest.approx(
        3 / np.sqrt(12))
    # too few runs for an interval: inconclusive whatever the gains
    few = fusion.claims(fusion_summary(np.array([5.0, 6.0, 7.0]), 3, 1), n_boot=N_BOOT)
    assert few["verdict"].tolist() == [verdicts.INCONCLUSIVE] and "only 3 paired runs" in few["note"].iloc[0]


def test_ties_are_not_wins():
    summary = fusion_summary(np.array([0.0, 0.0, 2.0, -1.0]), 4, 1)
    wins = fusion.wins_table(summary)
    assert wins["outcome"].tolist() == ["tie", "tie", "win", "loss"]
    overview = fusion.wins_overview(wins)
    assert overview[["targets", "wins", "ties", "losses"]].iloc[0].tolist() == [4, 1, 2, 1]


# ---------------------------------------------------------------- the verdict rule itself


def test_verdict_rule():
    assert verdicts.verdict(0.1, 0.3) == "holds"
    assert verdicts.verdict(-0.3, -0.1) == "does not hold"
    assert verdicts.verdict(-0.1, 0.3) == "inconclusive"
    assert verdicts.verdict(0.0, 0.3) == "inconclusive"  # touching zero is not excluding it
    assert verdicts.verdict(-0.3, -0.1, "less") == "holds"
    assert verdicts.verdict(np.nan, 0.3) == "inconclusive"
    assert verdicts.permutation_p(10.0, np.arange(10.0)) == pytest.approx(1 / 11)
    assert verdicts.permutation_p(5.0, np.arange(10.0)) == pytest.approx(6 / 11)
    effect, low, high = verdicts.inverted_interval(1.0, np.linspace(0, 0.5, 101))
    assert effect == pytest.approx(0.75) and low == pytest.approx(1 - 0.4875) and high == pytest.approx(1 - 0.0125)
