"""t-SNE and PCA from distance matrices, and the geometry figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from test_clusters import DIM, clustered, long_frame
from weightspace.geometry import clusters, projection


@pytest.mark.parametrize("n, expected", [(22, 7.0), (200, 30.0), (7, 2.0), (4, 2.0)])
def test_default_perplexity_scales_with_the_number_of_models(n, expected):
    assert projection.perplexity_for(n) == expected


@pytest.mark.parametrize("n, setting", [(3, None), (2, None), (5, 50.0)])
def test_perplexity_stays_below_the_number_of_models(n, setting):
    assert 0 < projection.perplexity_for(n, setting) < n - 0.5


def test_pca_from_distances_is_the_pca_of_the_vectors():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(0).normal(size=(12, 30)) * np.linspace(3, 0.1, 30)
    scores, ratios = projection.pca_from_distances(cdist(X, X), 2)
    pca = PCA(n_components=2).fit(X)
    want = pca.transform(X)
    for k in range(2):
        assert abs(np.corrcoef(scores[:, k], want[:, k])[0, 1]) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(np.abs(scores[:, k]), np.abs(want[:, k]), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ratios, pca.explained_variance_ratio_, rtol=1e-9)


def test_tsne_on_clustered_vectors_keeps_the_clusters():
    """The default perplexity (6 for 19 models) keeps the tasks; one at the seed count keeps the
    datasets too."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score

    ids, table, X = clustered()
    D = cdist(X, X)
    tab = pd.DataFrame(table)
    ft = (tab["kind"] == "finetuned").to_numpy()
    coords = projection.tsne(D, projection.perplexity_for(len(ids)), seed=0)
    assert coords.shape == (len(ids), 2) and np.isfinite(coords).all()
    C = cdist(coords[ft], coords[ft])
    assert clusters.nn1_accuracy(C, tab.loc[ft, "task"]) == 1.0
    found = AgglomerativeClustering(n_clusters=3, linkage="average").fit_predict(coords[ft])
    assert adjusted_rand_score(tab.loc[ft, "task"], found) > 0.9
    fine = projection.tsne(D, 3.0, seed=0)
    C = cdist(fine[ft], fine[ft])
    assert clusters.nn1_accuracy(C, tab.loc[ft, "dataset"]) == 1.0
    assert clusters.nn1_accuracy(C, tab.loc[ft, "task"]) == 1.0
    again = projection.tsne(D, projection.perplexity_for(len(ids)), seed=0)
    np.testing.assert_allclose(coords, again)  # deterministic for a seed


def test_tsne_with_two_models_falls_back_to_the_pca_line():
    D = np.array([[0.0, 2.0], [2.0, 0.0]])
    coords = projection.tsne(D, projection.perplexity_for(2))
    assert abs(coords[0, 0] - coords[1, 0]) == pytest.approx(2.0)


def _with_fused_and_mix(ids, table, X):
    rng = np.random.default_rng(5)
    extra = {"fused.a1.task": X[1:4].mean(axis=0), "mix.0a1b": X[5] + 0.01 * rng.normal(size=DIM)}
    for mid, vector in extra.items():
        kind = mid.split(".")[0]
        ids = [*ids, mid]
        table = [
            *table,
            {"model_id": mid, "kind": kind, "dataset": None, "task": None, "seed": None},
        ]
        X = np.vstack([X, vector])
    return ids, table, X


def test_projection_rule_writes_coordinates_and_figures(tmp_path):
    import matplotlib.image as mpimg

    ids, table, X = _with_fused_and_mix(*clustered())
    frame = long_frame(ids, X)
    nan_cosine = long_frame(ids, X, metric="cosine", space="task_vector")
    nan_cosine.loc[nan_cosine.model_a == "pretrained", "distance"] = np.nan
    pd.concat([frame, nan_cosine]).to_parquet(tmp_path / "distances.parquet")
    out = {name: tmp_path / name for name in ("tsne.csv", "pca.csv", "tsne.png", "heatmap.png")}
    settings = {
        "primary": {"metric": "euclidean", "space": "raw"},
        "tsne": {"perplexity": None, "max_iter": 500},
        "seed": 0,
    }
    projection.run(
        tmp_path / "distances.parquet",
        table,
        out["tsne.csv"],
        out["pca.csv"],
        out["tsne.png"],
        out["heatmap.png"],
        settings,
    )
    tsne, pca = pd.read_csv(out["tsne.csv"]), pd.read_csv(out["pca.csv"])
    finetuned = [i for i, row in zip(ids, table) if row["kind"] == "finetuned"]
    # t-SNE: fine-tuned models only
    assert list(tsne["model_id"]) == finetuned and list(pca["model_id"]) == ids
    assert {
        "kind",
        "dataset",
        "task",
        "x",
        "y",
        "perplexity",
        "metric",
        "space",
        "nn1_dataset_plane",
    } <= set(tsne.columns)
    assert tsne["perplexity"].iloc[0] == projection.perplexity_for(len(finetuned))
    assert {"pc1", "pc2", "explained_pc1", "explained_pc2"} <= set(pca.columns)
    assert 0 < pca["explained_pc2"].iloc[0] <= pca["explained_pc1"].iloc[0] < 1
    for name in ("tsne.png", "heatmap.png"):
        image = mpimg.imread(out[name])
        assert image.shape[0] > 400 and image.shape[1] > 400

    # cosine on task vectors as the primary: the pretrained model (zero vector) is left out, not a
    # crash
    settings["primary"] = {"metric": "cosine", "space": "task_vector"}
    projection.run(
        tmp_path / "distances.parquet",
        table,
        out["tsne.csv"],
        out["pca.csv"],
        out["tsne.png"],
        out["heatmap.png"],
        settings,
    )
    assert "pretrained" not in set(pd.read_csv(out["tsne.csv"])["model_id"])


def test_tsne_plane_keeps_seed_clusters_when_the_pretrained_and_fused_models_sit_among_them():
    """The default's geometry: task vectors are mostly seed noise (within-dataset distances only
    ~10% below across), and the pretrained and fused models are nearer to every model than any two
    models are to each other. Mapped together, those hubs took every point's nearest neighbour and
    the plane lost the seeds' clusters; the rule maps the fine-tuned models and shows the clusters
    the weights have."""
    rng = np.random.default_rng(0)
    dim, datasets, seeds = 4000, [f"d{i}" for i in range(6)], 3
    ids, table, rows = (
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
        [np.zeros(dim)],
    )
    for i, d in enumerate(datasets):
        shared = rng.normal(size=dim) * 0.6 / np.sqrt(dim)
        for s in range(seeds):
            ids.append(f"{d}.seed{s}")
            table.append(
                {
                    "model_id": ids[-1],
                    "kind": "finetuned",
                    "dataset": d,
                    "task": f"t{i // 2}",
                    "seed": s,
                }
            )
            rows.append(shared + rng.normal(size=dim) / np.sqrt(dim))
    for k in range(4):  # fused starts: averages of many models, near the middle of them all
        ids.append(f"fused.d{k}.all")
        table.append(
            {"model_id": ids[-1], "kind": "fused", "dataset": None, "task": None, "seed": None}
        )
        rows.append(np.mean(rows[1 + 3 * (k + 1) :], axis=0))
    X = np.array(rows)
    D = pd.DataFrame(cdist(X, X), index=ids, columns=ids)
    within = D.loc["d0.seed0", "d0.seed1"]
    # the hub: nearer to each model than its own seeds are
    assert within > D.loc["pretrained", "d0.seed0"]
    assert (
        clusters.nn1_accuracy(
            D.iloc[1:19, 1:19].to_numpy(), pd.Series([t["dataset"] for t in table[1:19]])
        )
        == 1
    )
    t, p = projection.projections(D, table, {"tsne": {"perplexity": 3}, "seed": 0})  # the default's
    assert set(t["kind"]) == {"finetuned"} and len(p) == len(ids)
    assert t["nn1_dataset_plane"].iloc[0] == 1.0
    assert projection.nearest_neighbour_agreement(t) == 1.0
