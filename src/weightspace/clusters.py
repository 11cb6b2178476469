"""Do fine-tuned models cluster by dataset and task in weight space? Statistics and the paper's claims.

Works on a square distance matrix and the model table (model_id, kind, dataset, task,
seed). Only fine-tuned models carry dataset and task labels; the pretrained model enters
as the reference of 'to_pretrained' distances; fused and mix models are left out.

Pair kinds among fine-tuned models (unordered, distinct models):
  within_dataset   same dataset (different seeds)
  within_task      same task, different datasets
  across_tasks     different tasks
  to_pretrained    a fine-tuned model and the pretrained model
Confidence intervals resample *models* (not pairs) with replacement: pairs that share a
model are not independent, and resampling pairs would make the intervals too narrow.
Anything that cannot be computed (one seed per dataset, one dataset per task, ...) is a
row with value NaN and a note saying why, never an error.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from . import WeightspaceError
from .atomic import write_csv

log = logging.getLogger(__name__)

PAIR_KINDS = ("within_dataset", "within_task", "across_tasks", "to_pretrained")
LABELS = ("dataset", "task")
STAT_COLUMNS = ["metric", "space", "group", "statistic", "subset", "method", "k", "n", "value", "std",
                "ci_low", "ci_high", "note"]
CLAIM_COLUMNS = ["claim", "metric", "space", "group", "primary", "statistic", "value", "reference", "ci_low",
                 "ci_high", "n", "verdict", "note"]


def table_frame(table, model_ids: list[str]) -> pd.DataFrame:
    """The model table (list of rows or frame) indexed by model_id, in the order of ``model_ids``."""
    frame = pd.DataFrame(list(table) if not isinstance(table, pd.DataFrame) else table)
    for column in ("model_id", "kind", "dataset", "task"):
        if column not in frame.columns:
            raise WeightspaceError(f"the model table has no column '{column}'")
    frame = frame.set_index("model_id")
    missing = [m for m in model_ids if m not in frame.index]
    if missing:
        raise WeightspaceError(f"models {missing[:3]} have distances but no row in the model table")
    return frame.loc[model_ids]


# ---------------------------------------------------------------- pair kinds and their distances


def _labelled(D: pd.DataFrame, table: pd.DataFrame):
    """Fine-tuned models: their distances (m×m), dataset and task codes, and distances to pretrained."""
    tab = table_frame(table, list(D.index))
    ft = tab.index[tab["kind"] == "finetuned"].tolist()
    sub = D.loc[ft, ft].to_numpy(dtype=float)
    datasets = tab.loc[ft, "dataset"].astype(str).to_numpy()
    tasks = tab.loc[ft, "task"].astype(str).to_numpy()
    pre = tab.index[tab["kind"] == "pretrained"].tolist()
    to_pre = D.loc[ft, pre[0]].to_numpy(dtype=float) if pre else None
    return ft, sub, datasets, tasks, to_pre


def pair_kind_masks(datasets: np.ndarray, tasks: np.ndarray) -> dict[str, np.ndarray]:
    """m×m boolean masks over the upper triangle (i < j) for the three label-based pair kinds."""
    m = len(datasets)
    upper = np.triu(np.ones((m, m), dtype=bool), k=1)
    same_d = datasets[:, None] == datasets[None, :]
    same_t = tasks[:, None] == tasks[None, :]
    return {
        "within_dataset": upper & same_d,
        "within_task": upper & same_t & ~same_d,
        "across_tasks": upper & ~same_t,
    }


def _bootstrap_means(sub, datasets, tasks, to_pre, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Per pair kind, n_boot means over models resampled with replacement (NaN where a replicate has no pair)."""
    m = len(datasets)
    rng = np.random.default_rng(seed)
    out = {k: np.full(n_boot, np.nan) for k in PAIR_KINDS}
    d_codes = np.unique(datasets, return_inverse=True)[1]
    t_codes = np.unique(tasks, return_inverse=True)[1]
    chunk = max(1, 2_000_000 // max(1, m * m))  # keep the (chunk, m, m) arrays small
    upper = np.triu(np.ones((m, m), dtype=bool), k=1)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, m, size=(min(chunk, n_boot - start), m))
        dist = sub[idx[:, :, None], idx[:, None, :]]
        distinct = (idx[:, :, None] != idx[:, None, :]) & upper  # a model is not paired with its own copy
        same_d = d_codes[idx][:, :, None] == d_codes[idx][:, None, :]
        same_t = t_codes[idx][:, :, None] == t_codes[idx][:, None, :]
        masks = {"within_dataset": distinct & same_d, "within_task": distinct & same_t & ~same_d,
                 "across_tasks": distinct & ~same_t}
        for kind, mask in masks.items():
            count = mask.sum(axis=(1, 2))
            total = np.where(mask, dist, 0.0).sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[kind][start:start + len(idx)] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        if to_pre is not None:
            out["to_pretrained"][start:start + len(idx)] = to_pre[idx].mean(axis=1)
    return out


def _ci(samples: np.ndarray) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if len(s) < 10:
        return float("nan"), float("nan")
    return float(np.quantile(s, 0.025)), float(np.quantile(s, 0.975))


def pair_distances(sub, datasets, tasks, to_pre) -> dict[str, np.ndarray]:
    """The distances of each pair kind (flat arrays)."""
    out = {kind: sub[mask] for kind, mask in pair_kind_masks(datasets, tasks).items()}
    out["to_pretrained"] = np.asarray(to_pre, dtype=float) if to_pre is not None else np.array([])
    return out


def distance_summary(D: pd.DataFrame, table, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Mean, std and bootstrap 95% CI of the distances of each pair kind."""
    ft, sub, datasets, tasks, to_pre = _labelled(D, table)
    pairs = pair_distances(sub, datasets, tasks, to_pre)
    boots = _bootstrap_means(sub, datasets, tasks, to_pre, n_boot, seed) if len(ft) and n_boot else {}
    rows = []
    for kind in PAIR_KINDS:
        values = pairs[kind]
        row = {"statistic": "distance", "subset": kind, "n": int(len(values))}
        if len(values) == 0 or not np.all(np.isfinite(values)):
            why = {"within_dataset": "no dataset has two seeds", "within_task": "no task has two datasets",
                   "across_tasks": "only one task",
                   "to_pretrained": "no pretrained model" if to_pre is None else "no fine-tuned model"}[kind]
            why = why if ft else "no fine-tuned model"
            row.update(value=np.nan, note=why if len(values) == 0 else "undefined distances (NaN)")
        else:
            low, high = _ci(boots.get(kind, np.array([])))
            row.update(value=float(values.mean()), std=float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                       ci_low=low, ci_high=high)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- recovering the labels


def purity(labels, clusters) -> float:
    """Share of models whose cluster's majority label is their own label."""
    frame = pd.DataFrame({"label": np.asarray(labels), "cluster": np.asarray(clusters)})
    return float(frame.groupby("cluster")["label"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame))


def nn1_accuracy(D: np.ndarray, labels) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy of ``labels`` under distances ``D``."""
    D = np.array(D, dtype=float)
    np.fill_diagonal(D, np.inf)
    labels = np.asarray(labels)
    return float(np.mean(labels[np.argmin(D, axis=1)] == labels))


def affinity(D: np.ndarray) -> np.ndarray:
    """Gaussian similarity exp(-d²/2σ²), σ the median off-diagonal distance (what spectral clustering needs)."""
    off = D[~np.eye(len(D), dtype=bool)]
    sigma = float(np.median(off)) if len(off) else 1.0
    sigma = sigma if sigma > 0 else 1.0
    return np.exp(-(D**2) / (2 * sigma**2))


def cluster_labels(D: np.ndarray, k: int, method: str, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering

    if method == "agglomerative":
        return AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(D)
    if method == "spectral":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "graph is not fully connected" on tiny, well-separated sets
            return SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                                      assign_labels="cluster_qr").fit_predict(affinity(D))
    raise ValueError(method)


def label_recovery(D: pd.DataFrame, table, seed: int = 0) -> list[dict]:
    """Silhouette, clustering (spectral, agglomerative; adjusted Rand, purity) and 1-NN accuracy per label."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    ft, sub, datasets, tasks, _ = _labelled(D, table)
    m = len(ft)
    finite = m > 0 and bool(np.all(np.isfinite(sub)))
    rows = []
    for label_name, labels in (("dataset", datasets), ("task", tasks)):
        k = len(set(labels))
        largest = max((np.sum(labels == v) for v in set(labels)), default=0)
        row = {"statistic": "silhouette", "subset": label_name, "k": k, "n": m}
        if not finite:
            row.update(value=np.nan, note="undefined distances (NaN)" if m else "no fine-tuned model")
        elif 2 <= k <= m - 1:
            row["value"] = float(silhouette_score(sub, labels, metric="precomputed"))
        else:
            row.update(value=np.nan, note=f"needs 2 <= #{label_name}s <= #models - 1 (has {k} of {m})")
        rows.append(row)
        for method in ("spectral", "agglomerative"):
            if finite and 2 <= k < m:
                clusters = cluster_labels(sub, k, method, seed)
                rows.append({"statistic": "adjusted_rand", "subset": label_name, "method": method, "k": k, "n": m,
                             "value": float(adjusted_rand_score(labels, clusters))})
                rows.append({"statistic": "purity", "subset": label_name, "method": method, "k": k, "n": m,
                             "value": purity(labels, clusters)})
            else:
                why = "undefined distances (NaN)" if not finite else f"needs 2 <= k < #models (k={k}, {m} models)"
                for statistic in ("adjusted_rand", "purity"):
                    rows.append({"statistic": statistic, "subset": label_name, "method": method, "k": k, "n": m,
                                 "value": np.nan, "note": why})
        row = {"statistic": "nn1_accuracy", "subset": label_name, "k": k, "n": m}
        if finite and largest >= 2:
            row["value"] = nn1_accuracy(sub, labels)
        else:
            row.update(value=np.nan, note="undefined distances (NaN)" if not finite
                       else f"every {label_name} has a single model: no neighbour can share it")
        rows.append(row)
    return rows


def cluster_stats(frame: pd.DataFrame, table, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every statistic for every metric, space and group of the long distance table."""
    from .distances import square

    rows = []
    keys = frame[["metric", "space", "group"]].drop_duplicates().itertuples(index=False)
    for metric, space, group in keys:
        D = square(frame, metric, space, group)
        for row in distance_summary(D, table, n_boot, seed) + label_recovery(D, table, seed):
            rows.append({"metric": metric, "space": space, "group": group, **row})
    out = pd.DataFrame(rows).reindex(columns=STAT_COLUMNS)
    return out.astype({"k": "Int64", "n": "Int64"})


# ---------------------------------------------------------------- the paper's claims


def _not_applicable(row: dict, why: str) -> dict:
    # 'n/a (why)', not a bare 'n/a', which CSV readers (pandas) turn into a missing value
    return {**row, "verdict": f"n/a ({why})", "note": why}


def _compare(claim, closer, farther, sub, datasets, tasks, to_pre, n_boot, seed) -> dict:
    """Claim: pairs of kind ``closer`` are nearer than pairs of kind ``farther`` (means, CI of the difference)."""
    pairs = pair_distances(sub, datasets, tasks, to_pre)
    a, b = pairs[closer], pairs[farther]
    row = {"claim": claim, "statistic": f"mean distance {closer} (value) vs {farther} (reference); "
                                         f"CI: bootstrap 95% of the difference value - reference",
           "n": int(len(a) + len(b))}
    if len(a) == 0 or len(b) == 0:
        missing = closer if len(a) == 0 else farther
        return _not_applicable(row, f"no {missing} pairs")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return _not_applicable(row, "undefined distances (NaN)")
    boots = _bootstrap_means(sub, datasets, tasks, to_pre, n_boot, seed) if n_boot else {}
    low, high = _ci(boots[closer] - boots[farther]) if boots else (np.nan, np.nan)
    share = float(np.mean(a[:, None] < b[None, :]))
    holds = a.mean() < b.mean()
    note = f"{share:.0%} of ({closer}, {farther}) pair comparisons have the {closer} pair closer"
    if holds and np.isfinite(high) and high >= 0:
        note += "; the bootstrap CI of the difference reaches 0"
    return {**row, "value": float(a.mean()), "reference": float(b.mean()), "ci_low": low, "ci_high": high,
            "verdict": "holds" if holds else "does not hold", "note": note}


def _closer_to_pretrained(claim, sub, datasets, tasks, to_pre) -> dict:
    row = {"claim": claim, "statistic": "share of fine-tuned models whose distance to the pretrained model is "
                                        "below their distance to every model of another task (value); "
                                        "mean distance to pretrained (reference)", "n": int(len(tasks))}
    if to_pre is None:
        return _not_applicable(row, "no pretrained model")
    if len(set(tasks)) < 2:
        return _not_applicable(row, "only one task")
    if not (np.all(np.isfinite(to_pre)) and np.all(np.isfinite(sub))):
        return _not_applicable(row, "undefined distances (NaN), e.g. cosine to the zero task vector")
    other = tasks[:, None] != tasks[None, :]
    nearest_other = np.where(other, sub, np.inf).min(axis=1)
    closer = to_pre < nearest_other
    share = float(closer.mean())
    note = f"{int(closer.sum())} of {len(closer)} models"
    if not closer.all():
        note += f"; mean ratio d(pretrained) / d(nearest other-task model) = {float(np.mean(to_pre / nearest_other)):.3g}"
    return {**row, "value": share, "reference": float(to_pre.mean()),
            "verdict": "holds" if closer.all() else "does not hold", "note": note}


CLAIMS = {
    "same_dataset_closer_than_same_task": "Models fine-tuned on the same dataset are closer to each other than "
                                          "models fine-tuned on different datasets of the same task",
    "same_task_closer_than_cross_task": "Models of the same task (different datasets) are closer to each other "
                                        "than models of different tasks",
    "closer_to_pretrained_than_to_other_tasks": "Every fine-tuned model is closer to the pretrained model than to "
                                                "any model of another task",
}


def claims(frame: pd.DataFrame, table, primary: dict | None = None, n_boot: int = 1000, seed: int = 0,
           group: str = "all") -> pd.DataFrame:
    """The paper's claims with this run's numbers and a verdict, for every metric and space (group 'all')."""
    from .distances import square

    primary = primary or {"metric": "euclidean", "space": "raw"}
    rows = []
    part = frame[frame["group"] == group]
    for metric, space in part[["metric", "space"]].drop_duplicates().itertuples(index=False):
        D = square(frame, metric, space, group)
        _, sub, datasets, tasks, to_pre = _labelled(D, table)
        found = [
            _compare(CLAIMS["same_dataset_closer_than_same_task"], "within_dataset", "within_task",
                     sub, datasets, tasks, to_pre, n_boot, seed),
            _compare(CLAIMS["same_task_closer_than_cross_task"], "within_task", "across_tasks",
                     sub, datasets, tasks, to_pre, n_boot, seed),
            _closer_to_pretrained(CLAIMS["closer_to_pretrained_than_to_other_tasks"], sub, datasets, tasks, to_pre),
        ]
        is_primary = metric == primary.get("metric") and space == primary.get("space")
        for row in found:
            rows.append({"metric": metric, "space": space, "group": group, "primary": is_primary, **row})
    out = pd.DataFrame(rows).reindex(columns=CLAIM_COLUMNS)
    # the primary measure (the paper's: Euclidean on flattened raw encoder weights) first
    return out.sort_values("primary", ascending=False, kind="stable").reset_index(drop=True)


def run(distances_path, table, stats_path, claims_path, settings: dict, threads: int = 1) -> None:
    """The cluster_stats rule: cluster_stats.csv and claims.csv from the long distance table."""
    from threadpoolctl import threadpool_limits

    frame = pd.read_parquet(distances_path)
    n_boot = int(settings.get("bootstrap", 1000))
    seed = int(settings.get("seed", 0))
    with threadpool_limits(limits=threads):
        stats = cluster_stats(frame, table, n_boot, seed)
        found = claims(frame, table, settings.get("primary"), n_boot, seed)
    write_csv(stats_path, stats)
    write_csv(claims_path, found)
    for row in found[found["primary"]].itertuples():
        log.info("claim %s: %s (%s)", row.claim, row.verdict, row.note)
