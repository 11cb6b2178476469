"""Do fine-tuned models cluster by dataset and task in weight space? Statistics and the paper's
claims.

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
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from weightspace import WeightspaceError, study
from weightspace.atomic import write_csv
from weightspace.stats import inference, verdicts

log = logging.getLogger(__name__)

PAIR_KINDS = ("within_dataset", "within_task", "across_tasks", "to_pretrained")
LABELS = ("dataset", "task")
STAT_COLUMNS = [
    "metric",
    "space",
    "group",
    "statistic",
    "subset",
    "method",
    "k",
    "n",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "note",
]


def table_frame(table, model_ids: list[str]) -> pd.DataFrame:
    """The model table (list of rows or frame) indexed by model_id, in the order of
    ``model_ids``."""
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
    """Fine-tuned models: their distances (m×m), dataset and task codes, and distances to
    pretrained."""
    tab = table_frame(table, list(D.index))
    ft = tab.index[study.labelled(tab)].tolist()
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
    """Per pair kind, n_boot means over models resampled with replacement (NaN where a replicate has
    no pair)."""
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
        # a model is not paired with its own copy
        distinct = (idx[:, :, None] != idx[:, None, :]) & upper
        same_d = d_codes[idx][:, :, None] == d_codes[idx][:, None, :]
        same_t = t_codes[idx][:, :, None] == t_codes[idx][:, None, :]
        masks = {
            "within_dataset": distinct & same_d,
            "within_task": distinct & same_t & ~same_d,
            "across_tasks": distinct & ~same_t,
        }
        for kind, mask in masks.items():
            count = mask.sum(axis=(1, 2))
            total = np.where(mask, dist, 0.0).sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[kind][start : start + len(idx)] = np.where(
                    count > 0, total / np.maximum(count, 1), np.nan
                )
        if to_pre is not None:
            out["to_pretrained"][start : start + len(idx)] = to_pre[idx].mean(axis=1)
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
    boots = (
        _bootstrap_means(sub, datasets, tasks, to_pre, n_boot, seed) if len(ft) and n_boot else {}
    )
    rows = []
    for kind in PAIR_KINDS:
        values = pairs[kind]
        row = {"statistic": "distance", "subset": kind, "n": int(len(values))}
        if len(values) == 0 or not np.all(np.isfinite(values)):
            why = {
                "within_dataset": "no dataset has two seeds",
                "within_task": "no task has two datasets",
                "across_tasks": "only one task",
                "to_pretrained": "no pretrained model" if to_pre is None else "no fine-tuned model",
            }[kind]
            why = why if ft else "no fine-tuned model"
            row.update(value=np.nan, note=why if len(values) == 0 else "undefined distances (NaN)")
        else:
            low, high = _ci(boots.get(kind, np.array([])))
            row.update(
                value=float(values.mean()),
                std=float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                ci_low=low,
                ci_high=high,
            )
        rows.append(row)
    return rows


# ---------------------------------------------------------------- recovering the labels


def contingency(labels, clusters) -> np.ndarray:
    """Counts of (label, cluster) pairs."""
    a = np.unique(np.asarray(labels), return_inverse=True)[1]
    b = np.unique(np.asarray(clusters), return_inverse=True)[1]
    table = np.zeros((a.max(initial=-1) + 1, b.max(initial=-1) + 1))
    np.add.at(table, (a, b), 1)
    return table


def purity(labels, clusters) -> float:
    """Share of models whose cluster's majority label is their own label."""
    table = contingency(labels, clusters)
    return float(table.max(axis=0).sum() / table.sum())


def adjusted_rand(labels, clusters) -> float:
    """The adjusted Rand index (Hubert & Arabie 1985), as sklearn.metrics.adjusted_rand_score."""
    table = contingency(labels, clusters)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, rows, cols, total = (
        pairs(table),
        pairs(table.sum(1)),
        pairs(table.sum(0)),
        pairs(np.array([table.sum()])),
    )
    expected = rows * cols / total if total else 0.0
    best = (rows + cols) / 2
    return 1.0 if best == expected else float((index - expected) / (best - expected))


def nn1_accuracy(D: np.ndarray, labels) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy of ``labels`` under distances ``D``."""
    D = np.array(D, dtype=float)
    np.fill_diagonal(D, np.inf)
    labels = np.asarray(labels)
    return float(np.mean(labels[np.argmin(D, axis=1)] == labels))


def affinity(D: np.ndarray) -> np.ndarray:
    """Gaussian similarity exp(-d²/2σ²), σ the median off-diagonal distance (what spectral
    clustering needs)."""
    off = D[~np.eye(len(D), dtype=bool)]
    sigma = float(np.median(off)) if len(off) else 1.0
    sigma = sigma if sigma > 0 else 1.0
    return np.exp(-(D**2) / (2 * sigma**2))


def cluster_labels(D: np.ndarray, k: int, method: str, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering

    if method == "agglomerative":
        return AgglomerativeClustering(
            n_clusters=k, metric="precomputed", linkage="average"
        ).fit_predict(D)
    if method == "spectral":
        with warnings.catch_warnings():
            # "graph is not fully connected" on tiny, well-separated sets
            warnings.simplefilter("ignore")
            return SpectralClustering(
                n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
            ).fit_predict(affinity(D))
    raise ValueError(method)


def label_recovery(D: pd.DataFrame, table, seed: int = 0) -> list[dict]:
    """Silhouette, clustering (spectral, agglomerative; adjusted Rand, purity) and 1-NN accuracy per
    label.

    Long because one loop writes every descriptive row of both labels, each with the reason it
    cannot be computed where that applies, in the table's row order."""
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
            row.update(
                value=np.nan, note="undefined distances (NaN)" if m else "no fine-tuned model"
            )
        elif 2 <= k <= m - 1:
            row["value"] = float(silhouette_score(sub, labels, metric="precomputed"))
        else:
            row.update(
                value=np.nan, note=f"needs 2 <= #{label_name}s <= #models - 1 (has {k} of {m})"
            )
        rows.append(row)
        for method in ("spectral", "agglomerative"):
            if finite and 2 <= k < m:
                clusters = cluster_labels(sub, k, method, seed)
                rows.append(
                    {
                        "statistic": "adjusted_rand",
                        "subset": label_name,
                        "method": method,
                        "k": k,
                        "n": m,
                        "value": float(adjusted_rand_score(labels, clusters)),
                    }
                )
                rows.append(
                    {
                        "statistic": "purity",
                        "subset": label_name,
                        "method": method,
                        "k": k,
                        "n": m,
                        "value": purity(labels, clusters),
                    }
                )
            else:
                why = (
                    "undefined distances (NaN)"
                    if not finite
                    else f"needs 2 <= k < #models (k={k}, {m} models)"
                )
                for statistic in ("adjusted_rand", "purity"):
                    rows.append(
                        {
                            "statistic": statistic,
                            "subset": label_name,
                            "method": method,
                            "k": k,
                            "n": m,
                            "value": np.nan,
                            "note": why,
                        }
                    )
        row = {"statistic": "nn1_accuracy", "subset": label_name, "k": k, "n": m}
        if finite and largest >= 2:
            row["value"] = nn1_accuracy(sub, labels)
        else:
            row.update(
                value=np.nan,
                note="undefined distances (NaN)"
                if not finite
                else f"every {label_name} has a single model: no neighbour can share it",
            )
        rows.append(row)
    return rows


def cluster_stats(frame: pd.DataFrame, table, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every statistic for every metric, space and group of the long distance table."""
    from weightspace.geometry.distances import square

    rows = []
    keys = frame[["metric", "space", "group"]].drop_duplicates().itertuples(index=False)
    for metric, space, group in keys:
        D = square(frame, metric, space, group)
        for row in distance_summary(D, table, n_boot, seed) + label_recovery(D, table, seed):
            rows.append({"metric": metric, "space": space, "group": group, **row})
    out = pd.DataFrame(rows).reindex(columns=STAT_COLUMNS)
    return out.astype({"k": "Int64", "n": "Int64"})


# --------------------------------------------------- the paper's claims, at the unit of replication
#
# Labels are assigned at two levels: a model is fine-tuned on a dataset, a dataset belongs to a
# task. Each claim is tested where its label was assigned (inference.Relabelings, exact where the
# reassignments are few):
#   dataset claims: models trade datasets within their task (a task structure alone cannot make
#                   them hold);
#   task claims:    datasets trade tasks (a dataset's models stay together).
# Intervals come from a nested bootstrap: tasks, then datasets within each drawn task, then models
# within each drawn dataset; a model is never paired with (or its own neighbour by) its own copy.
# Statistics whose chance level is only known through the null (1-NN accuracy, purity, adjusted
# Rand) are reported as observed minus the null's mean, with the bootstrap interval of the observed
# value shifted by that mean.
# Headline claims (verdicts.decide): same-dataset closeness and 1-NN by dataset (family "dataset
# geometry"), same-task closeness and 1-NN by task (family "task geometry"), on the primary metric
# and space; every other row is a description.

PAPER_CLUSTERS = (
    "t-SNE of the weights: models of one dataset form tight clusters, models of one task looser "
    "ones (Gueta et al. 2023, Fig. 1; qualitative)"
)
PAPER_PURITY = "~98% of models cluster by dataset (Gueta et al. 2023)"
PAPER_TASK = (
    "same-task models cluster, more loosely than same-dataset ones (Gueta et al. 2023, Fig. 1)"
)
DATASET_FAMILY, TASK_FAMILY = "dataset geometry", "task geometry"
HEADLINE = {
    "dataset_closer_than_task": DATASET_FAMILY,
    "nn1_dataset": DATASET_FAMILY,
    "task_closer_than_across": TASK_FAMILY,
    "nn1_task": TASK_FAMILY,
}
CLAIMS = {
    "dataset_closer_than_task": "Models fine-tuned on the same dataset are closer to each other "
    "than models of different datasets of the same task",
    "task_closer_than_across": "Models of the same task (different datasets) are closer to each "
    "other than models of different tasks",
    "nn1_dataset": "A model's nearest neighbour is a model of its own dataset (1-NN accuracy by "
    "dataset above chance)",
    "purity_dataset": "Clustering the models (average linkage, k = #datasets) recovers the "
    "datasets: purity above chance",
    "ari_dataset": "Clustering the models (average linkage, k = #datasets) recovers the datasets: "
    "adjusted Rand index above chance",
    "nn1_task": "The nearest model of another dataset is of the same task (1-NN accuracy by task "
    "above chance)",
    "purity_task": "Clustering the models (average linkage, k = #tasks) recovers the tasks: purity "
    "above chance",
    "ari_task": "Clustering the models (average linkage, k = #tasks) recovers the tasks: adjusted "
    "Rand index above chance",
    "task_vectors_align_by_dataset": "Task vectors (weights - pretrained) of the same dataset "
    "point in more similar directions than those of different datasets (cosine)",
    "task_vectors_align_by_task": "Task vectors of the same task (different datasets) point in "
    "more similar directions than those of different tasks (cosine)",
}
CLAIM_COLUMNS = ["metric", "space", "group", "primary", *verdicts.CLAIM_COLUMNS]
NULL_DATASETS_WITHIN_TASKS = "models reassigned to datasets within their task"
NULL_TASKS = "datasets reassigned to tasks"
INTERVAL = "bootstrap 95%: tasks, then datasets within tasks, then models within datasets"
BATCH_CELLS = 4_000_000  # relabelings × m × m booleans per chunk


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1]


class NestedBootstrap:
    """Model indices of nested bootstrap replicates: tasks with replacement, then the datasets of
    each drawn task, then the models of each drawn dataset (the structure is read once; a draw is a
    few integer arrays)."""

    def __init__(self, datasets, tasks):
        datasets, tasks = np.asarray(datasets), np.asarray(tasks)
        self.tasks = [
            [np.flatnonzero(datasets == name) for name in np.unique(datasets[tasks == task])]
            for task in np.unique(tasks)
        ]

    def draw(self, rng) -> np.ndarray:
        out = []
        for t in rng.integers(0, len(self.tasks), size=len(self.tasks)):
            members = self.tasks[t]
            for d in rng.integers(0, len(members), size=len(members)):
                models = members[d]
                out.append(models[rng.integers(0, len(models), size=len(models))])
        return np.concatenate(out) if out else np.array([], dtype=int)


def pair_means(M: np.ndarray, datasets, tasks, idx: np.ndarray | None = None) -> dict[str, float]:
    """Mean of M over pairs of distinct models of each kind: within_dataset, within_task,
    across_tasks and other_dataset (any two datasets)."""
    idx = np.arange(len(datasets)) if idx is None else idx
    means = pair_means_batch(
        M[np.ix_(idx, idx)],
        np.asarray(datasets)[idx][None],
        np.asarray(tasks)[idx][None],
        distinct=idx[:, None] != idx[None, :],
    )
    return {k: float(v[0]) for k, v in means.items()}


def pair_means_batch(
    M: np.ndarray, datasets: np.ndarray, tasks: np.ndarray, distinct: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """pair_means for a batch of labellings: datasets and tasks of shape (R, m); each kind's means,
    shape (R,)."""
    datasets, tasks = np.asarray(datasets), np.asarray(tasks)
    R, m = datasets.shape
    distinct = ~np.eye(m, dtype=bool) if distinct is None else distinct
    out = {
        k: np.empty(R) for k in ("within_dataset", "within_task", "across_tasks", "other_dataset")
    }
    chunk = max(1, BATCH_CELLS // max(1, m * m))
    for start in range(0, R, chunk):
        d, t = datasets[start : start + chunk], tasks[start : start + chunk]
        same_d, same_t = d[:, :, None] == d[:, None, :], t[:, :, None] == t[:, None, :]
        masks = {
            "within_dataset": distinct & same_d,
            "within_task": distinct & same_t & ~same_d,
            "across_tasks": distinct & ~same_t,
            "other_dataset": distinct & ~same_d,
        }
        for kind, mask in masks.items():
            count = mask.sum(axis=(1, 2))
            total = np.where(mask, M, 0.0).sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[kind][start : start + len(d)] = np.where(
                    count > 0, total / np.maximum(count, 1), np.nan
                )
    return out


def nearest(D: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Each model's nearest other model (``exclude``: pairs that may not be neighbours); -1 where
    none is left."""
    D = np.array(D, dtype=float)
    np.fill_diagonal(D, np.inf)
    if exclude is not None:
        D[exclude] = np.inf
    out = np.argmin(D, axis=1)
    out[~np.isfinite(D).any(axis=1)] = -1
    return out


def nn1_batch(neighbour: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-NN accuracy of each labelling (R, m) given fixed neighbours; models without a neighbour are
    left out."""
    has = neighbour >= 0
    if not has.any():
        return np.full(len(labels), np.nan)
    return (labels[:, has] == labels[:, neighbour[has]]).mean(axis=1)


def nn1_other_dataset(D: np.ndarray, datasets, tasks) -> float:
    """Share of models whose nearest model of *another* dataset has the same task."""
    datasets, tasks = np.asarray(datasets), np.asarray(tasks)
    neighbour = nearest(D, datasets[:, None] == datasets[None, :])
    return float(nn1_batch(neighbour, tasks[None])[0])


@dataclass(frozen=True)
class Level:
    """One level's test: the null's name, the design in words, every reassignment's dataset and task
    labels (each (R, m)) and the smallest p the design can reach."""

    null: str
    design: str
    datasets: np.ndarray
    tasks: np.ndarray
    floor: float

    def null_of(self, statistic) -> np.ndarray:
        """statistic(dataset labels (R, m), task labels (R, m)) under every reassignment."""
        return statistic(self.datasets, self.tasks)


class Design:
    """The reassignments of one study's labels at both levels, built once per claims table."""

    def __init__(self, datasets, tasks, n_perm: int, seed: int):
        self.datasets, self.tasks = np.asarray(datasets), np.asarray(tasks)
        names = np.unique(self.datasets)
        first = np.array([np.flatnonzero(self.datasets == d)[0] for d in names], dtype=int)
        dataset_tasks = self.tasks[first]
        self.by_dataset = inference.Relabelings(_codes(self.datasets), self.tasks, n_perm, seed)
        self.by_task = inference.Relabelings(_codes(dataset_tasks), None, n_perm, seed + 1)
        sizes = sorted(Counter(dataset_tasks.tolist()).values(), reverse=True)
        kind = {True: "exact", False: "Monte Carlo"}
        by_dataset, by_task = self.by_dataset, self.by_task
        self.levels = {
            "dataset": Level(
                NULL_DATASETS_WITHIN_TASKS,
                f"{kind[by_dataset.exact]} test over the {by_dataset.distinct} ways to reassign "
                f"{len(self.datasets)} models to datasets within their tasks",
                by_dataset.labels,
                np.broadcast_to(_codes(self.tasks), by_dataset.labels.shape),
                by_dataset.floor,
            ),
            "task": Level(
                NULL_TASKS,
                f"{kind[by_task.exact]} test over the {by_task.distinct} ways to split "
                f"{len(names)} datasets into tasks of {', '.join(map(str, sizes))} (more datasets "
                "per task lower the floor)",
                # each model takes its dataset's task
                np.broadcast_to(_codes(self.datasets), (len(by_task), len(self.datasets))),
                by_task.labels[:, np.searchsorted(names, self.datasets)],
                by_task.floor,
            ),
        }


def _headline_fields(claim_id: str, level: Level, paper: str, primary: bool) -> dict:
    """The columns a claim takes from its level and whether it is a headline (primary measure
    only)."""
    family = HEADLINE.get(claim_id) if primary else None
    return dict(
        family=family or "",
        headline=family is not None,
        paper=paper,
        p_floor=level.floor,
        design=level.design,
    )


def _boot_replicates(function, datasets, tasks, n_boot: int, seed: int) -> np.ndarray:
    rng, nested = np.random.default_rng(seed), NestedBootstrap(datasets, tasks)
    return np.array([function(nested.draw(rng)) for _ in range(int(n_boot))], dtype=float)


def _difference_claim(
    claim_id,
    M,
    design: Design,
    closer,
    farther,
    sign,
    level,
    n_boot,
    seed,
    unit,
    n,
    paper,
    quantity,
    primary,
) -> dict:
    """effect = sign * (mean over `farther` pairs - mean over `closer` pairs); sign -1 for
    similarities.

    Long because the effect, its test, its bootstrap interval and the ratios in the note must come
    from the same pair means and the same replicates, which its closures share."""
    datasets, tasks, test = design.datasets, design.tasks, design.levels[level]
    means = pair_means(M, datasets, tasks)
    observed = sign * (means[farther] - means[closer])
    common = _headline_fields(claim_id, test, paper, primary)
    if not np.isfinite(observed):
        missing = closer if not np.isfinite(means[closer]) else farther
        return verdicts.not_computable(
            claim_id, CLAIMS[claim_id], f"no {missing} pairs", unit, n=n, **common
        )

    def statistic(d, t):
        batch = pair_means_batch(M, d, t)
        return sign * (batch[farther] - batch[closer])

    p_up, p_down = inference.p_values(observed, test.null_of(statistic))
    replicates = []

    def one(idx):
        m = pair_means(M, datasets, tasks, idx)
        replicates.append(m)
        return sign * (m[farther] - m[closer])

    boots = _boot_replicates(one, datasets, tasks, n_boot, seed)
    low, high = verdicts.interval(boots)
    note = f"mean {quantity}: {closer} {means[closer]:.4g}, {farther} {means[farther]:.4g}"
    # distances: the ratio too, with its interval from the same replicates (and, for the dataset
    # claim, within-dataset over across-task distance: how tight a dataset is against the whole map)
    if sign > 0:
        ratios = [(closer, farther)] + (
            [("within_dataset", "across_tasks")]
            if closer == "within_dataset" and farther != "across_tasks"
            else []
        )
        for a, b in ratios:
            if np.isfinite(means[a]) and means[b] > 0:
                r_low, r_high = verdicts.interval(
                    [m[a] / m[b] if m[b] > 0 else np.nan for m in replicates]
                )
                note += f"; ratio {a} / {b} = {means[a] / means[b]:.4g} [{r_low:.4g}, {r_high:.4g}]"
    nan_share = float(np.mean(~np.isfinite(boots))) if len(boots) else 0.0
    if nan_share > 0.01:
        note += (
            f"; {nan_share:.0%} of bootstrap replicates had no pair of one kind and were dropped"
        )
    return verdicts.claim_row(
        claim_id,
        CLAIMS[claim_id],
        observed,
        low,
        high,
        n,
        unit,
        p_value=p_up,
        p_opposite=p_down,
        value=means[closer],
        reference=means[farther],
        statistic=f"mean {quantity} of {farther} pairs minus {closer} pairs"
        if sign > 0
        else f"mean {quantity} of {closer} pairs minus {farther} pairs",
        interval=INTERVAL,
        null=test.null,
        note=note,
        **common,
    )


def _recovery_claim(
    claim_id,
    observed_fn,
    batch_fn,
    boot_fn,
    design: Design,
    level,
    n_boot,
    seed,
    unit,
    n,
    paper,
    what,
    primary,
) -> dict:
    """A label-recovery statistic against its null at the claim's level: effect = observed - null
    mean."""
    test = design.levels[level]
    common = _headline_fields(claim_id, test, paper, primary)
    observed = observed_fn()
    if not np.isfinite(observed):
        return verdicts.not_computable(
            claim_id, CLAIMS[claim_id], f"{what} is undefined here", unit, n=n, **common
        )
    null = test.null_of(batch_fn)
    chance = float(np.nanmean(null))
    p_up, p_down = inference.p_values(observed, null)
    boots = _boot_replicates(boot_fn, design.datasets, design.tasks, n_boot, seed) - chance
    low, high = verdicts.interval(boots)
    distinct = len(np.unique(np.round(null[np.isfinite(null)], 12)))
    note = f"{what} {observed:.4g}; null mean {chance:.4g}"
    if distinct <= 20:
        note += f" (the null takes only {distinct} distinct values)"
    return verdicts.claim_row(
        claim_id,
        CLAIMS[claim_id],
        observed - chance,
        low,
        high,
        n,
        unit,
        p_value=p_up,
        p_opposite=p_down,
        value=observed,
        reference=chance,
        statistic=f"{what} minus its null mean",
        interval=INTERVAL + ", minus the null mean",
        null=test.null,
        note=note,
        **common,
    )


def _copies(idx: np.ndarray) -> np.ndarray:
    return idx[:, None] == idx[None, :]


def _clustering_batch(clusters: np.ndarray, score, level: str):
    """score(labels, fixed clusters) for each labelling of a batch: dataset labels, or task
    labels."""

    def batch(d, t):
        return np.array(
            [score(row, clusters) for row in (d if level == "dataset" else t)], dtype=float
        )

    return batch


def label_claims(
    D: np.ndarray,
    datasets,
    tasks,
    n_perm: int = 1000,
    seed: int = 0,
    n_boot: int = 1000,
    primary: bool = True,
    design: Design | None = None,
    descriptions: bool = True,
) -> list[dict]:
    """1-NN accuracy, purity and adjusted Rand by dataset (models reassigned within tasks) and by
    task (datasets reassigned to tasks; 1-NN among models of other datasets). ``descriptions``
    False: the 1-NN rows only."""
    datasets, tasks = np.asarray(datasets), np.asarray(tasks)
    m, n_d, n_t = len(datasets), len(set(datasets)), len(set(tasks))
    unit_m, unit_d = f"models ({n_d} datasets)", f"datasets ({n_t} tasks)"
    rows = []
    finite = m > 0 and bool(np.all(np.isfinite(D)))
    has_seeds = m > n_d
    if finite and has_seeds and 2 <= n_d < m:
        design = design or Design(datasets, tasks, n_perm, seed)
        rows += _dataset_label_claims(
            D, datasets, design, n_boot, seed, unit_m, primary, descriptions
        )
    else:
        why = (
            "undefined distances (NaN)"
            if not finite
            else "no dataset has two seeds"
            if not has_seeds
            else f"needs 2 <= #datasets < #models ({n_d} of {m})"
        )
        rows += _not_computable_labels(
            ("nn1_dataset", "purity_dataset", "ari_dataset"), why, unit_m, PAPER_PURITY, m, primary
        )
    several = n_t >= 2 and any(len(set(datasets[tasks == t])) >= 2 for t in set(tasks))
    if finite and several and n_t < m:
        design = design or Design(datasets, tasks, n_perm, seed)
        rows += _task_label_claims(
            D, datasets, tasks, design, n_boot, seed, unit_d, n_d, primary, descriptions
        )
    else:
        why = (
            "undefined distances (NaN)"
            if not finite
            else "needs two tasks and a task with two datasets"
            if not several
            else "too few models"
        )
        rows += _not_computable_labels(
            ("nn1_task", "purity_task", "ari_task"), why, unit_d, PAPER_TASK, n_d, primary
        )
    return rows


def _not_computable_labels(claim_ids, why, unit, paper, n, primary) -> list[dict]:
    """The rows of one level's label claims where the study cannot compute them."""
    return [
        verdicts.not_computable(
            c,
            CLAIMS[c],
            why,
            unit,
            paper,
            n=n,
            family=HEADLINE.get(c, "") if primary else "",
            headline=primary and c in HEADLINE,
        )
        for c in claim_ids
    ]


def _dataset_label_claims(
    D: np.ndarray, datasets, design: Design, n_boot, seed, unit_m, primary, descriptions
) -> list[dict]:
    """1-NN accuracy (and, with ``descriptions``, purity and adjusted Rand) by dataset: models
    reassigned to datasets within their task."""
    m, n_d = len(datasets), len(set(datasets))
    neighbour = nearest(D)
    by_dataset = cluster_labels(D, n_d, "agglomerative", seed) if descriptions else None

    def nn1_boot(idx):
        return float(nn1_batch(nearest(D[np.ix_(idx, idx)], _copies(idx)), datasets[idx][None])[0])

    def clustering_boot(score):
        def boot(idx):
            sub = D[np.ix_(idx, idx)]
            return score(
                datasets[idx],
                cluster_labels(sub, len(set(datasets[idx])), "agglomerative", seed),
            )

        return boot

    rows = [
        _recovery_claim(
            "nn1_dataset",
            lambda: nn1_accuracy(D, datasets),
            lambda d, t: nn1_batch(neighbour, d),
            nn1_boot,
            design,
            "dataset",
            n_boot,
            seed,
            unit_m,
            m,
            PAPER_PURITY,
            "1-NN accuracy by dataset",
            primary,
        )
    ]
    for claim_id, score, what in (
        ("purity_dataset", purity, "purity by dataset"),
        ("ari_dataset", adjusted_rand, "adjusted Rand by dataset"),
    )[: 2 * descriptions]:
        rows.append(
            _recovery_claim(
                claim_id,
                lambda score=score: score(datasets, by_dataset),
                _clustering_batch(by_dataset, score, "dataset"),
                clustering_boot(score),
                design,
                "dataset",
                min(n_boot, 200),
                seed,
                unit_m,
                m,
                PAPER_PURITY,
                what,
                primary,
            )
        )
    return rows


def _task_label_claims(
    D: np.ndarray, datasets, tasks, design: Design, n_boot, seed, unit_d, n_d, primary, descriptions
) -> list[dict]:
    """1-NN accuracy among models of other datasets (and, with ``descriptions``, purity and
    adjusted Rand) by task: datasets reassigned to tasks."""
    other = nearest(D, datasets[:, None] == datasets[None, :])
    by_task = cluster_labels(D, len(set(tasks)), "agglomerative", seed) if descriptions else None

    def nn1_task_boot(idx):
        d = datasets[idx]
        neighbour_ = nearest(D[np.ix_(idx, idx)], d[:, None] == d[None, :])
        return float(nn1_batch(neighbour_, tasks[idx][None])[0])

    def task_clustering_boot(score):
        def boot(idx):
            sub = D[np.ix_(idx, idx)]
            return score(
                tasks[idx], cluster_labels(sub, len(set(tasks[idx])), "agglomerative", seed)
            )

        return boot

    rows = [
        _recovery_claim(
            "nn1_task",
            lambda: nn1_other_dataset(D, datasets, tasks),
            lambda d, t: nn1_batch(other, t),
            nn1_task_boot,
            design,
            "task",
            n_boot,
            seed,
            unit_d,
            n_d,
            PAPER_TASK,
            "1-NN accuracy by task (neighbours of other datasets)",
            primary,
        )
    ]
    for claim_id, score, what in (
        ("purity_task", purity, "purity by task"),
        ("ari_task", adjusted_rand, "adjusted Rand by task"),
    )[: 2 * descriptions]:
        rows.append(
            _recovery_claim(
                claim_id,
                lambda score=score: score(tasks, by_task),
                _clustering_batch(by_task, score, "task"),
                task_clustering_boot(score),
                design,
                "task",
                min(n_boot, 200),
                seed,
                unit_d,
                n_d,
                PAPER_TASK,
                what,
                primary,
            )
        )
    return rows


def distance_claims(
    D: np.ndarray,
    datasets,
    tasks,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
    primary: bool = True,
    design: Design | None = None,
) -> list[dict]:
    # Long only because the formatter puts each of _difference_claim's arguments on a line of its
    # own.
    datasets, tasks = np.asarray(datasets), np.asarray(tasks)
    n_d, n_t = len(set(datasets)), len(set(tasks))
    specs = (
        ("dataset_closer_than_task", "models", len(datasets)),
        ("task_closer_than_across", "datasets", n_d),
    )
    if not len(datasets) or not np.all(np.isfinite(D)):
        why = "undefined distances (NaN)" if len(datasets) else "no fine-tuned model"
        return [
            verdicts.not_computable(
                c,
                CLAIMS[c],
                why,
                u,
                PAPER_CLUSTERS,
                n=n,
                family=HEADLINE[c] if primary else "",
                headline=primary,
            )
            for c, u, n in specs
        ]
    design = design or Design(datasets, tasks, n_perm, seed)
    return [
        _difference_claim(
            "dataset_closer_than_task",
            D,
            design,
            "within_dataset",
            "within_task",
            1,
            "dataset",
            n_boot,
            seed,
            f"models ({n_d} datasets)",
            len(datasets),
            PAPER_CLUSTERS,
            "distance",
            primary,
        ),
        _difference_claim(
            "task_closer_than_across",
            D,
            design,
            "within_task",
            "across_tasks",
            1,
            "task",
            n_boot,
            seed,
            f"datasets ({n_t} tasks)",
            n_d,
            PAPER_CLUSTERS,
            "distance",
            primary,
        ),
    ]


def headline_claims(
    D: np.ndarray,
    datasets,
    tasks,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
    design: Design | None = None,
) -> pd.DataFrame:
    """The four headline geometry claims of one distance matrix, judged (what the calibration tests
    simulate; a design, which depends on the labels only, can be shared by studies of one
    layout)."""
    design = design or Design(datasets, tasks, n_perm, seed)
    rows = distance_claims(D, datasets, tasks, n_boot, n_perm, seed, True, design) + label_claims(
        D, datasets, tasks, n_perm, seed, n_boot, True, design, descriptions=False
    )
    return verdicts.decide(pd.DataFrame(rows).reindex(columns=verdicts.CLAIM_COLUMNS)).set_index(
        "claim_id"
    )


def task_vector_cosines(D: pd.DataFrame, table) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Cosines between the fine-tuned models' task vectors, from Euclidean raw distances and the
    pretrained model (law of cosines: ||a-b||² = ||a-p||² + ||b-p||² - 2 (a-p)·(b-p)); None without
    a pretrained model."""
    ft, sub, datasets, tasks, to_pre = _labelled(D, table)
    if to_pre is None or not len(ft) or np.any(to_pre <= 0):
        return None
    C = (to_pre[:, None] ** 2 + to_pre[None, :] ** 2 - sub**2) / (
        2 * to_pre[:, None] * to_pre[None, :]
    )
    return np.clip(C, -1.0, 1.0), datasets, tasks


def cosine_claims(
    C: np.ndarray | None,
    datasets,
    tasks,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
    design: Design | None = None,
) -> list[dict]:
    """Descriptions: random perturbations of the pretrained weights have task-vector cosines near 0
    whatever their labels, unlike 'closer to the pretrained model than to other tasks'. Not the
    paper's claims: no verdict.

    Long only because the formatter puts each of _difference_claim's arguments on a line of its
    own."""
    paper = (
        "the paper reports distances, not task-vector directions; this replaces 'closer to the "
        "pretrained model than to other tasks', which random perturbations also satisfy"
    )
    if C is None or not np.all(np.isfinite(C)):
        why = "no pretrained model or undefined task vectors"
        return [
            verdicts.not_computable(c, CLAIMS[c], why, "models", paper)
            for c in ("task_vectors_align_by_dataset", "task_vectors_align_by_task")
        ]
    datasets, tasks = np.asarray(datasets), np.asarray(tasks)
    n_d, n_t = len(set(datasets)), len(set(tasks))
    same_labels = (
        design is not None
        and np.array_equal(design.datasets, datasets)
        and np.array_equal(design.tasks, tasks)
    )
    design = design if same_labels else Design(datasets, tasks, n_perm, seed)
    return [
        _difference_claim(
            "task_vectors_align_by_dataset",
            C,
            design,
            "within_dataset",
            "other_dataset",
            -1,
            "dataset",
            n_boot,
            seed,
            f"models ({n_d} datasets)",
            len(datasets),
            paper,
            "cosine",
            False,
        ),
        _difference_claim(
            "task_vectors_align_by_task",
            C,
            design,
            "within_task",
            "across_tasks",
            -1,
            "task",
            n_boot,
            seed,
            f"datasets ({n_t} tasks)",
            n_d,
            paper,
            "cosine",
            False,
        ),
    ]


def claims(
    frame: pd.DataFrame,
    table,
    primary: dict | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    group: str = "all",
    n_perm: int | None = None,
) -> pd.DataFrame:
    """The paper's clustering claims for every metric and space (parameter group ``group``), and the
    task-vector cosine descriptions once; headline rows (the primary measure) judged by
    verdicts.decide."""
    from weightspace.geometry.distances import square

    primary = primary or {"metric": "euclidean", "space": "raw"}
    n_perm = n_boot if n_perm is None else n_perm
    rows = []
    part = frame[frame["group"] == group]
    combos = list(part[["metric", "space"]].drop_duplicates().itertuples(index=False))
    design = None
    for metric, space in combos:
        D = square(frame, metric, space, group)
        _, sub, datasets, tasks, _ = _labelled(D, table)
        is_primary = metric == primary.get("metric") and space == primary.get("space")
        if design is None and len(datasets):
            design = Design(datasets, tasks, n_perm, seed)
        found = distance_claims(
            sub, datasets, tasks, n_boot, n_perm, seed, is_primary, design
        ) + label_claims(sub, datasets, tasks, n_perm, seed, n_boot, is_primary, design)
        rows += [
            {"metric": metric, "space": space, "group": group, "primary": is_primary, **row}
            for row in found
        ]
    cosines = None
    if ("euclidean", "raw") in {tuple(c) for c in combos}:
        cosines = task_vector_cosines(square(frame, "euclidean", "raw", group), table)
    if cosines is None and ("euclidean", "task_vector") in {tuple(c) for c in combos}:
        cosines = task_vector_cosines(square(frame, "euclidean", "task_vector", group), table)
    if combos:
        C, datasets, tasks = cosines if cosines is not None else (None, [], [])
        rows += [
            {"metric": "cosine", "space": "task_vector", "group": group, "primary": True, **row}
            for row in cosine_claims(C, datasets, tasks, n_boot, n_perm, seed, design)
        ]
    out = pd.DataFrame(rows).reindex(columns=CLAIM_COLUMNS)
    out["n"] = out["n"].astype("Int64")
    out = verdicts.decide(out)
    # headline claims first, then the primary measure's descriptions (the paper's: Euclidean on raw
    # weights)
    order = np.lexsort(
        (~out["primary"].astype(bool).to_numpy(), ~out["headline"].astype(bool).to_numpy())
    )
    return out.iloc[order].reset_index(drop=True)


def run(distances_path, table, stats_path, claims_path, settings: dict, threads: int = 1) -> None:
    """The cluster_stats rule: cluster_stats.csv and claims.csv from the long distance table."""
    from threadpoolctl import threadpool_limits

    frame = pd.read_parquet(distances_path)
    n_boot = int(settings.get("bootstrap", 1000))
    n_perm = int(settings.get("permutations", n_boot))
    seed = int(settings.get("seed", 0))
    with threadpool_limits(limits=threads):
        stats = cluster_stats(frame, table, n_boot, seed)
        found = claims(frame, table, settings.get("primary"), n_boot, seed, n_perm=n_perm)
    write_csv(stats_path, stats)
    write_csv(claims_path, found)
    for row in found[found["primary"]].itertuples():
        log.info(
            "claim %s: %s (effect %.4g [%.4g, %.4g], p %.3g)",
            row.claim_id,
            row.verdict,
            row.effect,
            row.ci_low,
            row.ci_high,
            row.p_value,
        )
