"""Lines, planes and region samples evaluated by the probe: tables, figures and the paper's claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import probe_store, verdicts
from .atomic import save_figure, write_csv



def evaluated(points: list[dict], probe_files: list[str | Path]) -> pd.DataFrame:
    """One row per (point, eval dataset) with the probe's loss and accuracy.

    probe_files: the evaluation jobs' results files (probe_store.read; per-example losses in "test_losses").
    """
    by_key = probe_store.read(probe_files)
    rows = []
    for point in points:
        info = {k: v for k, v in point.items() if k != "eval_datasets"}
        for dataset in point["eval_datasets"]:
            result = by_key[(point["model_id"], dataset)]
            rows.append({**info, "eval_dataset": dataset, "loss": result["loss"], "accuracy": result["accuracy"],
                         "test_losses": result.get("test_losses")})
    return pd.DataFrame(rows)


def line_table(frame: pd.DataFrame, losses: bool = False) -> pd.DataFrame:
    """The lines' points; ``losses``: with their per-example test losses (for the claims, not the CSV)."""
    cols = ["pair", "relation", "model_a", "model_b", "alpha", "eval_dataset", "model_id", "loss", "accuracy"]
    cols += ["test_losses"] if losses else []
    lines = frame[frame["study"] == "line"].copy() if "study" in frame.columns else pd.DataFrame()
    if lines.empty:
        return pd.DataFrame(columns=cols)
    lines["pair"] = lines["model_a"] + " — " + lines["model_b"]
    return lines.reindex(columns=cols).sort_values(["relation", "pair", "eval_dataset", "alpha"]).reset_index(drop=True)


def plane_table(frame: pd.DataFrame) -> pd.DataFrame:
    planes = frame[frame["study"] == "plane"] if "study" in frame.columns else pd.DataFrame()
    cols = ["plane", "kind", "model_a", "model_b", "model_c", "u", "v", "eval_dataset", "model_id", "loss", "accuracy"]
    return planes.reindex(columns=cols).sort_values(["plane", "eval_dataset", "u", "v"]).reset_index(drop=True)


def region_table(frame: pd.DataFrame, losses: bool = False) -> pd.DataFrame:
    region = frame[frame["study"] == "region"] if "study" in frame.columns else pd.DataFrame()
    cols = ["group", "level", "kind", "sample", "eval_dataset", "model_id", "loss", "accuracy"]
    cols += ["test_losses"] if losses else []
    return region.reindex(columns=cols).sort_values(["group", "eval_dataset", "kind", "sample"]).reset_index(drop=True)


# ---------------------------------------------------------------- claims, paired over test examples
#
# Every point's probe result keeps its per-example test losses (test-split order), so two
# points on one dataset are compared example by example. An effect is a mean over cells
# (a line on one evaluation dataset, a region on one dataset) of a per-example difference;
# its interval is a paired bootstrap that resamples each dataset's test examples (the same
# draw for every model on that dataset). Lines and regions are fixed, not resampled: the
# note says how many single lines agree on their own.

PAPER_LINES = ("interpolations between same-dataset models are as good as or better than the ends "
               "(Gueta et al. 2023, Fig. 4)")
PAPER_CROSS = "lines between models of different datasets are often good too (Gueta et al. 2023, Sec. 5)"
PAPER_EDGE = "loss rises beyond the ends: the edge of the region (Gueta et al. 2023, Fig. 4)"
PAPER_CENTRE = ("the best models lie near the region's centre; its centroid is better than its members "
                "(Gueta et al. 2023)")
PAPER_PRETRAINED = "the region's centre is a better model than the pretrained one (Gueta et al. 2023, Sec. 6)"
CLAIMS = {
    "interior_same_dataset": "Points between two models of the same dataset have lower loss than the mean of the "
                             "two ends (no barrier on the line)",
    "interior_same_task": "Points between models of two datasets of the same task have lower loss than the mean of "
                          "the two ends",
    "interior_cross_task": "Points between models of two different tasks have lower loss than the mean of the "
                           "two ends",
    "extrapolation_raises_loss": "Extrapolating beyond the ends of a same-dataset line raises the loss above the "
                                 "nearer end (the edge of the region)",
    "centroid_beats_own_members": "A region's centroid has lower loss on a dataset than that dataset's own "
                                  "fine-tuned models in the region",
    "centroid_beats_pretrained": "A region's centroid has lower loss than the pretrained model",
    "interior_as_good_as_members": "The interior of a region (random convex combinations of its models) has lower "
                                   "loss than its members on average",
}
RELATION_CLAIMS = {"same_dataset": ("interior_same_dataset", PAPER_LINES),
                   "same_task": ("interior_same_task", PAPER_CROSS),
                   "cross_task": ("interior_cross_task", PAPER_CROSS)}
PAIRED = "paired bootstrap 95% over test examples"
N_BOOT = 1000


def _losses(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return np.asarray(value, dtype=float)


def paired_cells(cells: list[tuple[str, np.ndarray]], n_boot: int = N_BOOT, seed: int = 0):
    """Mean over cells of per-example differences, and a paired bootstrap interval resampling each dataset's
    test examples (one draw per dataset and replicate, shared by every cell on that dataset)."""
    if not cells:
        return float("nan"), float("nan"), float("nan")
    effect = float(np.mean([e.mean() for _, e in cells]))
    rng = np.random.default_rng(seed)
    sizes = {}
    for dataset, e in cells:
        sizes.setdefault(dataset, len(e))
    replicates = np.empty(int(n_boot))
    for r in range(int(n_boot)):
        draw = {d: rng.integers(0, n, size=n) for d, n in sizes.items()}
        replicates[r] = np.mean([e[draw[d]].mean() for d, e in cells])
    low, high = verdicts.interval(replicates)
    return effect, low, high


def _cell_verdicts(cells, n_boot: int, seed: int) -> str:
    found = [verdicts.verdict(*paired_cells([c], n_boot, seed + i)[1:]) for i, c in enumerate(cells)]
    return (f"single cells: {found.count(verdicts.HOLDS)} hold, {found.count(verdicts.FAILS)} do not hold, "
            f"{found.count(verdicts.INCONCLUSIVE)} inconclusive")


def _curves(lines: pd.DataFrame):
    """(relation, pair, eval dataset, {alpha: per-example losses}) per line and evaluation dataset."""
    if lines.empty or "test_losses" not in lines.columns:
        return
    for (relation, pair, dataset), g in lines.groupby(["relation", "pair", "eval_dataset"], sort=True):
        curve = {float(a): _losses(v) for a, v in zip(g["alpha"], g["test_losses"])}
        if all(v is not None for v in curve.values()):
            yield relation, pair, dataset, curve


def line_claims(lines: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    rows = []
    interior: dict[str, list] = {r: [] for r in RELATION_CLAIMS}
    pairs: dict[str, set] = {r: set() for r in RELATION_CLAIMS}
    edge, edge_pairs = [], set()
    for relation, pair, dataset, curve in _curves(lines):
        if 0.0 not in curve or 1.0 not in curve:
            continue
        ends = 0.5 * (curve[0.0] + curve[1.0])
        inside = [a for a in curve if 0 < a < 1]
        if relation in interior and inside:
            interior[relation].append((dataset, np.mean([ends - curve[a] for a in inside], axis=0)))
            pairs[relation].add(pair)
        outside = [a for a in curve if a < 0 or a > 1]
        if relation == "same_dataset" and outside:
            edge.append((dataset, np.mean([curve[a] - curve[0.0 if a < 0 else 1.0] for a in outside], axis=0)))
            edge_pairs.add(pair)
    for relation, (claim_id, paper) in RELATION_CLAIMS.items():
        cells = interior[relation]
        unit = "lines (paired over test examples)"
        if not cells:
            rows.append(verdicts.not_computable(claim_id, CLAIMS[claim_id], f"no {relation} line with interior points",
                                                unit, paper))
            continue
        effect, low, high = paired_cells(cells, n_boot, seed)
        rows.append(verdicts.claim_row(
            claim_id, CLAIMS[claim_id], effect, low, high, len(pairs[relation]), unit, paper=paper,
            statistic="mean over lines, interior α and test examples of (mean of the two ends' loss - the point's "
                      "loss), nats", interval=PAIRED, null="",
            note=f"{len(cells)} (line, evaluation dataset) cells, {sum(len(e) for _, e in cells)} example losses; "
                 + _cell_verdicts(cells, n_boot, seed)))
    claim_id = "extrapolation_raises_loss"
    if edge:
        effect, low, high = paired_cells(edge, n_boot, seed)
        rows.append(verdicts.claim_row(
            claim_id, CLAIMS[claim_id], effect, low, high, len(edge_pairs), "same-dataset lines (paired over test "
            "examples)", paper=PAPER_EDGE, statistic="mean over lines, extrapolated α and test examples of (the "
            "point's loss - the nearer end's loss), nats", interval=PAIRED, null="",
            note=_cell_verdicts(edge, n_boot, seed)))
    else:
        rows.append(verdicts.not_computable(claim_id, CLAIMS[claim_id], "no same-dataset line with α outside [0, 1]",
                                            "same-dataset lines", PAPER_EDGE))
    return rows


def region_claims(region: pd.DataFrame, pretrained: dict[str, list] | None = None, n_boot: int = N_BOOT,
                  seed: int = 0) -> list[dict]:
    """Centroid vs its own dataset's members and vs the pretrained model; Dirichlet samples vs the members.

    pretrained: dataset -> the pretrained model's per-example test losses on it."""
    from . import study

    pretrained = pretrained or {}
    own, vs_pre, interior, groups = [], [], [], set()
    if not region.empty and "test_losses" in region.columns:
        for (group, dataset), g in region.groupby(["group", "eval_dataset"], sort=True):
            losses = {kind: [_losses(v) for v in part["test_losses"]] for kind, part in g.groupby("kind")}
            members = g[g["kind"] == "member"]
            if "centroid" not in losses or members.empty:
                continue
            groups.add(group)
            centroid = losses["centroid"][0]
            own_members = [_losses(v) for m, v in zip(members["model_id"], members["test_losses"])
                           if study.parse(m).dataset == dataset]
            if own_members:
                own.append((dataset, np.mean(own_members, axis=0) - centroid))
            if dataset in pretrained:
                vs_pre.append((dataset, np.asarray(pretrained[dataset], dtype=float) - centroid))
            if losses.get("sample"):
                interior.append((dataset, np.mean(losses["member"], axis=0) - np.mean(losses["sample"], axis=0)))
    unit = "regions (paired over test examples)"
    specs = [("centroid_beats_own_members", own, PAPER_CENTRE,
              "mean over (region, dataset) and test examples of (own members' mean loss - centroid's loss), nats"),
             ("centroid_beats_pretrained", vs_pre, PAPER_PRETRAINED,
              "mean over (region, dataset) and test examples of (pretrained loss - centroid's loss), nats"),
             ("interior_as_good_as_members", interior, PAPER_CENTRE,
              "mean over (region, dataset) and test examples of (members' mean loss - Dirichlet samples' mean loss), "
              "nats")]
    rows = []
    for claim_id, cells, paper, statistic in specs:
        if not cells:
            why = {"centroid_beats_pretrained": "no region, or no pretrained probe result on its datasets",
                   "interior_as_good_as_members": "no region with Dirichlet samples"}.get(claim_id, "no region")
            rows.append(verdicts.not_computable(claim_id, CLAIMS[claim_id], why, unit, paper))
            continue
        effect, low, high = paired_cells(cells, n_boot, seed)
        rows.append(verdicts.claim_row(claim_id, CLAIMS[claim_id], effect, low, high, len(groups), unit, paper=paper,
                                       statistic=statistic, interval=PAIRED, null="",
                                       note=f"{len(cells)} (region, dataset) cells; "
                                            + _cell_verdicts(cells, n_boot, seed)))
    return rows


def claims(lines: pd.DataFrame, region: pd.DataFrame, pretrained: dict[str, list] | None = None,
           n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Line and region claims, each with its effect, paired interval, n and verdict (verdicts.CLAIM_COLUMNS)."""
    rows = line_claims(lines, n_boot, seed) + region_claims(region, pretrained, n_boot, seed)
    out = pd.DataFrame(rows).reindex(columns=verdicts.CLAIM_COLUMNS)
    out["n"] = out["n"].astype("Int64")
    return out


# ---------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_loss_intervals(lines: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame | None:
    """Per α: the mean loss over the lines' (line, evaluation dataset) cells and its paired bootstrap interval
    over test examples (as the claims resample them); None without per-example losses."""
    if "test_losses" not in lines.columns:
        return None
    rows = []
    for alpha, g in lines.groupby("alpha", sort=True):
        cells = [(d, _losses(v)) for d, v in zip(g["eval_dataset"], g["test_losses"])]
        if any(e is None for _, e in cells):
            return None
        mean, low, high = paired_cells(cells, n_boot, seed)
        rows.append({"alpha": float(alpha), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def line_figure(lines: pd.DataFrame, n_boot: int = N_BOOT):
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
        band = _mean_loss_intervals(g, n_boot)
        if band is not None:  # what the claims rest on: the mean's uncertainty over the test examples
            ax.fill_between(band["alpha"], band["low"], band["high"], color=colors[relation], alpha=0.3,
                            label="95% interval of the mean\n(bootstrap over test examples)")
        else:
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
    if not panels:  # an empty page would read as a failure
        axes.flat[0].text(0.5, 0.5, "No planes in this study\n(config: interpolation.planes.enabled, kinds, fraction)",
                          ha="center", va="center", fontsize=11, transform=axes.flat[0].transAxes)
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


def pretrained_losses(probe_files) -> dict[str, list]:
    """dataset -> the pretrained model's per-example test losses, where the files hold them."""
    return {dataset: result["test_losses"] for (model, dataset), result in probe_store.read(probe_files).items()
            if model == "pretrained" and result.get("test_losses") is not None}


def write(points, probe_files, out: dict, n_boot: int = N_BOOT, seed: int = 0) -> None:
    """Rule entry: lines/planes/region CSVs, the claims and three figures."""
    frame = evaluated(points, probe_files)
    lines, planes, region = line_table(frame), plane_table(frame), region_table(frame)
    lines_with_losses = line_table(frame, losses=True)
    found = claims(lines_with_losses, region_table(frame, losses=True), pretrained_losses(probe_files), n_boot, seed)
    write_csv(out["lines"], lines)
    write_csv(out["planes"], planes)
    write_csv(out["region"], region)
    write_csv(out["claims"], found)
    save_figure(line_figure(lines_with_losses, n_boot), out["line_figure"])
    save_figure(plane_figure(planes), out["plane_figure"])
    save_figure(region_figure(region), out["region_figure"])
