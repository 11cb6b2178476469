"""Where to start: rank candidate starting points for a target by a linear probe's loss on it, then
fine-tune from the top ones (Choshen et al. 2023, model recycling).

Every candidate (a model fine-tuned here, a user's own checkpoint, a fused or merged start, or the
pretrained model itself) is ranked by its probe loss on the target: rank 1 is the start a user
would pick. Fine-tuning from it is compared with fine-tuning from the pretrained start, paired by
seed (the same seed draws the same few-shot subset and head). Where every ranked candidate was
fine-tuned as well (the evaluation design), the ranking itself is judged as the paper does: the
regret of taking the top 1 or top k against the best start of all, the share of candidates that
beat the pretrained start, and the rank correlation between probe loss and fine-tuned accuracy.
Where only the top k were fine-tuned (the use design) those columns are NaN: they need the
accuracy of every candidate.

The unit of the pooled figures is the target (its seeds averaged first).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy import stats

from weightspace import WeightspaceError, study

KINDS = ("pretrained", "finetuned", "brought", "fused", "merged")
CITATION = (
    "Choshen et al. 2023, 'Where to start? Analyzing the potential value of intermediate "
    "models' (EMNLP)"
)
# the paper's figures (accuracy points where a regret): about 1 in 6 off-the-shelf models beat the
# pretrained start; the probe's rank correlates with the fine-tuning gain at 0.46-0.51; the best of
# the top 3 (top 1) lies 0.34 (2.33) points below the best model of all, on average
PUBLISHED = MappingProxyType(
    {
        "share_beating_pretrained": 1 / 6,
        "spearman_low": 0.46,
        "spearman_high": 0.51,
        "regret_top3": 0.34,
        "regret_top1": 2.33,
    }
)
LEVEL = 0.95

RANKING_COLUMNS = [
    "target",
    "candidate",
    "kind",
    "probe_loss",
    "probe_accuracy",
    "prior_loss",
    "rank",
]
RUN_COLUMNS = ["target", "start", "size", "seed", "accuracy", "loss"]
CANDIDATE_COLUMNS = [
    "target",
    "size",
    "candidate",
    "kind",
    "rank",
    "probe_loss",
    "finetuned",
    "n_seeds",
    "accuracy",
    "gain",
]
EVALUATION_COLUMNS = [
    "best",
    "best_accuracy",
    "regret_top1",
    "regret_topk",
    "share_beating_pretrained",
    "spearman",
    "spearman_low",
    "spearman_high",
]
OUTCOME_COLUMNS = [
    "target",
    "size",
    "top_k",
    "chosen",
    "chosen_kind",
    "pretrained_accuracy",
    "chosen_accuracy",
    "gain",
    "gain_low",
    "gain_high",
    "n_seeds",
    "n_candidates",
    "n_finetuned",
    *EVALUATION_COLUMNS,
]
POOLED_MEASURES = ("gain", "regret_top1", "regret_topk", "share_beating_pretrained", "spearman")
POOLED_COLUMNS = [
    "size",
    "top_k",
    "n_targets",
    "n_evaluated",
    *[c for m in POOLED_MEASURES for c in (m, f"{m}_low", f"{m}_high")],
    *[f"published_{k}" for k in PUBLISHED],
]


# ---------------------------------------------------------------- the ranking


def rank_candidates(
    target: str, candidates: Mapping[str, str], results: Mapping[tuple[str, str], dict]
) -> pd.DataFrame:
    """The candidates (model id -> kind) ranked by their probe loss on ``target``: rank 1 is the
    lowest loss; equal losses are ordered by candidate id, so the ranking never depends on the
    order the candidates came in. ``results``: probe.store.read's (model id, dataset) -> result."""
    if not candidates:
        raise WeightspaceError(f"target '{target}': no candidate starts to rank")
    rows = []
    for candidate, kind in candidates.items():
        if kind not in KINDS:
            raise WeightspaceError(
                f"candidate '{candidate}': kind '{kind}' is not one of {', '.join(KINDS)}"
            )
        if kind == "finetuned" and study.parse(candidate).dataset == target:
            # a model fine-tuned on the target itself is no off-the-shelf start: it has seen the
            # target's training data and would win the ranking by construction
            raise WeightspaceError(
                f"candidate '{candidate}' was fine-tuned on the target '{target}' itself"
            )
        result = results.get((candidate, target))
        if result is None:
            raise WeightspaceError(
                f"no probe result of candidate '{candidate}' on target '{target}'"
            )
        loss = float(result["loss"])
        if not np.isfinite(loss):
            raise WeightspaceError(
                f"the probe loss of candidate '{candidate}' on target '{target}' is {loss}"
            )
        prior = result.get("prior") or result.get("chance") or {}
        rows.append(
            {
                "target": target,
                "candidate": candidate,
                "kind": kind,
                "probe_loss": loss,
                "probe_accuracy": float(result["accuracy"]),
                "prior_loss": float(prior.get("loss", np.nan)),
            }
        )
    frame = pd.DataFrame(rows).sort_values(["probe_loss", "candidate"], kind="stable")
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame.reset_index(drop=True)[RANKING_COLUMNS]


def chosen_starts(ranking: pd.DataFrame, top_k: int) -> list[str]:
    """The starts to fine-tune from for one target: its top ``top_k`` candidates in rank order, then
    the pretrained model (the reference every gain is measured against) unless it is among them."""
    _check_top_k(top_k)
    if ranking.empty:
        raise WeightspaceError("chosen_starts: the ranking holds no candidates")
    top = ranking.sort_values("rank")["candidate"].head(int(top_k)).tolist()
    return list(dict.fromkeys([*top, study.PRETRAINED]))


def _check_top_k(top_k) -> None:
    if int(top_k) != top_k or int(top_k) < 1:
        raise WeightspaceError(f"top_k must be a whole number of at least 1, not {top_k!r}")


# ---------------------------------------------------------------- fine-tune runs


def run_table(metrics: Iterable[tuple[str, str, object, dict]]) -> pd.DataFrame:
    """One row per fine-tune run from (target, start, size, metrics.json content): target, start,
    size, seed, test accuracy and loss."""
    rows = []
    for target, start, size, m in metrics:
        try:
            rows.append(
                {
                    "target": target,
                    "start": start,
                    "size": size,
                    "seed": int(m["seed"]),
                    "accuracy": float(m["test"]["accuracy"]),
                    "loss": float(m["test"]["loss"]),
                }
            )
        except (KeyError, TypeError, ValueError) as err:
            raise WeightspaceError(
                f"metrics of the run from '{start}' on '{target}' (size {size}) lack a seed or "
                f"a test accuracy and loss: {err!r}"
            ) from None
    if not rows:
        raise WeightspaceError("no fine-tune runs: the start outcomes need at least one per start")
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    twice = frame[frame.duplicated(["target", "start", "size", "seed"], keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        raise WeightspaceError(
            f"two runs from '{first['start']}' on '{first['target']}' with size {first['size']} "
            f"and seed {first['seed']}"
        )
    return frame.sort_values(["target", "size", "start", "seed"]).reset_index(drop=True)


def _rankings_frame(rankings) -> pd.DataFrame:
    if not isinstance(rankings, pd.DataFrame):
        frames = list(rankings)
        rankings = pd.concat(frames) if frames else pd.DataFrame(columns=RANKING_COLUMNS)
    frame = rankings
    if frame.empty:
        raise WeightspaceError("no rankings: rank the candidates of at least one target")
    missing = [c for c in RANKING_COLUMNS if c not in frame.columns]
    if missing:
        raise WeightspaceError(f"the rankings lack the columns {missing} (rank_candidates)")
    twice = frame[frame.duplicated(["target", "candidate"])]
    if not twice.empty:
        raise WeightspaceError(
            f"candidate '{twice['candidate'].iloc[0]}' is ranked twice for target "
            f"'{twice['target'].iloc[0]}'"
        )
    return frame.reset_index(drop=True)


def candidate_gains(rankings, runs: pd.DataFrame) -> pd.DataFrame:
    """Per target, training size and ranked candidate: its mean fine-tuned test accuracy over seeds
    and its gain over the pretrained start (accuracy points, paired by seed); NaN where the
    candidate was ranked but not fine-tuned at that size.

    Every start of a (target, size) must have the pretrained start's seeds: a gain is a paired
    difference, and a mean over other seeds would mix in the subset's luck."""
    rows = []
    for target, size, ranking, by_start in _paired_runs(rankings, runs):
        reference = by_start[study.PRETRAINED]
        for item in ranking:
            accuracy = by_start.get(item["candidate"])
            tuned = accuracy is not None
            rows.append(
                {
                    "target": target,
                    "size": size,
                    **{k: item[k] for k in ("candidate", "kind", "rank", "probe_loss")},
                    "finetuned": tuned,
                    "n_seeds": len(reference) if tuned else 0,
                    "accuracy": float(accuracy.mean()) if tuned else np.nan,
                    "gain": 100 * float((accuracy - reference).mean()) if tuned else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def _paired_runs(rankings, runs: pd.DataFrame):
    """(target, size, its ranking as records in rank order, start -> test accuracies in the order
    of the pretrained start's seeds) for every target and size, checked: a pretrained run, no runs
    from unranked starts, the same seeds for every start."""
    rankings = _rankings_frame(rankings)
    if runs is None or runs.empty:
        raise WeightspaceError("no fine-tune runs: the start outcomes need the runs (run_table)")
    unranked = sorted(set(runs["target"]) - set(rankings["target"]))
    if unranked:
        raise WeightspaceError(f"fine-tune runs on targets without a ranking: {unranked}")
    # one pass over the runs into plain dicts: pandas indexing per start costs ~1 ms a call,
    # which the simulated controls (thousands of starts) would pay many times
    found: dict[tuple, dict[str, dict[int, float]]] = {}
    for target, size, start, seed, accuracy in zip(
        runs["target"], runs["size"], runs["start"], runs["seed"], runs["accuracy"]
    ):
        found.setdefault((target, size), {}).setdefault(start, {})[int(seed)] = float(accuracy)
    sizes: dict[str, list] = {}
    for target, size in found:
        sizes.setdefault(target, []).append(size)
    for target, ranking in rankings.groupby("target", sort=True):
        records = ranking.sort_values("rank").to_dict("records")
        if target not in sizes:
            raise WeightspaceError(f"target '{target}' was ranked but has no fine-tune runs")
        for size in sorted(sizes[target], key=_size_order):
            yield target, size, records, _by_start(target, size, records, found[(target, size)])


def _by_start(target, size, records: list[dict], runs: dict) -> dict[str, np.ndarray]:
    where = f"target '{target}', size {size}"
    if study.PRETRAINED not in runs:
        raise WeightspaceError(f"{where}: no fine-tune run from the pretrained start")
    stray = sorted(set(runs) - {r["candidate"] for r in records} - {study.PRETRAINED})
    if stray:
        raise WeightspaceError(f"{where}: runs from starts that were not ranked: {stray}")
    seeds = sorted(runs[study.PRETRAINED])
    for start, by_seed in runs.items():
        if sorted(by_seed) != seeds:
            raise WeightspaceError(
                f"{where}: the runs from '{start}' have seeds {sorted(by_seed)}, the pretrained "
                f"start's {seeds}; gains are paired by seed"
            )
    return {start: np.array([by_seed[s] for s in seeds]) for start, by_seed in runs.items()}


# ---------------------------------------------------------------- per target


def t_interval(differences, level: float = LEVEL) -> tuple[float, float]:
    """The t interval of the mean of paired differences (NaN below two)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def spearman_interval(x, y, bootstrap: int, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho, resampling the (x, y) pairs (the
    candidates). Each replicate is the Pearson correlation of its average ranks, which is what
    scipy.stats.spearmanr computes, for all replicates at once; a replicate whose ranks are all
    tied has no correlation and is dropped."""
    from weightspace.stats import verdicts

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if bootstrap <= 0 or len(x) < 3:
        return float("nan"), float("nan")
    draws = rng.integers(0, len(x), size=(int(bootstrap), len(x)))
    rx = stats.rankdata(x[draws], axis=1)
    ry = stats.rankdata(y[draws], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    return verdicts.interval(rho, LEVEL)


def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator of its own for each (target, size): an interval does not depend on which other
    targets are in the table (crc32: the same numbers in every process)."""
    return np.random.default_rng([int(seed), *(zlib.crc32(str(k).encode()) for k in keys)])


def target_outcomes(
    rankings, runs: pd.DataFrame, top_k: int = 3, bootstrap: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per target and training size: the rank-1 start against the pretrained start, and,
    where every ranked candidate was fine-tuned, how good the ranking was.

    gain: chosen - pretrained test accuracy in points (means over the shared seeds), gain_low /
    gain_high its 95% t interval over the per-seed paired differences (NaN with one seed). Only
    with every candidate fine-tuned (else NaN): best (highest mean accuracy; ties to the better
    rank), regret_top1 / regret_topk (points the top 1 / the best of the top k lie below the best),
    share_beating_pretrained (candidates other than the pretrained start whose mean accuracy is
    above its), spearman (-probe loss against mean accuracy over the ranked candidates, the
    pretrained model included where it was ranked) with a percentile bootstrap interval over
    candidates (``bootstrap`` resamples, seeded per target and size by ``seed``).
    """
    _check_top_k(top_k)
    rows = []
    for target, size, ranking, by_start in _paired_runs(rankings, runs):
        row = _outcome_row(target, size, ranking, by_start, int(top_k))
        accuracy = [by_start.get(item["candidate"]) for item in ranking]
        if all(a is not None for a in accuracy):
            means = np.array([a.mean() for a in accuracy])
            row.update(
                _evaluation(
                    ranking,
                    means,
                    row["pretrained_accuracy"],
                    int(top_k),
                    bootstrap,
                    _rng(seed, target, size),
                )
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def _outcome_row(target, size, ranking: list[dict], by_start: dict, top_k: int) -> dict:
    """The rank-1 start against the pretrained start at one target and size."""
    chosen = ranking[0]
    if chosen["candidate"] not in by_start:
        raise WeightspaceError(
            f"target '{target}', size {size}: the top-ranked start '{chosen['candidate']}' has no "
            "fine-tune runs"
        )
    pre, top = by_start[study.PRETRAINED], by_start[chosen["candidate"]]
    differences = 100 * (top - pre)
    low, high = t_interval(differences)
    return {
        "target": target,
        "size": size,
        "top_k": top_k,
        "chosen": chosen["candidate"],
        "chosen_kind": chosen["kind"],
        "pretrained_accuracy": float(pre.mean()),
        "chosen_accuracy": float(top.mean()),
        "gain": float(differences.mean()),
        "gain_low": low,
        "gain_high": high,
        "n_seeds": len(pre),
        "n_candidates": len(ranking),
        "n_finetuned": sum(item["candidate"] in by_start for item in ranking),
        **dict.fromkeys(EVALUATION_COLUMNS, np.nan),
    }


def _evaluation(
    ranking: list[dict], accuracy: np.ndarray, pretrained: float, top_k: int, bootstrap, rng
) -> dict:
    """The evaluation columns of one target and size, every ranked candidate fine-tuned
    (``accuracy``: their mean accuracies in rank order)."""
    best = int(np.argmax(accuracy))  # the first maximum: ties go to the better rank
    others = [a for item, a in zip(ranking, accuracy) if item["candidate"] != study.PRETRAINED]
    x = -np.array([item["probe_loss"] for item in ranking])
    rho, low, high = np.nan, np.nan, np.nan
    # no rank correlation below 3 candidates, or where either side is all ties
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(accuracy) > 0:
        rho = float(stats.spearmanr(x, accuracy).statistic)
        low, high = spearman_interval(x, accuracy, bootstrap, rng)
    return {
        "best": ranking[best]["candidate"],
        "best_accuracy": float(accuracy[best]),
        "regret_top1": 100 * float(accuracy[best] - accuracy[0]),
        "regret_topk": 100 * float(accuracy[best] - accuracy[:top_k].max()),
        "share_beating_pretrained": float(np.mean(np.array(others) > pretrained))
        if others
        else np.nan,
        "spearman": rho,
        "spearman_low": low,
        "spearman_high": high,
    }


# ---------------------------------------------------------------- pooled over targets


def _size_order(size) -> tuple:
    """'all' (the whole training split) first, then the few-shot sizes in ascending order."""
    text = str(size)
    if text == "all":
        return (0, 0, "")
    return (1, int(text), "") if text.isdigit() else (2, 0, text)


def pooled_outcomes(
    target_table: pd.DataFrame, bootstrap: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per training size: the mean over targets of each measure with its percentile
    bootstrap interval over targets (the unit; NaN below two targets with a value), the number of
    targets, the number with the evaluation columns, and the paper's figures beside them
    (published_*; its regret is of the top 3)."""
    from weightspace.stats import verdicts

    if target_table is None or target_table.empty:
        raise WeightspaceError("no target outcomes to pool (target_outcomes gave no rows)")
    rows = []
    for size in sorted(target_table["size"].unique(), key=_size_order):
        group = target_table[target_table["size"] == size]
        row = {
            "size": size,
            "top_k": int(group["top_k"].iloc[0]) if "top_k" in group else np.nan,
            "n_targets": int(group["target"].nunique()),
            "n_evaluated": int(group["spearman"].notna().sum()),
        }
        rng = _rng(seed, size)
        for measure in POOLED_MEASURES:
            values = group[measure].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[measure] = float(values.mean()) if len(values) else np.nan
            low = high = np.nan
            if len(values) >= 2 and bootstrap > 0:
                draws = rng.integers(0, len(values), size=(int(bootstrap), len(values)))
                low, high = verdicts.interval(values[draws].mean(axis=1), LEVEL)
            row[f"{measure}_low"], row[f"{measure}_high"] = low, high
        row.update({f"published_{k}": v for k, v in PUBLISHED.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=POOLED_COLUMNS)
