"""Lines, planes and region samples evaluated by the probe: tables, figures and the paper's claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import save_figure, write_csv

# Relative slack for "similar" losses: the midpoint may be up to 5% above the better end.
SIMILAR = 0.05


def evaluated(points: list[dict], probe_files: list[str | Path]) -> pd.DataFrame:
    """One row per (point, eval dataset) with the probe's loss and accuracy.

    probe_files are .../probe/{model_id}/{dataset}.json.
    """
    by_key = {(Path(p).parent.name, Path(p).stem): Path(p) for p in probe_files}
    rows = []
    for point in points:
        info = {k: v for k, v in point.items() if k != "eval_datasets"}
        for dataset in point["eval_datasets"]:
            result = json.loads(by_key[(point["model_id"], dataset)].read_text())
            rows.append({**info, "eval_dataset": dataset, "loss": result["loss"], "accuracy": result["accuracy"]})
    return pd.DataFrame(rows)


def line_table(frame: pd.DataFrame) -> pd.DataFrame:
    lines = frame[frame["study"] == "line"].copy()
    lines["pair"] = lines["model_a"] + " — " + lines["model_b"]
    cols = ["pair", "relation", "model_a", "model_b", "alpha", "eval_dataset", "model_id", "loss", "accuracy"]
    return lines[cols].sort_values(["relation", "pair", "eval_dataset", "alpha"]).reset_index(drop=True)


def plane_table(frame: pd.DataFrame) -> pd.DataFrame:
    planes = frame[frame["study"] == "plane"]
    cols = ["plane", "kind", "model_a", "model_b", "model_c", "u", "v", "eval_dataset", "model_id", "loss", "accuracy"]
    return planes.reindex(columns=cols).sort_values(["plane", "eval_dataset", "u", "v"]).reset_index(drop=True)


def region_table(frame: pd.DataFrame) -> pd.DataFrame:
    region = frame[frame["study"] == "region"]
    cols = ["group", "level", "kind", "sample", "eval_dataset", "model_id", "loss", "accuracy"]
    return region.reindex(columns=cols).sort_values(["group", "eval_dataset", "kind", "sample"]).reset_index(drop=True)


def _per_line(lines: pd.DataFrame):
    for (pair, relation, dataset), g in lines.groupby(["pair", "relation", "eval_dataset"], sort=True):
        yield relation, g.set_index("alpha")["loss"]


def claims(lines: pd.DataFrame, region: pd.DataFrame, fusion_overview: pd.DataFrame | None = None) -> pd.DataFrame:
    rows = []

    def add(claim, paper, statistic, value, holds, n):
        verdict = "n/a (too few cases in this run)" if n == 0 else ("holds" if holds else "does not hold")
        rows.append({"claim": claim, "paper": paper, "statistic": statistic, "value": value, "cases": n,
                     "verdict": verdict})

    interior, edge = {}, {}
    for relation, curve in _per_line(lines):
        ends = [curve.get(0.0), curve.get(1.0)]
        if any(e is None or np.isnan(e) for e in ends):
            continue
        inside = curve[(curve.index > 0) & (curve.index < 1)]
        outside = curve[(curve.index < 0) | (curve.index > 1)]
        if len(inside):
            # similar or lower than both ends: the best interior point within SIMILAR of the better end
            interior.setdefault(relation, []).append(inside.min() <= min(ends) * (1 + SIMILAR))
        for alpha, loss in outside.items():
            edge.setdefault(relation, []).append(loss > (ends[0] if alpha < 0 else ends[1]))
    same = interior.get("same_dataset", [])
    add("Points between two models of the same dataset reach similar or lower loss than both ends",
        "holds (Gueta et al. 2023, Fig. 4)", f"fraction of lines whose best interior point is within {SIMILAR:.0%} of "
        "the better end or below", float(np.mean(same)) if same else np.nan, bool(same) and np.mean(same) >= 0.5,
        len(same))
    for relation in ("same_task", "cross_task"):
        hits = interior.get(relation, [])
        add(f"Lines between models of different datasets ({relation.replace('_', ' ')}) can still be good",
            "often holds", "fraction of lines whose best interior point is within the similar band of the better end",
            float(np.mean(hits)) if hits else np.nan, bool(hits) and np.mean(hits) > 0, len(hits))
    outs = [x for v in edge.values() for x in v]
    add("Extrapolating beyond the ends raises the loss (the edge of the region)",
        "holds", "fraction of extrapolated points with higher loss than the nearest end",
        float(np.mean(outs)) if outs else np.nan, bool(outs) and np.mean(outs) >= 0.5, len(outs))
    centre = []
    if not region.empty:
        for (group, dataset), g in region.groupby(["group", "eval_dataset"]):
            members = g[g["kind"] == "member"]["loss"]
            centroid = g[g["kind"] == "centroid"]["loss"]
            if len(members) and len(centroid):
                centre.append(float(centroid.iloc[0]) <= float(members.mean()))
    add("The best models lie near the centre: a region's centroid beats its members on average",
        "holds", "fraction of (group, dataset) where the centroid's loss <= the members' mean loss",
        float(np.mean(centre)) if centre else np.nan, bool(centre) and np.mean(centre) >= 0.5, len(centre))
    if fusion_overview is not None and not fusion_overview.empty:
        for _, r in fusion_overview.iterrows():
            add(f"A fused start ({r['scope']} region, {r['mode']}, training size {r['size']}) is as good as or "
                "better than the pretrained start", "11 of 12 targets, +3.06 accuracy on average",
                "targets as good or better / targets; mean accuracy gain in points (the paper's unit)",
                f"{int(r['as_good_or_better'])}/{int(r['targets'])}; {100 * r['mean_gain']:+.2f} points",
                r["as_good_or_better"] >= r["targets"] / 2 and r["mean_gain"] >= 0, int(r["targets"]))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_figure(lines: pd.DataFrame):
    plt = _plt()
    import seaborn as sns

    relations = [r for r in ("same_dataset", "same_task", "cross_task", "pretrained") if r in set(lines["relation"])]
    fig, axes = plt.subplots(1, max(len(relations), 1), figsize=(4.2 * max(len(relations), 1), 3.8), squeeze=False,
                             sharey=True)
    colors = dict(zip(relations, sns.color_palette("colorblind", len(relations)).as_hex()))
    for ax, relation in zip(axes[0], relations):
        g = lines[lines["relation"] == relation]
        for _, curve in g.groupby(["pair", "eval_dataset"]):
            ax.plot(curve["alpha"], curve["loss"], color=colors[relation], alpha=0.25, lw=0.8)
        stats = g.groupby("alpha")["loss"].agg(["mean", "min", "max"]).reset_index()
        ax.plot(stats["alpha"], stats["mean"], color=colors[relation], lw=2.2, marker="o", label="mean over lines")
        ax.fill_between(stats["alpha"], stats["min"], stats["max"], color=colors[relation], alpha=0.15,
                        label="range over lines")
        for end in (0, 1):
            ax.axvline(end, color="black", ls="--", lw=0.8)
        ax.set_title(relation.replace("_", " "))
        ax.set_xlabel("α  (θ = (1−α)·θ_A + α·θ_B; dashed: the two models)")
        ax.set_ylabel("linear-probe test loss (cross-entropy, nats)")
        ax.legend(fontsize=7, loc="upper center")
    fig.suptitle("Interpolation and extrapolation between fine-tuned models")
    fig.tight_layout()
    return fig


def plane_figure(planes: pd.DataFrame):
    plt = _plt()
    panels = list(planes.groupby(["plane", "eval_dataset"], sort=True)) if not planes.empty else []
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, ((plane, dataset), g) in zip(axes.flat, panels):
        if g["u"].nunique() >= 2 and g["v"].nunique() >= 2:
            contour = ax.tricontourf(g["u"], g["v"], g["loss"], levels=12, cmap="viridis")
            fig.colorbar(contour, ax=ax, label="probe test loss (nats)")
        ax.scatter(g["u"], g["v"], c="white", s=6, edgecolors="none")
        first = g.iloc[0]
        for (u, v), name in (((0, 0), first["model_a"]), ((1, 0), first["model_b"]), ((0, 1), first["model_c"])):
            ax.scatter([u], [v], marker="*", s=160, c="red", edgecolors="black", zorder=3)
            ax.annotate(name, (u, v), textcoords="offset points", xytext=(4, 6), fontsize=7, color="black")
        ax.set_title(f"{first['kind']} plane, evaluated on {dataset}", fontsize=9)
        ax.set_xlabel("u (towards model B)")
        ax.set_ylabel("v (towards model C)")
    fig.suptitle("Loss over the plane through three models (θ = θ_A + u(θ_B−θ_A) + v(θ_C−θ_A))")
    fig.tight_layout()
    return fig


def region_figure(region: pd.DataFrame):
    plt = _plt()
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * region["group"].nunique() + 3), 4.2))
    if not region.empty:
        frame = region.copy()
        frame["loss_vs_members"] = frame["loss"] - frame.groupby(["group", "eval_dataset"])["loss"].transform(
            lambda s: s[frame.loc[s.index, "kind"] == "member"].mean())
        sns.stripplot(frame, x="group", y="loss_vs_members", hue="kind", hue_order=["member", "sample", "centroid"],
                      palette="colorblind", dodge=True, ax=ax, size=6)
        ax.axhline(0, color="black", lw=0.8)
        ax.tick_params(axis="x", rotation=45)
        ax.legend(title="point", fontsize=8, loc="best")
    ax.set_xlabel("region (models of one dataset or one task)")
    ax.set_ylabel("probe loss minus the members' mean (nats)")
    ax.set_title("Inside the region: members, random convex combinations and the centroid")
    fig.tight_layout()
    return fig


def write(points, probe_files, fusion_overview_path, out: dict) -> None:
    frame = evaluated(points, probe_files)
    lines, planes, region = line_table(frame), plane_table(frame), region_table(frame)
    overview = pd.read_csv(fusion_overview_path) if fusion_overview_path else None
    write_csv(out["lines"], lines)
    write_csv(out["planes"], planes)
    write_csv(out["region"], region)
    write_csv(out["claims"], claims(lines, region, overview))
    save_figure(line_figure(lines), out["line_figure"])
    save_figure(plane_figure(planes), out["plane_figure"])
    save_figure(region_figure(region), out["region_figure"])
