"""Fusion tables and figure: how the fused starts compare with the pretrained start."""

from __future__ import annotations

import json

import pandas as pd

from weightspace import study
from weightspace.atomic import save_figure, write_csv
from weightspace.train.fusion_outcomes import (
    claims,
    merge_comparison,
    paired_gains,
    summary_table,
    wins_overview,
    wins_table,
)


def collect(runs: list[dict], metrics_files: list[str]) -> pd.DataFrame:
    rows = []
    for run, path in zip(runs, metrics_files):
        metrics = json.loads(open(path).read())
        scope = "pretrained" if run["base"] == study.PRETRAINED else run["base"].rsplit(".", 1)[-1]
        rows.append(
            {
                **run,
                "scope": scope,
                "accuracy": metrics["test"]["accuracy"],
                "loss": metrics["test"]["loss"],
                "validation_accuracy": metrics["validation"]["accuracy"],
            }
        )
    return summary_table(rows)


def figure(
    wins: pd.DataFrame, paired: pd.DataFrame | None = None, found: pd.DataFrame | None = None
):
    """Bars: the mean gain per target (over seeds); dots: each seed's paired gain; the band across a
    panel: the claim's mean over targets (seeds averaged within each) with its 95% interval over
    targets then seeds, and the verdict (or 'description') with its p at the target level.

    Long because each panel draws its layers (bars, seed dots, claim bands, labels) on one axis in
    drawing order, and the formatter puts each plotting argument on a line of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    panels = wins.groupby(["mode", "size"], sort=True) if not wins.empty else []
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(max(5.5 * n, 7), 4.6), squeeze=False, sharey=True)
    for ax, ((mode, size), frame) in zip(axes[0], panels):
        scopes = sorted(frame["scope"].unique())
        colors = dict(zip(scopes, sns.color_palette("colorblind", len(scopes)).as_hex()))
        targets = list(dict.fromkeys(frame["target"]))
        sns.barplot(
            frame.assign(points=100 * frame["gain"]),
            x="target",
            y="points",
            hue="scope",
            ax=ax,
            palette=colors,
            hue_order=scopes,
            order=targets,
            alpha=0.8,
        )
        if paired is not None and not paired.empty:
            runs = paired[(paired["mode"] == mode) & (paired["size"] == size)]
            sns.stripplot(
                runs.assign(points=100 * runs["gain"]),
                x="target",
                y="points",
                hue="scope",
                ax=ax,
                hue_order=scopes,
                order=targets,
                dodge=len(scopes) > 1,
                palette=["black"] * len(scopes),
                size=3.5,
                legend=False,
            )
        if found is not None and not found.empty:
            for _, row in found[
                (found["mode"] == mode) & (found["size"].astype(str) == str(size))
            ].iterrows():
                if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
                    ax.axhspan(
                        row["ci_low"],
                        row["ci_high"],
                        color=colors.get(row["scope"], "grey"),
                        alpha=0.15,
                        label=f"{row['scope']}: mean {row['effect']:+.1f} [{row['ci_low']:.1f}, "
                        f"{row['ci_high']:.1f}], p {row['p_value']:.3g}, {row['verdict']}",
                    )
                    ax.axhline(row["effect"], color=colors.get(row["scope"], "grey"), lw=1, ls=":")
        ax.axhline(0, color="black", lw=0.8)
        low, high = ax.get_ylim()
        # a tie's dot sits on zero: keep it in view
        ax.set_ylim(min(low, -0.05 * (high - low)), high)
        ax.set_title(f"{mode} fine-tuning, training size {size}")
        ax.set_xlabel("target dataset (dots: seeds)")
        ax.set_ylabel("test accuracy gain over the\npretrained start (percentage points)")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(
            title="fused region (band: 95% interval,\n"
            "targets then seeds; p: sign flips over targets)",
            loc="best",
            fontsize=7,
            title_fontsize=7,
        )
    fig.suptitle("Fused start (mean of other datasets' models) vs the pretrained start")
    fig.tight_layout()
    return fig


def write(
    runs,
    metrics_files,
    summary_path,
    wins_path,
    overview_path,
    figure_path,
    claims_path=None,
    n_boot: int = 1000,
    seed: int = 0,
) -> None:
    """Rule entry: the runs, wins and overview tables, the claims (paired gain and its interval),
    the figure."""
    summary = collect(runs, metrics_files)
    wins = wins_table(summary)
    found = claims(summary, n_boot, seed)
    write_csv(summary_path, summary)
    write_csv(wins_path, wins)
    write_csv(overview_path, wins_overview(wins))
    if claims_path:
        write_csv(claims_path, found)
    save_figure(figure(wins, paired_gains(summary), found), figure_path)


def write_merges(runs, metrics_files, runs_path, comparison_path, n_boot=1000, seed=0) -> None:
    """Rule entry: each merged base's runs beside its mean's twins, and the paired comparison."""
    rows = []
    for run, path in zip(runs, metrics_files, strict=True):
        kind = study.parse(run["base"])
        parts = run["base"].split(".")  # fused.{target}.{scope} | merged.{target}.{scope}.{method}
        rows.append(
            {
                **run,
                "scope": parts[2],
                "method": parts[3] if kind.kind == "merged" else "mean",
                "accuracy": json.loads(open(path).read())["test"]["accuracy"],
            }
        )
    frame = pd.DataFrame(rows)
    write_csv(runs_path, frame)
    write_csv(comparison_path, merge_comparison(frame, n_boot, seed))
