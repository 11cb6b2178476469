"""Controls: the real claims code on synthetic weights and losses whose truth is known.

Negative: nothing is there, so no headline claim may 'hold'. Positive: the structure is planted
strongly in a design whose floor allows it, so every headline claim must 'hold'. Boundary: an
effect planted at about the size of its own interval must come out 'inconclusive'. A design too
small to reach its threshold must say 'not testable'. Each test asserts the exact verdicts it
expects; tests/test_calibration.py measures the rule's error rates over many studies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from weightspace.geometry import clusters, interpolation
from weightspace.stats import verdicts
from weightspace.train import fusion_outcomes

N_BOOT = 400


def long_frame(ids, X):
    D = cdist(X, X)
    n = len(ids)
    return pd.DataFrame(
        {
            "model_a": np.repeat(ids, n),
            "model_b": np.tile(ids, n),
            "metric": "euclidean",
            "space": "raw",
            "group": "all",
            "distance": D.ravel(),
        }
    )


def study(layout: dict[str, str], seeds: int, position, pretrained: np.ndarray):
    """layout: dataset -> task; position(dataset index, task index, seed) -> weights."""
    ids, rows, X = (
        ["pretrained"],
        [
            {
                "model_id": "pretrained",
                "kind": "pretrained",
                "dataset": None,
                "task": None,
                "seed": None,
            }
        ],
        [pretrained],
    )
    tasks = list(dict.fromkeys(layout.values()))
    for d, (dataset, task) in enumerate(layout.items()):
        for s in range(seeds):
            ids.append(f"{dataset}.seed{s}")
            rows.append(
                {
                    "model_id": ids[-1],
                    "kind": "finetuned",
                    "dataset": dataset,
                    "task": task,
                    "seed": s,
                }
            )
            X.append(position(d, tasks.index(task), s))
    return ids, rows, np.array(X)


def layout(n_tasks: int, per_task: int) -> dict[str, str]:
    return {f"d{t}{i}": f"task{t}" for t in range(n_tasks) for i in range(per_task)}


def claim_verdicts(found: pd.DataFrame) -> dict[str, str]:
    return {f"{r.metric}/{r.claim_id}": r.verdict for r in found.itertuples()}


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negative_random_perturbations_with_random_labels_hold_nothing(seed):
    """Fine-tuned models = the pretrained vector + a random direction of one norm; datasets and
    tasks assigned at random. In high dimension d(a, b) ≈ √2·r > r = d(a, pretrained): the old
    'closer to the pretrained model' claim held for this; no claim may hold now."""
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
    # and the quantity the old claim rested on is there: every model nearer the pretrained one than
    # any other
    d = cdist(X, X)
    assert (d[0, 1:][:, None] < np.where(np.eye(len(X) - 1, dtype=bool), np.inf, d[1:, 1:])).all()


def test_positive_planted_dataset_and_task_structure_holds_every_clustering_claim():
    """12 datasets in 4 tasks, 3 seeds: tasks apart, datasets apart within a task, seeds tight.
    Every clustering claim holds with p < 0.01 (4 tasks of 3 datasets give 15 400 task partitions,
    so p can go that low)."""
    rng = np.random.default_rng(0)
    dim = 64
    eye = np.eye(dim)
    pretrained = np.zeros(dim)
    ids, table, X = study(
        layout(4, 3),
        3,
        lambda d, t, s: 10 * eye[t] + 3 * eye[8 + d] + 0.3 * rng.normal(size=dim),
        pretrained,
    )
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT, n_perm=999)
    headline = found[found["headline"]]
    assert len(headline) == 4 and set(headline["family"]) == {"dataset geometry", "task geometry"}
    assert set(headline["verdict"]) == {verdicts.HOLDS}, headline[
        ["claim_id", "verdict", "ci_low", "p_value", "note"]
    ]
    assert set(found.loc[~found["headline"], "verdict"]) == {verdicts.DESCRIPTION}
    assert (found["p_value"] < 0.01).all(), found[["claim_id", "p_value"]]
    assert (found["ci_low"] > 0).all()
    # 280 ... 15,400 task partitions: the floor is far below alpha / 2
    assert (headline["p_floor"] < 0.005).all() and (headline["threshold"] <= 0.05).all()


def test_six_datasets_in_three_tasks_cannot_test_a_task_claim():
    """The default's design: 15 ways to split 6 datasets into 3 pairs, p >= 1/15 > 0.05 / 2. However
    strong the task structure, the task claims are 'not testable', and say why; the dataset claims
    still hold."""
    rng = np.random.default_rng(0)
    eye = np.eye(64)
    ids, table, X = study(
        layout(3, 2),
        3,
        lambda d, t, s: 10 * eye[t] + 3 * eye[8 + d] + 0.3 * rng.normal(size=64),
        np.zeros(64),
    )
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT).set_index("claim_id")
    for claim in ("task_closer_than_across", "nn1_task"):
        assert found.loc[claim, "verdict"] == verdicts.NOT_TESTABLE
        assert found.loc[claim, "p_floor"] == pytest.approx(1 / 15)
        assert "15 ways to split 6 datasets into tasks of 2, 2, 2" in found.loc[claim, "note"]
    for claim in ("dataset_closer_than_task", "nn1_dataset"):
        assert found.loc[claim, "verdict"] == verdicts.HOLDS


def test_boundary_weak_dataset_structure_is_inconclusive():
    """A dataset offset about the size of the seed noise's effect on the mean distance: the
    within-dataset vs within-task difference is of the order of its interval."""
    rng = np.random.default_rng(5)
    dim = 400
    eye = np.eye(dim)
    ids, table, X = study(
        layout(3, 2),
        3,
        lambda d, t, s: 10 * eye[t] + 0.06 * eye[8 + d] + 0.1 * rng.normal(size=dim),
        np.zeros(dim),
    )
    found = clusters.claims(long_frame(ids, X), table, n_boot=N_BOOT)
    row = found.set_index("claim_id").loc["dataset_closer_than_task"]
    assert row["verdict"] == verdicts.INCONCLUSIVE, row
    assert row["headline"] and row["family"] == "dataset geometry"
    assert row["effect"] > 0 and row["ci_low"] < 0 < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] > row["effect"]


# ----------------------------------------------------------- lines and regions (per-example losses)


def lines_frame(
    curves: dict[str, callable],
    n_test: int,
    rng,
    alphas=(-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
    groups: int = 6,
    lines_per_group: int = 1,
) -> pd.DataFrame:
    """curves: relation -> f(alpha, base losses) -> per-example losses at alpha; each group (a
    dataset, or a pair of datasets) has its own lines, as traversal chooses them."""
    rows = []
    for relation, curve in curves.items():
        for g in range(groups):
            a, b = (
                (f"d{relation[:4]}{g}",) * 2
                if relation == "same_dataset"
                else (f"d{relation[:4]}{g}x", f"d{relation[:4]}{g}y")
            )
            base = rng.gamma(2.0, 0.3, size=n_test)  # the group's example difficulties
            for k in range(lines_per_group):
                for alpha in alphas:
                    rows.append(
                        {
                            "relation": relation,
                            "pair": f"{a}.seed{k} — {b}.seed{k + 1}",
                            "eval_dataset": a,
                            "alpha": alpha,
                            "loss": np.nan,
                            "test_losses": curve(alpha, base),
                        }
                    )
    return pd.DataFrame(rows)


def region_frame(
    n_test: int,
    rng,
    member_shift: float,
    sample_shift: float,
    centroid_shift: float,
    groups: int = 6,
) -> pd.DataFrame:
    rows = []
    for k in range(groups):
        base = rng.gamma(2.0, 0.3, size=n_test)
        dataset = f"data{k}"
        for s in range(3):
            rows.append(
                {
                    "group": f"dataset:{dataset}",
                    "kind": "member",
                    "eval_dataset": dataset,
                    "model_id": f"{dataset}.seed{s}",
                    "test_losses": base + member_shift + 0.05 * rng.normal(size=n_test),
                }
            )
        for s in range(2):
            rows.append(
                {
                    "group": f"dataset:{dataset}",
                    "kind": "sample",
                    "eval_dataset": dataset,
                    "model_id": f"mix.{k}{s}",
                    "test_losses": base + sample_shift + 0.05 * rng.normal(size=n_test),
                }
            )
        rows.append(
            {
                "group": f"dataset:{dataset}",
                "kind": "centroid",
                "eval_dataset": dataset,
                "model_id": f"mix.c{k}",
                "test_losses": base + centroid_shift + 0.05 * rng.normal(size=n_test),
            }
        )
    return pd.DataFrame(rows)


def noise(rng, scale=0.3):
    return lambda alpha, base: base + scale * rng.normal(size=len(base))


def test_negative_lines_and_regions_of_exchangeable_losses_hold_nothing():
    """Every point's losses are the same examples' difficulties plus independent noise: no claim
    holds."""
    rng = np.random.default_rng(0)
    lines = lines_frame(
        {r: noise(rng) for r in ("same_dataset", "same_task", "cross_task")}, 200, rng
    )
    region = region_frame(200, rng, 0.0, 0.0, 0.0)
    pretrained = {
        f"data{k}": region[(region.eval_dataset == f"data{k}") & (region.kind == "member")][
            "test_losses"
        ].iloc[0]
        + 0.05 * rng.normal(size=200)
        for k in range(6)
    }
    found = interpolation.claims(lines, region, pretrained, n_boot=N_BOOT)
    assert list(found.columns) == verdicts.CLAIM_COLUMNS
    assert verdicts.HOLDS not in set(found["verdict"]), found[
        ["claim_id", "effect", "ci_low", "ci_high"]
    ]
    assert len(found) == 7
    assert sorted(found.loc[found["headline"], "claim_id"]) == [
        "centroid_beats_own_members",
        "extrapolation_raises_loss",
        "interior_same_dataset",
    ]


def test_positive_a_basin_holds_every_line_and_region_claim():
    """Loss is a parabola in α with its minimum inside the line; the centroid and samples sit below
    the members, the pretrained model above."""
    rng = np.random.default_rng(1)
    basin = lambda alpha, base: base + 0.4 * (alpha - 0.5) ** 2 + 0.02 * rng.normal(size=len(base))  # noqa: E731
    lines = lines_frame({r: basin for r in ("same_dataset", "same_task", "cross_task")}, 200, rng)
    region = region_frame(200, rng, 0.2, 0.1, 0.0)
    pretrained = {
        f"data{k}": region[(region.eval_dataset == f"data{k}") & (region.kind == "member")][
            "test_losses"
        ].iloc[0]
        + 0.3
        for k in range(6)
    }
    found = interpolation.claims(lines, region, pretrained, n_boot=N_BOOT)
    headline = found[found["headline"]]
    assert set(headline["verdict"]) == {verdicts.HOLDS}, headline[
        ["claim_id", "effect", "ci_low", "p_value"]
    ]
    # 6 groups: 64 sign patterns
    assert (found["ci_low"] > 0).all() and (found["p_value"] <= 1 / 64).all()
    assert (
        found.set_index("claim_id").loc[
            ["interior_same_dataset", "centroid_beats_own_members"], "n"
        ]
        == 6
    ).all()


def test_three_groups_cannot_test_a_line_claim():
    """3 groups give 8 sign patterns: p >= 1/8 > 0.05 / 3. A basin as clear as the positive
    control's is 'not testable' at the unit where lines were chosen, whatever the number of test
    examples."""
    rng = np.random.default_rng(1)
    basin = lambda alpha, base: base + 0.4 * (alpha - 0.5) ** 2 + 0.02 * rng.normal(size=len(base))  # noqa: E731
    found = interpolation.claims(
        lines_frame({"same_dataset": basin}, 200, rng, groups=3, lines_per_group=3),
        pd.DataFrame(),
        {},
        n_boot=N_BOOT,
    ).set_index("claim_id")
    row = found.loc["interior_same_dataset"]
    assert (
        row["verdict"] == verdicts.NOT_TESTABLE
        and row["p_floor"] == pytest.approx(1 / 8)
        and row["n"] == 3
    )
    assert row["ci_low"] > 0  # the data are clear; the design is what cannot decide


def test_a_barrier_does_not_hold():
    rng = np.random.default_rng(2)
    barrier = lambda alpha, base: (
        base - 0.4 * (alpha - 0.5) ** 2 + 0.02 * rng.normal(size=len(base))
    )  # noqa: E731
    found = interpolation.claims(
        lines_frame({"same_dataset": barrier}, 200, rng), pd.DataFrame(), {}, n_boot=N_BOOT
    ).set_index("claim_id")
    assert found.loc["interior_same_dataset", "verdict"] == verdicts.FAILS
    assert found.loc["extrapolation_raises_loss", "verdict"] == verdicts.FAILS
    # no such line, and not a headline
    assert found.loc["interior_cross_task", "verdict"] == verdicts.DESCRIPTION
    assert "no cross_task line" in found.loc["interior_cross_task", "note"]


def test_boundary_an_interior_gain_of_one_standard_error_is_inconclusive():
    """8 groups whose interior gains have mean = one standard error of their mean (the unit is the
    group): the interval reaches zero and the sign-flip p is far above its threshold, however many
    test examples a line has."""
    rng = np.random.default_rng(3)
    alphas = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
    gains = rng.normal(size=8)
    gains = (gains - gains.mean()) / gains.std(ddof=1) * 0.5 + 0.5 / np.sqrt(8)
    calls = []

    def curve(alpha, base):  # called alpha by alpha, group after group
        group = len(calls) // len(alphas)
        calls.append(alpha)
        return base - (gains[group] if 0 < alpha < 1 else 0.0)

    found = interpolation.claims(
        lines_frame({"same_dataset": curve}, 400, rng, alphas, groups=8),
        pd.DataFrame(),
        {},
        n_boot=N_BOOT,
    ).set_index("claim_id")
    row = found.loc["interior_same_dataset"]
    assert row["effect"] == pytest.approx(0.5 / np.sqrt(8), rel=1e-6)
    assert row["verdict"] == verdicts.INCONCLUSIVE and row["ci_low"] < 0 < row["ci_high"]
    assert row["p_value"] > 0.05


# ---------------------------------------------------------------- fusion


def fusion_summary(gains_points: np.ndarray, targets: int, seeds: int) -> pd.DataFrame:
    rows, k = [], 0
    for t in range(targets):
        for s in range(seeds):
            acc = 0.7 + 0.01 * t
            rows.append(
                {
                    "target": f"t{t}",
                    "base": "pretrained",
                    "scope": "pretrained",
                    "mode": "full",
                    "size": "all",
                    "seed": s,
                    "accuracy": acc,
                    "loss": 0.5,
                    "validation_accuracy": acc,
                }
            )
            rows.append(
                {
                    "target": f"t{t}",
                    "base": f"fused.t{t}.all",
                    "scope": "all",
                    "mode": "full",
                    "size": "all",
                    "seed": s,
                    "accuracy": acc + gains_points[k] / 100,
                    "loss": 0.5,
                    "validation_accuracy": acc,
                }
            )
            k += 1
    return pd.DataFrame(rows)


def test_fusion_controls():
    rng = np.random.default_rng(0)
    # negative: gains are noise around 0
    null = fusion_outcomes.claims(fusion_summary(rng.normal(0, 3, size=24), 8, 3), n_boot=N_BOOT)
    assert null["verdict"].tolist() == [verdicts.INCONCLUSIVE]
    # positive: +3 points with sd 1, 8 targets: the target is the unit
    gain = fusion_outcomes.claims(
        fusion_summary(3 + rng.normal(0, 1, size=24), 8, 3), n_boot=N_BOOT
    )
    assert gain["verdict"].tolist() == [verdicts.HOLDS] and gain["n"].tolist() == [8]
    assert gain["unit"].iloc[0] == "targets (24 runs: targets × seeds)"
    assert (
        gain["p_value"].iloc[0] == pytest.approx(1 / 256)
        and "targets: 8 wins" in gain["note"].iloc[0]
    )
    # boundary: mean gain = one standard error of the target means
    g = rng.normal(size=8)
    g = (g - g.mean()) / g.std(ddof=1) * 3 + 3 / np.sqrt(8)
    edge = fusion_outcomes.claims(fusion_summary(np.repeat(g, 3), 8, 3), n_boot=N_BOOT)
    assert edge["verdict"].tolist() == [verdicts.INCONCLUSIVE] and edge["effect"].iloc[
        0
    ] == pytest.approx(3 / np.sqrt(8))
    # 4 targets (the old default): 16 sign patterns, p >= 0.0625 > 0.05, however clear the 12 runs
    four = fusion_outcomes.claims(
        fusion_summary(3 + rng.normal(0, 1, size=12), 4, 3), n_boot=N_BOOT
    )
    assert (
        four["verdict"].tolist() == [verdicts.NOT_TESTABLE]
        and "16 sign patterns" in four["note"].iloc[0]
    )
    # one target: no interval, and no test (2 sign patterns)
    one = fusion_outcomes.claims(fusion_summary(np.array([5.0, 6.0, 7.0]), 1, 3), n_boot=N_BOOT)
    assert (
        one["verdict"].tolist() == [verdicts.NOT_TESTABLE]
        and "only 1 target" in one["note"].iloc[0]
    )


def test_ties_are_not_wins():
    summary = fusion_summary(np.array([0.0, 0.0, 2.0, -1.0]), 4, 1)
    wins = fusion_outcomes.wins_table(summary)
    assert wins["outcome"].tolist() == ["tie", "tie", "win", "loss"]
    overview = fusion_outcomes.wins_overview(wins)
    assert overview[["targets", "wins", "ties", "losses"]].iloc[0].tolist() == [4, 1, 2, 1]


# ---------------------------------------------------------------- the verdict rule itself


def test_holm_and_the_four_verdicts():
    from weightspace.stats import inference

    rejected, thresholds = inference.holm([0.01, 0.04, 0.03], 0.05)
    assert rejected.tolist() == [True, False, False]  # 0.03 misses 0.05 / 2 and stops the steps
    assert thresholds.tolist() == pytest.approx([0.05 / 3, 0.05, 0.025])
    assert inference.holm([0.01, 0.02, 0.04], 0.05)[0].tolist() == [True, True, True]
    rows = [
        verdicts.claim_row(
            "a",
            "",
            1.0,
            0.5,
            1.5,
            8,
            "u",
            p_value=0.004,
            p_opposite=1,
            family="f",
            headline=True,
            p_floor=1 / 256,
        ),
        verdicts.claim_row(
            "b",
            "",
            -1.0,
            -1.5,
            -0.5,
            8,
            "u",
            p_value=1,
            p_opposite=0.004,
            family="f",
            headline=True,
            p_floor=1 / 256,
        ),
        verdicts.claim_row(
            "c",
            "",
            1.0,
            0.5,
            1.5,
            8,
            "u",
            p_value=0.03,
            p_opposite=1,
            family="f",
            headline=True,
            p_floor=1 / 256,
        ),
        verdicts.claim_row(
            "d",
            "",
            1.0,
            0.5,
            1.5,
            3,
            "u",
            p_value=0.125,
            p_opposite=1,
            family="f",
            headline=True,
            p_floor=1 / 8,
            design="8 sign patterns",
        ),
        verdicts.claim_row(
            "e", "", 1.0, 0.5, 1.5, 3, "u", p_value=0.001, family="", headline=False
        ),
    ]
    found = verdicts.decide(pd.DataFrame(rows)).set_index("claim_id")
    assert found["verdict"].to_dict() == {
        "a": "holds",
        "b": "does not hold",
        "c": "inconclusive",
        "d": "not testable",
        "e": "description",
    }
    assert "8 sign patterns: p >= 0.125 > 0.0125" in found.loc["d", "note"]
    # an interval that excludes 0 is not enough: the test at the unit must pass its Holm threshold
    # too
    alone = verdicts.decide(pd.DataFrame([{**rows[0], "p_value": 0.2}]))
    assert alone["verdict"].tolist() == ["inconclusive"]


def test_exact_relabelings_and_sign_flips():
    from weightspace.stats import inference

    six = inference.Relabelings(np.array(["a", "a", "b", "b", "c", "c"]))
    assert (len(six), six.distinct, six.floor, six.exact) == (90, 15, pytest.approx(1 / 15), True)
    within = inference.Relabelings(np.repeat(np.arange(6), 3), np.repeat(np.arange(3), 6))
    # 10 splits of 6 models into two datasets, per task
    assert within.distinct == 1000 and len(within) == 8000
    assert (
        inference.partitions_count([4, 2, 2]) == 210
        and inference.partitions_count([3, 3, 3]) == 280
    )
    flips = inference.SignFlips(4)
    assert flips.signs.shape == (16, 4) and flips.floor == 1 / 16
    assert inference.p_values(1.0, flips.null_means(np.ones(4))) == (1 / 16, 1.0)
    big = inference.Relabelings(np.repeat(np.arange(10), 3), n_mc=99)
    assert not big.exact and big.floor == pytest.approx(1 / 100) and len(big) == 100
    # Monte Carlo: the observed labelling first ...
    assert (big.labels[0] == np.repeat(np.arange(10), 3)).all()
    # ... counted once
    assert inference.p_values(5.0, np.array([5.0, 1.0, 2.0, 3.0])) == (0.25, 1.0)


def test_verdict_rule():
    assert verdicts.verdict(0.1, 0.3) == "holds"
    assert verdicts.verdict(-0.3, -0.1) == "does not hold"
    assert verdicts.verdict(-0.1, 0.3) == "inconclusive"
    assert verdicts.verdict(0.0, 0.3) == "inconclusive"  # touching zero is not excluding it
    assert verdicts.verdict(-0.3, -0.1, "less") == "holds"
    assert verdicts.verdict(np.nan, 0.3) == "inconclusive"
    effect, low, high = verdicts.inverted_interval(1.0, np.linspace(0, 0.5, 101))
    assert (
        effect == pytest.approx(0.75)
        and low == pytest.approx(1 - 0.4875)
        and high == pytest.approx(1 - 0.0125)
    )
