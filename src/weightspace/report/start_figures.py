"""Where to start: the figure of probe loss against fine-tuning gain per target, and the summary
table next to the paper's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.atomic import save_figure
from weightspace.report import palette
from weightspace.train import start_outcomes

# one colour per kind of start (Okabe-Ito, colour-blind safe); the pretrained and fused starts keep
# the colours they have in every figure
KIND_COLORS = {
    "pretrained": palette.PRETRAINED_COLOR,
    "finetuned": "#0072B2",
    "brought": "#E69F00",
    "fused": palette.FUSED_COLOR,
    "merged": "#009E73",
}
UNTUNED_COLOR = "#999999"


def _title(target: str, size, sizes: int, rho: float) -> str:
    where = target if sizes == 1 else f"{target} (n={size})"
    if not np.isfinite(rho):
        return f"{where}: Spearman ρ n/a (not every candidate fine-tuned)"
    return f"{where}: Spearman ρ={rho:.2f}"


def start_figure(rankings, runs: pd.DataFrame, top_k: int, path: str | Path) -> None:
    """One panel per target (per target and size where there are several sizes): each fine-tuned
    candidate's probe loss on the target (x) against its fine-tuned accuracy gain over the
    pretrained start (y, points, mean over seeds), coloured by kind, the top k ringed; candidates
    ranked but not fine-tuned are grey ticks on the x axis, so the whole ranking shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    table = start_outcomes.candidate_gains(rankings, runs)
    outcomes = start_outcomes.target_outcomes(rankings, runs, top_k, bootstrap=0)
    rho = {(r.target, r.size): r.spearman for r in outcomes.itertuples(index=False)}
    panels = list(table.groupby(["target", "size"], sort=True))
    sizes = table.groupby("target")["size"].nunique().to_dict()
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False, layout="constrained"
    )
    for ax, ((target, size), frame) in zip(axes.flat, panels):
        tuned = frame[frame["finetuned"]]
        for kind, group in tuned.groupby("kind", sort=False):
            ax.scatter(
                group["probe_loss"],
                group["gain"],
                s=28,
                color=KIND_COLORS.get(kind, "#CC79A7"),
                zorder=3,
            )
        top = tuned[tuned["rank"] <= top_k]
        ax.scatter(
            top["probe_loss"],
            top["gain"],
            s=130,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            zorder=4,
        )
        untuned = frame[~frame["finetuned"]]
        # x in data units, y in axes units: the ticks sit on the x axis whatever the gains are
        ax.scatter(
            untuned["probe_loss"],
            np.zeros(len(untuned)),
            marker="|",
            s=120,
            color=UNTUNED_COLOR,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=2,
        )
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(_title(target, size, sizes[target], rho[(target, size)]), fontsize=9)
        ax.set_xlabel("probe loss on the target (nats)")
        ax.set_ylabel("gain over the pretrained start (points)")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    kinds = [k for k in start_outcomes.KINDS if k in set(table.loc[table["finetuned"], "kind"])]
    handles = [
        Line2D([], [], marker="o", linestyle="", color=KIND_COLORS[k], label=k) for k in kinds
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor="black",
            markersize=10,
            label=f"top {top_k} by probe loss",
        )
    )
    if (~table["finetuned"]).any():
        handles.append(
            Line2D(
                [],
                [],
                marker="|",
                linestyle="",
                color=UNTUNED_COLOR,
                markersize=10,
                label="ranked, not fine-tuned",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    fig.suptitle("Where to start: probe loss on the target against the fine-tuning gain")
    save_figure(fig, path)
    plt.close(fig)


def _number(value, digits: int = 2, sign: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _cell(row, measure: str, digits: int = 2, sign: bool = False) -> str:
    value = _number(row[measure], digits, sign)
    if value == "—":
        return value
    low, high = row[f"{measure}_low"], row[f"{measure}_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return value
    return f"{value} [{_number(low, digits, sign)}, {_number(high, digits, sign)}]"


def start_table_markdown(pooled: pd.DataFrame, targets: Sequence[str]) -> str:
    """The pooled outcomes (start_outcomes.pooled_outcomes) as a markdown table, one row per
    training size and measure, next to the paper's figures."""
    targets = list(targets)
    published = start_outcomes.PUBLISHED
    if pooled is None or pooled.empty:
        return "_(no target outcomes in this run)_\n"
    lines = [
        f"Over {len(targets)} target{'s' if len(targets) != 1 else ''} "
        f"({', '.join(targets) if targets else 'none'}); means over targets with a 95% bootstrap "
        "interval over targets. Gains and regrets in accuracy points. Published: "
        f"{start_outcomes.CITATION}.",
        "",
        "| size | measure | this study | published |",
        "|---|---|---|---|",
    ]
    # records keep each column's type (iterrows would make the size and counts floats)
    for row in pooled.to_dict("records"):
        k = row["top_k"]
        evaluated = f"{int(row['n_evaluated'])} of {int(row['n_targets'])} targets"
        measures = [
            (
                f"gain of the top-ranked start over the pretrained one ({int(row['n_targets'])} "
                "targets)",
                _cell(row, "gain", sign=True),
                "—",
            ),
            (
                f"share of candidates beating the pretrained start ({evaluated})",
                _cell(row, "share_beating_pretrained"),
                f"about 1 in 6 ({published['share_beating_pretrained']:.2f})",
            ),
            (
                f"Spearman ρ, −probe loss vs fine-tuned accuracy ({evaluated})",
                _cell(row, "spearman"),
                f"{published['spearman_low']:.2f}–{published['spearman_high']:.2f}",
            ),
            (
                f"regret of the top 1 ({evaluated})",
                _cell(row, "regret_top1"),
                f"{published['regret_top1']:.2f}",
            ),
            (
                f"regret of the best of the top {k} ({evaluated})",
                _cell(row, "regret_topk"),
                f"{published['regret_top3']:.2f} (top 3)",
            ),
        ]
        for measure, ours, theirs in measures:
            lines.append(f"| {row['size']} | {measure} | {ours} | {theirs} |")
    return "\n".join(lines) + "\n"
