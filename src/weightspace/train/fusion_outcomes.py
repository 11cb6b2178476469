"""Fusion outcomes: how fine-tuning from a fused start compares with the pretrained start.

Runs are paired by (target, mode, size, seed); the unit of the claims is the target (see claims).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from weightspace import study
from weightspace.plan.fusion import FAMILY, headline_keys


def summary_table(rows: list[dict]) -> pd.DataFrame:
    """One row per run: target, base, scope, mode, size, seed, accuracy, loss."""
    frame = pd.DataFrame(rows)
    columns = [
        "target",
        "base",
        "scope",
        "mode",
        "size",
        "seed",
        "accuracy",
        "loss",
        "validation_accuracy",
    ]
    return (
        frame[columns]
        .sort_values(["target", "mode", "size", "base", "seed"])
        .reset_index(drop=True)
    )


def paired_gains(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per fused run with its pretrained twin (same target, mode, size, seed):
    the accuracy gain."""
    keys = ["target", "mode", "size", "seed"]
    pretrained = summary[summary["base"] == study.PRETRAINED].set_index(keys)[["accuracy", "loss"]]
    fused = summary[summary["base"] != study.PRETRAINED]
    paired = (
        fused.set_index(keys)[["scope", "base", "accuracy", "loss"]]
        .merge(pretrained, left_index=True, right_index=True, suffixes=("", "_pretrained"))
        .reset_index()
    )
    paired["gain"] = paired["accuracy"] - paired["accuracy_pretrained"]
    return paired


def outcome(gain: float) -> str:
    """A tie is not a win."""
    return "win" if gain > 0 else "loss" if gain < 0 else "tie"


def wins_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per target, scope, mode and size: mean gain in test accuracy of the fused start over the
    pretrained one.

    Seeds are paired (same seed, same few-shot subset, same budget) before averaging. 'outcome' is
    win / tie / loss by the sign of the mean gain: a tie is not a win.
    """
    columns = [
        "scope",
        "target",
        "mode",
        "size",
        "seeds",
        "fused_accuracy",
        "pretrained_accuracy",
        "gain",
        "gain_std",
        "loss_change",
        "outcome",
    ]
    paired = paired_gains(summary)
    rows = []
    for (scope, target, mode, size), group in paired.groupby(
        ["scope", "target", "mode", "size"], sort=True
    ):
        gain = group["gain"]
        rows.append(
            {
                "scope": scope,
                "target": target,
                "mode": mode,
                "size": size,
                "seeds": len(group),
                "fused_accuracy": group["accuracy"].mean(),
                "pretrained_accuracy": group["accuracy_pretrained"].mean(),
                "gain": gain.mean(),
                "gain_std": gain.std(ddof=1) if len(gain) > 1 else np.nan,
                "loss_change": (group["loss"] - group["loss_pretrained"]).mean(),
                "outcome": outcome(gain.mean()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def wins_overview(wins: pd.DataFrame) -> pd.DataFrame:
    """Per scope, mode and size: targets won, tied and lost by the fused start,
    and the mean gain."""
    columns = ["scope", "mode", "size", "targets", "wins", "ties", "losses", "mean_gain"]
    if wins.empty:
        return pd.DataFrame(columns=columns)
    return (
        wins.assign(
            wins=wins["outcome"] == "win",
            ties=wins["outcome"] == "tie",
            losses=wins["outcome"] == "loss",
        )
        .groupby(["scope", "mode", "size"], sort=True)
        .agg(
            targets=("target", "nunique"),
            wins=("wins", "sum"),
            ties=("ties", "sum"),
            losses=("losses", "sum"),
            mean_gain=("gain", "mean"),
        )
        .reset_index()
        .reindex(columns=columns)
    )


PAPER_FUSION = (
    "fused start better on 11 of 12 targets, +3.06 accuracy points on average "
    "(Gueta et al. 2023, Table 2)"
)
INTERVAL = "bootstrap 95%: targets, then seeds within targets"
NULL = "signs of the target means flipped (a target's seeds share its start, data and test set)"


def target_gains(group: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each target's paired seed gains (percentage points)."""
    return {t: 100 * g["gain"].to_numpy(dtype=float) for t, g in group.groupby("target", sort=True)}


def target_test(by_target: dict[str, np.ndarray], n_boot: int, seed: int):
    """Mean over targets of the targets' mean gains; its nested bootstrap interval (targets, then
    seeds); the sign-flip p-values over targets."""
    from weightspace.stats import inference, verdicts

    means = np.array([g.mean() for g in by_target.values()])
    effect = float(means.mean()) if len(means) else float("nan")
    flips = inference.SignFlips(len(means), seed=seed)
    p_up, p_down = inference.p_values(effect, flips.null_means(means))
    rng = np.random.default_rng(seed)
    gains = list(by_target.values())
    replicates = np.empty(int(n_boot))
    for r in range(int(n_boot)):
        drawn = rng.integers(0, len(gains), size=len(gains))
        replicates[r] = np.mean(
            [gains[t][rng.integers(0, len(gains[t]), size=len(gains[t]))].mean() for t in drawn]
        )
    low, high = verdicts.interval(replicates)
    return effect, low, high, p_up, p_down


def claims(summary: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per scope, mode and training size: the fused start's accuracy gain over the pretrained start.
    The unit is the target (its seeds averaged): an interval over targets then seeds, a sign-flip
    test over targets, wins, ties and losses counted by target as the paper does (runs reported
    apart). Headline rows: headline_keys."""
    from weightspace.stats import verdicts

    paired = paired_gains(summary)
    groups = list(paired.groupby(["scope", "mode", "size"], sort=True))
    headline = headline_keys([key for key, _ in groups])
    rows = [
        _claim_row(scope, mode, size, group, (scope, mode, size) in headline, n_boot, seed)
        for (scope, mode, size), group in groups
    ]
    columns = [*verdicts.CLAIM_COLUMNS, "scope", "mode", "size"]
    out = pd.DataFrame(rows).reindex(columns=columns)
    out["n"] = out["n"].astype("Int64")
    out = verdicts.decide(out)
    # headline rows first; full-data runs before the few-shot sizes
    order = out["size"].map(
        lambda v: (0, 0) if v == "all" else (1, int(v)) if str(v).isdigit() else (2, 0)
    )
    keys = [(not bool(out["headline"].iloc[i]), order.iloc[i]) for i in range(len(out))]
    return out.iloc[sorted(range(len(out)), key=lambda i: keys[i])].reset_index(drop=True)


def _claim_row(
    scope, mode, size, group: pd.DataFrame, is_headline: bool, n_boot: int, seed: int
) -> dict:
    """The claim row of one scope, mode and size (`claims`); not computable below two targets."""
    from weightspace.stats import inference, verdicts

    what = "the whole training split" if size == "all" else f"{size} training examples (few-shot)"
    claim = (
        f"Fine-tuning from the fused start ({scope} region, {mode}) beats fine-tuning from the "
        f"pretrained start, with {what}"
    )
    by_target = target_gains(group)
    k, runs = len(by_target), len(group)
    means = [g.mean() for g in by_target.values()]
    unit = f"targets ({runs} runs: targets × seeds)"
    note = _outcome_note(means, group["gain"])
    floor, design = inference.sign_flip_design(k, "targets")
    extra = _claim_fields(scope, mode, size, group)
    common = dict(
        family=FAMILY if is_headline else "", headline=is_headline, design=design, p_floor=floor
    )
    if k < 2:
        return {
            **verdicts.not_computable(
                f"fusion_gain_{scope}_{mode}_n{size}",
                claim,
                f"{note}; only {k} target: no interval",
                unit,
                PAPER_FUSION,
                n=k,
                **common,
            ),
            **extra,
            "effect": float(np.mean(means)) if means else float("nan"),
        }
    effect, low, high, p_up, p_down = target_test(by_target, n_boot, seed)
    return verdicts.claim_row(
        f"fusion_gain_{scope}_{mode}_n{size}",
        claim,
        effect,
        low,
        high,
        k,
        unit,
        p_value=p_up,
        p_opposite=p_down,
        paper=PAPER_FUSION,
        note=note,
        **common,
        **extra,
    )


def _outcome_note(means: list, gains: pd.Series) -> str:
    """Wins, ties and losses counted by target (their mean gains) and by run."""
    counts = {o: int(sum(outcome(g) == o for g in means)) for o in ("win", "tie", "loss")}
    run_counts = {o: int(sum(outcome(g) == o for g in gains)) for o in ("win", "tie", "loss")}
    return (
        f"targets: {counts['win']} wins, {counts['tie']} ties, {counts['loss']} losses; runs: "
        f"{run_counts['win']} wins, {run_counts['tie']} ties, {run_counts['loss']} losses"
    )


def _claim_fields(scope, mode, size, group: pd.DataFrame) -> dict:
    """A fusion claim row's own columns: the mean accuracies, what is measured, and the group."""
    return dict(
        value=float(group["accuracy"].mean()),
        reference=float(group["accuracy_pretrained"].mean()),
        statistic=(
            "mean over targets of the paired test-accuracy gain, fused - pretrained start "
            "(percentage points; seeds averaged within a target)"
        ),
        interval=INTERVAL,
        null=NULL,
        scope=scope,
        mode=mode,
        size=size,
    )


MERGE_COLUMNS = [
    "method",
    "scope",
    "mode",
    "size",
    "targets",
    "merged_accuracy",
    "mean_accuracy",
    "gain",
    "ci_low",
    "ci_high",
    "p_merge_better",
    "p_mean_better",
    "targets_won",
    "targets_lost",
]


def merge_comparison(runs: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each merge method against the plain mean of the same members, paired by (target, scope,
    mode, size, seed): the mean over targets of the accuracy gain (points), its interval over
    targets then seeds, and sign-flip p-values over targets in both directions.

    ``runs``: one row per run with target, method ('mean' for the fused base), scope, mode, size,
    seed, accuracy."""
    keys = ["target", "scope", "mode", "size", "seed"]
    mean = runs[runs["method"] == "mean"].set_index(keys)["accuracy"]
    rows = []
    merged = runs[runs["method"] != "mean"]
    for (method, scope, mode, size), group in merged.groupby(
        ["method", "scope", "mode", "size"], sort=True
    ):
        paired = group.set_index(keys)[["accuracy"]].join(mean.rename("mean"), how="inner")
        paired = paired.reset_index().assign(gain=lambda f: f["accuracy"] - f["mean"])
        by_target = target_gains(paired)
        target_means = [g.mean() for g in by_target.values()]
        effect, low, high, p_up, p_down = (
            target_test(by_target, n_boot, seed) if len(by_target) >= 2 else (np.nan,) * 5
        )
        rows.append(
            {
                "method": method,
                "scope": scope,
                "mode": mode,
                "size": size,
                "targets": len(by_target),
                "merged_accuracy": float(paired["accuracy"].mean()),
                "mean_accuracy": float(paired["mean"].mean()),
                "gain": effect if len(by_target) >= 2 else float(np.mean(target_means)),
                "ci_low": low,
                "ci_high": high,
                "p_merge_better": p_up,
                "p_mean_better": p_down,
                "targets_won": int(sum(g > 0 for g in target_means)),
                "targets_lost": int(sum(g < 0 for g in target_means)),
            }
        )
    return pd.DataFrame(rows, columns=MERGE_COLUMNS)
