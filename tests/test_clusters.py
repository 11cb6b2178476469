"""Cluster statistics and claims on synthetic vectors whose clusters (and claims) are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from weightspace import clusters


def long_frame(ids, X, metric="euclidean", space="raw", group="all"):
    D = cdist(X, X)
    n = len(ids)
    return pd.DataFrame({"model_a": np.repeat(ids, n), "model_b": np.tile(ids, n), "metric": metric,
                         "space": space, "group": group, "distance": D.ravel()})


def synthetic(layout, seeds, position, pretrained=None):
    """layout: dataset -> task; position(dataset_index, task_index, seed) -> vector."""
    ids, rows, X = [], [], []
    tasks = list(dict.fromkeys(layout.values()))
    if pretrained is not None:
        ids.append("pretrained")
        rows.append({"model_id": "pretrained", "kind": "pretrained", "dataset": None, "task": None, "seed": None})
        X.append(pretrained)
    for d, (dataset, task) in enumerate(layout.items()):
        for s in seeds:
            mid = f"{dataset}.seed{s}"
            ids.append(mid)
            rows.append({"model_id": mid, "kind": "finetuned", "dataset": dataset, "task": task, "seed": s})
            X.append(position(d, tasks.index(task), s))
    return ids, rows, np.array(X)


LAYOUT = {"a1": "alpha", "a2": "alpha", "b1": "beta", "b2": "beta", "c1": "gamma", "c2": "gamma"}
DIM = 24


def clustered(seed=0):
    """Tight datasets (noise 0.1) 3 apart inside tasks 10 from the pretrained origin: every claim holds."""
    rng = np.random.default_rng(seed)
    eye = np.eye(DIM)
    return synthetic(LAYOUT, [0, 1, 2], lambda d, t, s: 10 * eye[t] + 3 * eye[6 + d] + 0.1 * rng.normal(size=DIM),
                     pretrained=np.zeros(DIM))


def contrary(seed=0):
    """Seed offsets dominate, datasets of different tasks coincide, the pretrained model is far: no claim holds."""
    rng = np.random.default_rng(seed)
    eye = np.eye(DIM)
    layout = {"a1": "alpha", "a2": "alpha", "b1": "beta", "b2": "beta"}
    place = {0: 10 * eye[1], 1: 10 * eye[2], 2: 10 * eye[1] + 0.5 * eye[3], 3: 10 * eye[2] + 0.5 * eye[3]}
    return synthetic(layout, [0, 1, 2], lambda d, t, s: place[d] + 20 * eye[4 + s] + 0.01 * rng.normal(size=DIM),
                     pretrained=100 * eye[0])


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
    assert within_d.n == 6 * 3 and within_t.n == 3 * 9 and across.n == 18 * 17 // 2 - 18 - 27 and to_pre.n == 18
    assert to_pre.value == pytest.approx(np.sqrt(109), rel=0.02)
    for row in (within_d, within_t, across, to_pre):
        assert row.ci_low <= row.value <= row.ci_high and row["std"] > 0


def test_bootstrap_resamples_models_not_pairs():
    """Model-level resampling: a replicate's mean is over pairs of distinct resampled models only."""
    ids, table, X = clustered()
    D = pd.DataFrame(cdist(X, X), index=ids, columns=ids)
    _, sub, datasets, tasks, to_pre = clusters._labelled(D, table)
    boots = clusters._bootstrap_means(sub, datasets, tasks, to_pre, 300, seed=1)
    # self-pairs (distance 0) never enter: within-dataset means stay near the true seed spread
    true = sub[clusters.pair_kind_masks(datasets, tasks)["within_dataset"]].mean()
    assert np.nanmin(boots["within_dataset"]) > 0.5 * true
    assert np.isfinite(boots["across_tasks"]).all()


def test_claims_hold_on_clustered_vectors():
    ids, table, X = clustered()
    found = clusters.claims(long_frame(ids, X), table, n_boot=200)
    assert list(found.columns) == clusters.CLAIM_COLUMNS
    assert found["primary"].all() and len(found) == 3
    assert (found["verdict"] == "holds").all(), found[["claim", "verdict", "note"]]
    assert found.iloc[2]["value"] == 1.0
    assert (found.iloc[:2]["ci_high"] < 0).all()  # the differences are clearly negative


def test_claims_do_not_hold_on_contrary_vectors():
    ids, table, X = contrary()
    found = clusters.claims(long_frame(ids, X), table, n_boot=200)
    assert (found["verdict"] == "does not hold").all(), found[["claim", "verdict", "note"]]
    assert found.iloc[0]["value"] > found.iloc[0]["reference"]
    assert found.iloc[2]["value"] == 0.0 and "0 of 12" in found.iloc[2]["note"]


def test_one_seed_per_dataset_and_one_dataset_per_task_give_na_not_errors():
    eye = np.eye(DIM)
    ids, table, X = synthetic({"a1": "alpha", "b1": "beta", "c1": "gamma"}, [0],
                              lambda d, t, s: 10 * eye[t], pretrained=np.zeros(DIM))
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
    assert list(found["verdict"]) == ["n/a (no within_dataset pairs)", "n/a (no within_task pairs)", "holds"]


def test_only_pretrained_and_one_model_is_all_na():
    ids, table, X = synthetic({"a1": "alpha"}, [0], lambda d, t, s: np.ones(DIM), pretrained=np.zeros(DIM))
    stats = clusters.cluster_stats(long_frame(ids, X), table, n_boot=20)
    assert stat(stats, "distance", "to_pretrained").value == pytest.approx(np.sqrt(DIM))
    assert stats[stats.statistic != "distance"]["value"].isna().all()
    assert clusters.claims(long_frame(ids, X), table, n_boot=20)["verdict"].str.startswith("n/a (").all()


def test_undefined_cosine_to_the_zero_task_vector_is_na():
    ids, table, X = clustered()
    frame = long_frame(ids, X, metric="cosine", space="task_vector")
    frame.loc[(frame.model_a == "pretrained") | (frame.model_b == "pretrained"), "distance"] = np.nan
    stats = clusters.cluster_stats(frame, table, n_boot=50)
    assert np.isnan(stat(stats, "distance", "to_pretrained").value)
    assert stat(stats, "nn1_accuracy", "dataset").value == 1.0  # the fine-tuned models' distances are finite
    found = clusters.claims(frame, table, n_boot=50, primary={"metric": "euclidean", "space": "raw"})
    assert not found["primary"].any()
    assert found.iloc[2]["verdict"].startswith("n/a")


def test_purity_and_nn1_by_hand():
    assert clusters.purity(["a", "a", "b", "b"], [0, 0, 0, 1]) == 0.75
    D = np.array([[0, 1, 5], [1, 0, 5], [5, 5, 0]], dtype=float)
    assert clusters.nn1_accuracy(D, ["x", "x", "y"]) == pytest.approx(2 / 3)
