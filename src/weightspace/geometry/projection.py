"""Two-dimensional maps of the models from their distance matrix: t-SNE and PCA.

PCA needs no weight vectors: classical multidimensional scaling of a Euclidean distance
matrix (eigenvectors of -½ J D² J, J the centring matrix) gives exactly the principal
component scores of the flattened weights. For cosine distances (1 - cos = ½||â - b̂||²) it
is the PCA of the unit-normalised weights.

t-SNE runs on the precomputed matrix of *squared* distances: scikit-learn applies its
Gaussian kernel to the values it is given, and t-SNE of vectors uses squared Euclidean
distances. It starts from the (scaled) PCA coordinates, which makes it deterministic and
stable for a given seed. Its perplexity must stay below the number of models; by default it
is min(30, max(2, (n - 1) / 3)). t-SNE maps the fine-tuned models; PCA all of them.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from weightspace import WeightspaceError, study
from weightspace.atomic import write_csv

log = logging.getLogger(__name__)


def perplexity_for(
    n: int, setting: float | None = None, low: float = 2.0, high: float = 30.0
) -> float:
    """The t-SNE perplexity for n models: the configured one, or min(high, max(low, (n-1)/3));
    always < n."""
    value = float(setting) if setting is not None else min(high, max(low, (n - 1) / 3))
    if value >= n - 1:
        capped = max(1.0, n - 1.5)
        if setting is not None:
            log.warning(
                "geometry.tsne.perplexity %s is not below the number of models (%d): using %s",
                setting,
                n,
                capped,
            )
        value = capped
    return value


def pca_from_distances(D: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal component scores (n × components) and explained-variance ratios, by classical
    MDS."""
    D = np.asarray(D, dtype=float)
    n = len(D)
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D**2) @ J
    eigval, eigvec = np.linalg.eigh((B + B.T) / 2)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
    scores = eigvec[:, :components] * np.sqrt(eigval[:components])
    total = eigval.sum()
    ratios = eigval[:components] / total if total > 0 else np.zeros(components)
    if scores.shape[1] < components:  # fewer models than components
        scores = np.pad(scores, ((0, 0), (0, components - scores.shape[1])))
        ratios = np.pad(ratios, (0, components - len(ratios)))
    # a deterministic sign: the largest-magnitude score of each component is positive
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(components)])
    return scores * np.where(signs == 0, 1.0, signs), ratios


def tsne(D: np.ndarray, perplexity: float, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """t-SNE coordinates (n × 2) from a distance matrix."""
    from sklearn.manifold import TSNE

    D = np.asarray(D, dtype=float)
    n = len(D)
    init, _ = pca_from_distances(D, 2)
    if n < 3:  # t-SNE needs a neighbourhood; with two models the PCA line says all there is
        return init
    spread = init[:, 0].std()
    init = (
        init / spread * 1e-4
        if spread > 0
        else np.random.default_rng(seed).normal(scale=1e-4, size=(n, 2))
    )
    model = TSNE(
        n_components=2,
        metric="precomputed",
        perplexity=perplexity,
        init=init.astype(np.float32),
        random_state=seed,
        max_iter=max_iter,
        n_jobs=1,
    )
    return model.fit_transform(D**2)


def finite_models(D: pd.DataFrame) -> pd.DataFrame:
    """Drop models with undefined distances (the zero task vector under cosine)."""
    keep = np.all(np.isfinite(D.to_numpy(dtype=float)), axis=1)
    dropped = list(D.index[~keep])
    if dropped:
        log.info("left out of the projection (undefined distances): %s", dropped)
    return D.loc[keep, keep]


def projections(D: pd.DataFrame, table, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(t-SNE frame, PCA frame), each with the model table's columns and the coordinates."""
    from weightspace.geometry.clusters import table_frame

    D = finite_models(D)
    if len(D) == 0:
        raise WeightspaceError("no model has finite distances to project")
    tab = table_frame(table, list(D.index)).reset_index()
    # t-SNE maps the fine-tuned models only: the pretrained and fused models sit near every model at
    # once and would be every point's nearest neighbour, which erases the neighbourhoods t-SNE is
    # there to show (with them, 1-NN by dataset in the plane fell from 1.00 to 0.28 on the default).
    # PCA, linear, places them all.
    finetuned = tab["kind"].isin(study.LABELLED_KINDS).to_numpy()  # brought ones, labelled or not
    keep = finetuned if finetuned.sum() >= 3 else np.ones(len(tab), dtype=bool)
    sub, n = D.to_numpy()[np.ix_(keep, keep)], int(keep.sum())
    seed = int(settings.get("seed", 0))
    tsne_settings = settings.get("tsne") or {}
    perplexity = perplexity_for(n, tsne_settings.get("perplexity"))
    coords = tsne(sub, perplexity, seed, int(tsne_settings.get("max_iter", 1000)))
    scores, ratios = pca_from_distances(D.to_numpy(), 2)
    primary = settings.get("primary") or {"metric": "euclidean", "space": "raw"}
    common = {"metric": primary["metric"], "space": primary["space"]}
    t = (
        tab[keep]
        .reset_index(drop=True)
        .assign(
            x=coords[:, 0], y=coords[:, 1], perplexity=perplexity if n >= 3 else np.nan, **common
        )
    )
    t["nn1_dataset_plane"] = nearest_neighbour_agreement(t)
    p = tab.assign(
        pc1=scores[:, 0],
        pc2=scores[:, 1],
        explained_pc1=ratios[0],
        explained_pc2=ratios[1],
        **common,
    )
    log.info(
        "t-SNE of %d models, perplexity %.3g, 1-NN by dataset in the plane %.3f; PCA explains "
        "%.1f%% + %.1f%%",
        n,
        perplexity,
        t["nn1_dataset_plane"].iloc[0],
        100 * ratios[0],
        100 * ratios[1],
    )
    return t, p


def nearest_neighbour_agreement(
    frame: pd.DataFrame, x: str = "x", y: str = "y", label: str = "dataset"
) -> float:
    """Share of the fine-tuned models whose nearest other point in the plane has their label: what
    the figure shows, to set next to the same figure in weight space (clusters.py's nn1_dataset)."""
    from scipy.spatial.distance import cdist

    from weightspace.geometry.clusters import nn1_accuracy

    ft = frame[study.labelled(frame)]
    if len(ft) < 2:
        return float("nan")
    xy = ft[[x, y]].to_numpy(dtype=float)
    return nn1_accuracy(cdist(xy, xy), ft[label])


def run(
    distances_path,
    table,
    tsne_path,
    pca_path,
    tsne_figure,
    heatmap_figure,
    settings: dict,
    threads: int = 1,
) -> None:
    """The projection rule: t-SNE and PCA coordinates, the projection figure and the distance
    heatmap."""
    from threadpoolctl import threadpool_limits

    from weightspace.geometry.distances import square
    from weightspace.report import geometry_figures

    primary = settings.get("primary") or {"metric": "euclidean", "space": "raw"}
    frame = pd.read_parquet(distances_path)
    D = square(frame, primary["metric"], primary["space"])
    with threadpool_limits(limits=threads):
        t, p = projections(D, table, settings)
    write_csv(tsne_path, t)
    write_csv(pca_path, p)
    geometry_figures.projection_figure(t, p, tsne_figure)
    geometry_figures.distance_heatmap(finite_models(D), table, heatmap_figure, primary)
