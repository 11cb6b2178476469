"""Cluster statistics and claims on synthetic vectors whose clusters (and claims) are known."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from weightspace.geometry import clusters
from weightspace.stats import verdicts


def long_frame(ids, X, metric="euclidean", space="raw", group="all"):
    D = cdist(X, X)
    n = len(ids)
    return pd.DataFrame(
        {
            "model_a": np.repeat(ids, n),
            "model_b": np.tile(ids, n),
            "metric": metric,
            "space": space,
            "group": group,
            "distance": D.ravel(),
        }
    )


def synthetic(layout, seeds, position, pretrained=None):
    """layout: dataset -> task; position(dataset_index, task_index, seed) -> vector."""
    ids, rows, X = [], [], []
    tasks = list(dict.fromkeys(layout.values()))
    if pretrained is not None:
        ids.append("pretrained")
        rows.append(
            {
                "model_id": "pretrained",
                "kind": "pretrained",
                "dataset": None,
                "task": None,
                "seed": None,
            }
        )
        X.append(pretrained)
    for d, (dataset, task) in enumerate(layout.items()):
        for s in seeds:
            mid = f"{dataset}.seed{s}"
            ids.append(mid)
            rows.append(
                {"model_id": mid, "kind": "finetuned", "dataset": dataset, "task": task, "seed": s}
            )
            X.append(position(d, tasks.index(task), s))
    return ids, rows, np.array(X)


# neither holds nor fails
UNDECIDED = (verdicts.INCONCLUSIVE, verdicts.NOT_TESTABLE, verdicts.DESCRIPTION)
LAYOUT = {"a1": "alpha", "a2": "alpha", "b1": "beta", "b2": "beta", "c1": "gamma", "c2": "gamma"}
DIM = 24


def clustered(seed=0):
    """Tight datasets (noise 0.1) 3 apart inside tasks 10 from the pretrained origin: every claim
    holds."""
    rng = np.random.default_rng(seed)
    eye = np.eye(DIM)
    return synthetic(
        LAYOUT,
        [0, 1, 2],
        lambda d, t, s: 10 * eye[t] + 3 * eye[6 + d] + 0.1 * rng.normal(size=DIM),
        pretrained=np.zeros(DIM),
    )


def contrary(seed=0, seeds=(0, 1, 2)):
    """Seed offsets shared across datasets dominate: a model is nearer the same seed of another
    dataset of its task than the other seeds of its own dataset. Same-dataset models are *farther*
    apart than same-task ones."""
    rng = np.random.default_rng(seed)
    eye = np.eye(DIM)
    return synthetic(
        LAYOUT,
        list(seeds),
        lambda d, t, s: (
            10 * eye[t] + 0.5 * eye[6 + d] + 20 * eye[12 + s] + 0.01 * rng.normal(size=DIM)
        ),
        pretrained=np.zeros(DIM),
    )


def stat(frame, statistic, subset, method=None):
    part = frame[(frame.statistic == statistic) & (frame.subset == subset)]
    if method:
        part = part[part.method == method]
    assert len(part) == 1, (statistic, subset, method)
    return part.iloc[0]


def test_clusters_are_recovered_from_the_distances():
    ids, table, X = clustered()
    stats = clusters.cluster_stats(long_frame(ids, X), table, n_boot=200, seed=0)
    assert list(stats.columns) == clusters.STAT_COLUMNS
    for label in ("dataset", "task"):
        assert stat(stats, "nn1_accuracy", label).value == 1.0
        assert stat(stats, "silhouette", label).value > 0.5
        for method in ("spectral", "agglomerative"):
            assert stat(stats, "adjusted_rand", label, method).value > 0.95
            assert stat(stats, "purity", label, method).value == 1.0
    assert stat(stats, "adjusted_rand", "dataset", "spectral").k == 6
    assert stat(stats, "adjusted_rand", "task", "agglomerative").k == 3
    within_d, within_t, across, to_pre = (stat(stats, "distance", k) for k in clusters.PAIR_KINDS)
    assert within_d.value < within_t.value < across.value
    assert (
        within_d.n == 6 * 3
        and within_t.n == 3 * 9
        and across.n == 18 * 17 // 2 - 18 - 27
        and to_pre.n == 18
    )
    assert to_pre.value == pytest.approx(np.sqrt(109), rel=0.02)
    for row in (within_d, within_t, across, to_pre):
        assert row.ci_low <= row.value <= row.ci_high and row["std"] > 0


def test_bootstrap_resamples_models_not_pairs():
    """Model-level resampling: a replicate's mean is over pairs of distinct resampled models
    only."""
    ids, table, X = clustered()
    D = pd.DataFrame(cdist(X, X), index=ids, columns=ids)
    _, sub, datasets, tasks, to_pre = clusters._labelled(D, table)
    boots = clusters._bootstrap_means(sub, datasets, tasks, to_pre, 300, seed=1)
    # self-pairs (distance 0) never enter: within-dataset means stay near the true seed spread
    true = sub[clusters.pair_kind_masks(datasets, tasks)["within_dataset"]].mean()
    assert np.nanmin(boots["within_dataset"]) > 0.5 * true
    assert np.isfinite(boots["across_tasks"]).all()


def verdicts_of(found, metric="euclidean"):
    part = found[found["metric"] == metric]
    return dict(zip(part["claim_id"], part["verdict"]))


def test_claims_on_clustered_vectors():
    """6 datasets in 3 tasks: both headline dataset claims hold with p < 0.01; the headline task
    claims rest on 6 datasets split among 3 tasks (15 distinct partitions, p >= 1/15 > 0.05 / 2):
    not testable. Every other row is a description with its effect, interval and p."""
    ids, table, X = clustered()
    found = clusters.claims(long_frame(ids, X), table, n_boot=200)
    assert list(found.columns) == clusters.CLAIM_COLUMNS
    assert found["primary"].all() and len(found) == 10
    assert set(found["verdict"]) <= set(verdicts.VERDICTS) | {verdicts.DESCRIPTION}
    assert verdicts_of(found) == {
        "dataset_closer_than_task": "holds",
        "task_closer_than_across": "not testable",
        "nn1_dataset": "holds",
        "purity_dataset": "description",
        "ari_dataset": "description",
        "nn1_task": "not testable",
        "purity_task": "description",
        "ari_task": "description",
    }
    assert verdicts_of(found, "cosine") == {
        "task_vectors_align_by_dataset": "description",
        "task_vectors_align_by_task": "description",
    }
    assert found["headline"].sum() == 4 and found["headline"].iloc[:4].all()  # headline rows first
    dataset_rows = found[found["unit"].str.startswith("models")]
    assert (dataset_rows["p_value"] < 0.01).all()
    assert (found[found["claim_id"] == "nn1_task"]["p_value"] >= 1 / 15 - 1e-12).all()
    assert (found.loc[found["headline"], "threshold"].notna()).all()
    first = found.iloc[0]
    assert (
        first["effect"] == pytest.approx(first["reference"] - first["value"])
        and first["ci_low"] > 0
    )
    assert first["n"] == 18 and first["unit"] == "models (6 datasets)"


def test_claims_do_not_hold_on_contrary_vectors():
    """Seed offsets dominate and same-task datasets are apart: the distance claim does not hold.
    (With 3 seeds the test within tasks cannot say so: a task's 6 models split 10 ways, and the 'one
    seed in each dataset' splits are all as extreme, p = 0.064; 5 seeds give 126 splits per
    task.)"""
    ids, table, X = contrary(seeds=range(5))
    found = clusters.claims(long_frame(ids, X), table, n_boot=200)
    got = verdicts_of(found)
    assert got["dataset_closer_than_task"] == "does not hold"
    # every nearest neighbour is the same seed of another dataset
    assert got["nn1_dataset"] == "does not hold"
    assert found.iloc[0]["ci_high"] < 0
    assert found.iloc[0]["value"] > found.iloc[0]["reference"]


def test_one_seed_per_dataset_and_one_dataset_per_task_give_inconclusive_not_errors():
    eye = np.eye(DIM)
    ids, table, X = synthetic(
        {"a1": "alpha", "b1": "beta", "c1": "gamma"},
        [0],
        lambda d, t, s: 10 * eye[t],
        pretrained=np.zeros(DIM),
    )
    frame = long_frame(ids, X)
    stats = clusters.cluster_stats(frame, table, n_boot=50)
    assert np.isnan(stat(stats, "distance", "within_dataset").value)
    assert "two seeds" in stat(stats, "distance", "within_dataset").note
    assert np.isnan(stat(stats, "distance", "within_task").value)
    assert np.isnan(stat(stats, "silhouette", "dataset").value)
    assert np.isnan(stat(stats, "adjusted_rand", "dataset", "spectral").value)
    assert np.isnan(stat(stats, "nn1_accuracy", "task").value)
    assert stat(stats, "distance", "across_tasks").value == pytest.approx(10 * np.sqrt(2))
    found = clusters.claims(frame, table, n_boot=50)
    assert found["verdict"].isin(UNDECIDED).all()
    assert (
        found.set_index("claim_id")
        .loc["dataset_closer_than_task", "note"]
        .endswith("no within_dataset pairs")
    )


def test_only_pretrained_and_one_model_is_all_inconclusive():
    ids, table, X = synthetic(
        {"a1": "alpha"}, [0], lambda d, t, s: np.ones(DIM), pretrained=np.zeros(DIM)
    )
    stats = clusters.cluster_stats(long_frame(ids, X), table, n_boot=20)
    assert stat(stats, "distance", "to_pretrained").value == pytest.approx(np.sqrt(DIM))
    assert stats[stats.statistic != "distance"]["value"].isna().all()
    found = clusters.claims(long_frame(ids, X), table, n_boot=20)
    assert found["verdict"].isin(UNDECIDED).all() and found["note"].str.len().gt(0).all()


def test_undefined_cosine_to_the_zero_task_vector_is_inconclusive():
    ids, table, X = clustered()
    frame = long_frame(ids, X, metric="cosine", space="task_vector")
    frame.loc[(frame.model_a == "pretrained") | (frame.model_b == "pretrained"), "distance"] = (
        np.nan
    )
    stats = clusters.cluster_stats(frame, table, n_boot=50)
    assert np.isnan(stat(stats, "distance", "to_pretrained").value)
    # the fine-tuned models' distances are finite
    assert stat(stats, "nn1_accuracy", "dataset").value == 1.0
    found = clusters.claims(
        frame, table, n_boot=50, primary={"metric": "euclidean", "space": "raw"}
    )
    assert not found[found["metric"] == "cosine"].empty
    cos = found[found["claim_id"].str.startswith("task_vectors")]
    # no Euclidean distances to derive task-vector cosines from
    assert cos["verdict"].isin(UNDECIDED).all()


def test_task_vector_cosines_from_euclidean_distances():
    rng = np.random.default_rng(0)
    ids, table, X = synthetic(
        LAYOUT, [0, 1], lambda d, t, s: rng.normal(size=DIM), pretrained=rng.normal(size=DIM)
    )
    D = pd.DataFrame(cdist(X, X), index=ids, columns=ids)
    C, datasets, _ = clusters.task_vector_cosines(D, table)
    V = X[1:] - X[0]
    expected = (V @ V.T) / np.outer(np.linalg.norm(V, axis=1), np.linalg.norm(V, axis=1))
    np.testing.assert_allclose(C, expected, atol=1e-10)


def test_relabelings_reassign_labels_at_the_unit_they_were_assigned():
    datasets = np.array(["a1"] * 3 + ["a2"] * 3 + ["b1"] * 3 + ["b2"] * 3)
    tasks = np.array(["alpha"] * 6 + ["beta"] * 6)
    design = clusters.Design(datasets, tasks, 1000, 0)
    codes = np.unique(datasets, return_inverse=True)[1]
    # dataset level: models trade datasets within their task only, every dataset keeps its size
    d = design.by_dataset.labels
    assert len(d) == 400 and design.by_dataset.exact and design.by_dataset.distinct == 100
    assert (np.isin(d[:, :6], codes[:6]) & np.isin(d[:, 6:], codes[6:])).all()
    assert all(sorted(row) == sorted(codes) for row in d)
    # task level: a dataset's models move together; every task keeps its number of datasets
    t = design.levels["task"].tasks
    assert len(t) == 6 and design.by_task.distinct == 3
    for row in t:
        assert all(len(set(row[datasets == name])) == 1 for name in set(datasets))
        assert sorted(np.bincount(row)) == [6, 6]


def test_adjusted_rand_matches_sklearn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 15), rng.integers(0, 3, 15)
        assert clusters.adjusted_rand(a, b) == pytest.approx(adjusted_rand_score(a, b))
    assert clusters.adjusted_rand([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0


def test_purity_and_nn1_by_hand():
    assert clusters.purity(["a", "a", "b", "b"], [0, 0, 0, 1]) == 0.75
    D = np.array([[0, 1, 5], [1, 0, 5], [5, 5, 0]], dtype=float)
    assert clusters.nn1_accuracy(D, ["x", "x", "y"]) == pytest.approx(2 / 3)


def test_distance_claims_report_the_within_dataset_over_across_task_ratio_with_its_interval():
    ids, table, X = clustered()
    found = clusters.claims(long_frame(ids, X), table, n_boot=200)
    note = (
        found[(found["metric"] == "euclidean")]
        .set_index("claim_id")
        .loc["dataset_closer_than_task", "note"]
    )
    match = re.search(
        r"ratio within_dataset / across_tasks = ([0-9.e-]+) \[([0-9.e-]+), ([0-9.e-]+)\]", note
    )
    assert match, note
    ratio, low, high = map(float, match.groups())
    # clustered: a dataset's seeds sit much closer than other tasks' models
    assert low <= ratio <= high < 1
