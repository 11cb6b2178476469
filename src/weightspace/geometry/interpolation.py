"""Lines, planes and region samples evaluated by the probe: tables, figures and the paper's
claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.atomic import save_figure, write_csv
from weightspace.probe import store
from weightspace.stats import verdicts


def evaluated(points: list[dict], probe_files: list[str | Path]) -> pd.DataFrame:
    """One row per (point, eval dataset) with the probe's loss and accuracy.

    probe_files: the evaluation jobs' results files (store.read; per-example losses in
    "test_losses").
    """
    by_key = store.read(probe_files)
    rows = []
    for point in points:
        info = {k: v for k, v in point.items() if k != "eval_datasets"}
        for dataset in point["eval_datasets"]:
            result = by_key[(point["model_id"], dataset)]
            rows.append(
                {
                    **info,
                    "eval_dataset": dataset,
                    "loss": result["loss"],
                    "accuracy": result["accuracy"],
                    "test_losses": result.get("test_losses"),
                }
            )
    return pd.DataFrame(rows)


def line_table(frame: pd.DataFrame, losses: bool = False) -> pd.DataFrame:
    """The lines' points; ``losses``: with their per-example test losses (for the claims, not the
    CSV)."""
    cols = [
        "pair",
        "relation",
        "model_a",
        "model_b",
        "alpha",
        "eval_dataset",
        "model_id",
        "loss",
        "accuracy",
    ]
    cols += ["test_losses"] if losses else []
    lines = frame[frame["study"] == "line"].copy() if "study" in frame.columns else pd.DataFrame()
    if lines.empty:
        return pd.DataFrame(columns=cols)
    lines["pair"] = lines["model_a"] + " — " + lines["model_b"]
    return (
        lines.reindex(columns=cols)
        .sort_values(["relation", "pair", "eval_dataset", "alpha"])
        .reset_index(drop=True)
    )


def plane_table(frame: pd.DataFrame) -> pd.DataFrame:
    planes = frame[frame["study"] == "plane"] if "study" in frame.columns else pd.DataFrame()
    cols = [
        "plane",
        "kind",
        "model_a",
        "model_b",
        "model_c",
        "u",
        "v",
        "eval_dataset",
        "model_id",
        "loss",
        "accuracy",
    ]
    return (
        planes.reindex(columns=cols)
        .sort_values(["plane", "eval_dataset", "u", "v"])
        .reset_index(drop=True)
    )


def region_table(frame: pd.DataFrame, losses: bool = False) -> pd.DataFrame:
    region = frame[frame["study"] == "region"] if "study" in frame.columns else pd.DataFrame()
    cols = ["group", "level", "kind", "sample", "eval_dataset", "model_id", "loss", "accuracy"]
    cols += ["test_losses"] if losses else []
    return (
        region.reindex(columns=cols)
        .sort_values(["group", "eval_dataset", "kind", "sample"])
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------- claims, at the unit of the group
#
# Every point's probe result keeps its per-example test losses (test-split order), so two points on
# one dataset are compared example by example: a cell (a line on one evaluation dataset, a region on
# one dataset) is a per-example difference. Lines and regions were chosen per group (a dataset, or a
# pair of datasets, for lines: traversal's groups; a region's group), so the group is the unit: a
# group's effect is the mean over its cells, the claim's effect the mean over groups, its test flips
# the signs of the group effects (exact where 2^groups is small), and its interval resamples groups,
# then the cells within each, then each cell's test examples.
# Headline claims (family "lines and regions"): the interior of same-dataset lines, extrapolation
# beyond their ends, and the centroid against its own members, the paper's own; the rest are
# descriptions.

PAPER_LINES = (
    "interpolations between same-dataset models are as good as or better than the ends "
    "(Gueta et al. 2023, Fig. 4)"
)
PAPER_CROSS = (
    "lines between models of different datasets are often good too (Gueta et al. 2023, Sec. 5)"
)
PAPER_EDGE = "loss rises beyond the ends: the edge of the region (Gueta et al. 2023, Fig. 4)"
PAPER_CENTRE = (
    "the best models lie near the region's centre; its centroid is better than its members "
    "(Gueta et al. 2023)"
)
PAPER_PRETRAINED = (
    "the region's centre is a better model than the pretrained one (Gueta et al. 2023, Sec. 6)"
)
CLAIMS = {
    "interior_same_dataset": "Points between two models of the same dataset have lower loss than "
    "the mean of the two ends (no barrier on the line)",
    "interior_same_task": "Points between models of two datasets of the same task have lower loss "
    "than the mean of the two ends",
    "interior_cross_task": "Points between models of two different tasks have lower loss than the "
    "mean of the two ends",
    "extrapolation_raises_loss": "Extrapolating beyond the ends of a same-dataset line raises the "
    "loss above the nearer end (the edge of the region)",
    "centroid_beats_own_members": "A region's centroid has lower loss on a dataset than that "
    "dataset's own fine-tuned models in the region",
    "centroid_beats_pretrained": "A region's centroid has lower loss than the pretrained model",
    "interior_as_good_as_members": "The interior of a region (random convex combinations of its "
    "models) has lower loss than its members on average",
}
FAMILY = "lines and regions"
HEADLINE = ("interior_same_dataset", "extrapolation_raises_loss", "centroid_beats_own_members")
RELATION_CLAIMS = {
    "same_dataset": ("interior_same_dataset", PAPER_LINES),
    "same_task": ("interior_same_task", PAPER_CROSS),
    "cross_task": ("interior_cross_task", PAPER_CROSS),
}
NESTED = "bootstrap 95%: groups, then cells within groups, then test examples"
NULL = "signs of the group effects flipped"
N_BOOT = 1000


def _losses(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return np.asarray(value, dtype=float)


def line_group(pair: str) -> str:
    """A line's group, as traversal chose it: the sorted datasets of its fine-tuned ends."""
    from weightspace import study

    names = {study.parse(m.strip()).dataset for m in pair.split(" — ")}
    return " + ".join(sorted(names - {None}))  # the pretrained and brought ends name none


def grouped_test(cells: dict[str, list[np.ndarray]], n_boot: int = N_BOOT, seed: int = 0):
    """Effect (mean over groups of the mean over their cells of the mean per-example difference),
    its nested bootstrap interval and the sign-flip p-values over groups."""
    from weightspace.stats import inference

    groups = [g for g in cells if cells[g]]
    if not groups:
        return (float("nan"),) * 5
    effects = np.array([np.mean([c.mean() for c in cells[g]]) for g in groups])
    effect = float(effects.mean())
    flips = inference.SignFlips(len(groups), seed=seed)
    p_up, p_down = inference.p_values(effect, flips.null_means(effects))
    rng = np.random.default_rng(seed)
    R, G = int(n_boot), len(groups)
    # each group's own resamples: for every replicate and every slot a drawn group may fill, its
    # cells drawn with replacement and each drawn cell's examples with replacement
    inner = np.empty((G, R, G))
    for j, g in enumerate(groups):
        members = cells[g]
        picks = rng.integers(0, len(members), size=(R, G, len(members)))
        means = np.zeros((R, G, len(members)))
        for c, cell in enumerate(members):
            chosen = picks == c
            if chosen.any():
                draws = rng.integers(0, len(cell), size=(int(chosen.sum()), len(cell)))
                means[chosen] = cell[draws].mean(axis=1)
        inner[j] = means.mean(axis=2)
    drawn = rng.integers(0, G, size=(R, G))
    replicates = inner[drawn, np.arange(R)[:, None], np.arange(G)[None, :]].mean(axis=1)
    low, high = verdicts.interval(replicates)
    return effect, low, high, p_up, p_down


def _row(claim_id, cells: dict[str, list], unit, paper, statistic, note, n_boot, seed, why) -> dict:
    from weightspace.stats import inference

    headline = claim_id in HEADLINE
    k = sum(1 for g in cells if cells[g])
    floor, design = inference.sign_flip_design(k, "groups") if k else (float("nan"), "")
    common = dict(
        family=FAMILY if headline else "", headline=headline, design=design, p_floor=floor
    )
    if not k:
        return verdicts.not_computable(claim_id, CLAIMS[claim_id], why, unit, paper, **common)
    effect, low, high, p_up, p_down = grouped_test(cells, n_boot, seed)
    n_cells = sum(len(c) for c in cells.values())
    single = [
        verdicts.verdict(*grouped_test({g: c}, n_boot, seed + i)[1:3])
        for i, (g, c) in enumerate(cells.items())
        if c
    ]
    note = (
        f"{n_cells} cells in {k} groups ({', '.join(g for g in cells if cells[g])}); "
        + note
        + "groups on their own (interval over their cells and examples): "
        f"{single.count(verdicts.HOLDS)} above 0, {single.count(verdicts.FAILS)} below, "
        f"{single.count(verdicts.INCONCLUSIVE)} include 0"
    )
    return verdicts.claim_row(
        claim_id,
        CLAIMS[claim_id],
        effect,
        low,
        high,
        k,
        unit,
        p_value=p_up,
        p_opposite=p_down,
        paper=paper,
        statistic=statistic,
        interval=NESTED,
        null=NULL,
        note=note,
        **common,
    )


def _curves(lines: pd.DataFrame):
    """(relation, pair, eval dataset, {alpha: per-example losses}) per line and evaluation
    dataset."""
    if lines.empty or "test_losses" not in lines.columns:
        return
    for (relation, pair, dataset), g in lines.groupby(
        ["relation", "pair", "eval_dataset"], sort=True
    ):
        curve = {float(a): _losses(v) for a, v in zip(g["alpha"], g["test_losses"])}
        if all(v is not None for v in curve.values()):
            yield relation, pair, dataset, curve


RELATIONS_READ = ("same_dataset", "same_task", "cross_task", "pretrained")


def line_cells(lines: pd.DataFrame) -> tuple[dict[str, dict[str, list]], dict[str, list]]:
    """The line claims' cells: per relation and group, each line's per-example interior gain (mean
    of the ends' losses - the interior points' loss); per same-dataset group, each line's
    per-example rise beyond its ends (the outer points' loss - the nearer end's)."""
    interior: dict[str, dict[str, list]] = {r: {} for r in RELATION_CLAIMS}
    edge: dict[str, list] = {}
    for relation, pair, _dataset, curve in _curves(lines):
        if 0.0 not in curve or 1.0 not in curve or relation not in RELATIONS_READ:
            continue  # a chosen line is drawn, in no claim
        group = line_group(pair)
        ends = 0.5 * (curve[0.0] + curve[1.0])
        inside = [a for a in curve if 0 < a < 1]
        if relation in interior and inside:
            interior[relation].setdefault(group, []).append(
                np.mean([ends - curve[a] for a in inside], axis=0)
            )
        outside = [a for a in curve if a < 0 or a > 1]
        if relation == "same_dataset" and outside:
            edge.setdefault(group, []).append(
                np.mean([curve[a] - curve[0.0 if a < 0 else 1.0] for a in outside], axis=0)
            )
    return interior, edge


def line_claims(lines: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    interior, edge = line_cells(lines)
    rows = []
    for relation, (claim_id, paper) in RELATION_CLAIMS.items():
        rows.append(
            _row(
                claim_id,
                interior[relation],
                f"{relation.replace('_', '-')} groups of lines",
                paper,
                "mean over groups, their lines, interior α and test examples of (mean of the two "
                "ends' loss - the point's loss), nats",
                "",
                n_boot,
                seed,
                f"no {relation} line with interior points",
            )
        )
    rows.append(
        _row(
            "extrapolation_raises_loss",
            edge,
            "same-dataset groups of lines",
            PAPER_EDGE,
            "mean over groups, their lines, extrapolated α and test examples of (the point's loss "
            "- the nearer end's loss), nats",
            "",
            n_boot,
            seed,
            "no same-dataset line with α outside [0, 1]",
        )
    )
    return rows


def region_cells(
    region: pd.DataFrame, pretrained: dict[str, list]
) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """The region claims' cells per group, each a dataset's per-example difference: its own members'
    mean loss - the centroid's; the pretrained model's - the centroid's; the members' mean - the
    Dirichlet samples' mean."""
    from weightspace import study

    own: dict[str, list] = {}
    vs_pre: dict[str, list] = {}
    interior: dict[str, list] = {}
    if not region.empty and "test_losses" in region.columns:
        for (group, dataset), g in region.groupby(["group", "eval_dataset"], sort=True):
            losses = {
                kind: [_losses(v) for v in part["test_losses"]] for kind, part in g.groupby("kind")
            }
            members = g[g["kind"] == "member"]
            if "centroid" not in losses or members.empty:
                continue
            centroid = losses["centroid"][0]
            own_members = [
                _losses(v)
                for m, v in zip(members["model_id"], members["test_losses"])
                if study.parse(m).dataset == dataset
            ]
            if own_members:
                own.setdefault(group, []).append(np.mean(own_members, axis=0) - centroid)
            if dataset in pretrained:
                vs_pre.setdefault(group, []).append(
                    np.asarray(pretrained[dataset], dtype=float) - centroid
                )
            if losses.get("sample"):
                interior.setdefault(group, []).append(
                    np.mean(losses["member"], axis=0) - np.mean(losses["sample"], axis=0)
                )
    return own, vs_pre, interior


def region_claims(
    region: pd.DataFrame,
    pretrained: dict[str, list] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[dict]:
    """Centroid vs its own dataset's members and vs the pretrained model; Dirichlet samples vs the
    members; the region group is the unit.

    pretrained: dataset -> the pretrained model's per-example test losses on it."""
    own, vs_pre, interior = region_cells(region, pretrained or {})
    unit = "region groups"
    specs = [
        (
            "centroid_beats_own_members",
            own,
            PAPER_CENTRE,
            "mean over groups, their datasets and test examples of (own members' mean loss - "
            "centroid's loss), nats",
            "no region",
        ),
        (
            "centroid_beats_pretrained",
            vs_pre,
            PAPER_PRETRAINED,
            "mean over groups, their datasets and test examples of (pretrained loss - centroid's "
            "loss), nats",
            "no region, or no pretrained probe result on its datasets",
        ),
        (
            "interior_as_good_as_members",
            interior,
            PAPER_CENTRE,
            "mean over groups, their datasets and test examples of (members' mean loss - Dirichlet "
            "samples' mean loss), nats",
            "no region with Dirichlet samples",
        ),
    ]
    return [
        _row(claim_id, cells, unit, paper, statistic, "", n_boot, seed, why)
        for claim_id, cells, paper, statistic, why in specs
    ]


def claims(
    lines: pd.DataFrame,
    region: pd.DataFrame,
    pretrained: dict[str, list] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Line and region claims (verdicts.CLAIM_COLUMNS), headline rows judged by verdicts.decide."""
    rows = line_claims(lines, n_boot, seed) + region_claims(region, pretrained, n_boot, seed)
    out = pd.DataFrame(rows).reindex(columns=verdicts.CLAIM_COLUMNS)
    out["n"] = out["n"].astype("Int64")
    return verdicts.decide(out)


# ---------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_loss_intervals(
    lines: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame | None:
    """Per α: the mean loss over the lines' groups and its nested bootstrap interval (groups, lines,
    test examples: as the claims resample them); None without per-example losses."""
    if "test_losses" not in lines.columns:
        return None
    rows = []
    for alpha, g in lines.groupby("alpha", sort=True):
        cells: dict[str, list] = {}
        for pair, v in zip(g["pair"], g["test_losses"]):
            if _losses(v) is None:
                return None
            cells.setdefault(line_group(pair), []).append(_losses(v))
        mean, low, high = grouped_test(cells, n_boot, seed)[:3]
        rows.append({"alpha": float(alpha), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def line_figure(lines: pd.DataFrame, n_boot: int = N_BOOT):
    plt = _plt()
    import seaborn as sns

    relations = [
        r
        for r in ("same_dataset", "same_task", "cross_task", "pretrained", "chosen")
        if r in set(lines["relation"])
    ]
    fig, axes = plt.subplots(
        1,
        max(len(relations), 1),
        figsize=(4.2 * max(len(relations), 1), 3.8),
        squeeze=False,
        sharey=True,
    )
    colors = dict(zip(relations, sns.color_palette("colorblind", len(relations)).as_hex()))
    for ax, relation in zip(axes[0], relations):
        g = lines[lines["relation"] == relation]
        for _, curve in g.groupby(["pair", "eval_dataset"]):
            ax.plot(curve["alpha"], curve["loss"], color=colors[relation], alpha=0.25, lw=0.8)
        stats = g.groupby("alpha")["loss"].agg(["mean", "min", "max"]).reset_index()
        ax.plot(
            stats["alpha"],
            stats["mean"],
            color=colors[relation],
            lw=2.2,
            marker="o",
            label="mean over lines",
        )
        band = _mean_loss_intervals(g, n_boot)
        # what the claims rest on: the mean's uncertainty over the test examples
        if band is not None:
            ax.fill_between(
                band["alpha"],
                band["low"],
                band["high"],
                color=colors[relation],
                alpha=0.3,
                label="95% interval of the mean\n(bootstrap: groups, lines, examples)",
            )
        else:
            ax.fill_between(
                stats["alpha"],
                stats["min"],
                stats["max"],
                color=colors[relation],
                alpha=0.15,
                label="range over lines",
            )
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
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    if not panels:  # an empty page would read as a failure
        axes.flat[0].text(
            0.5,
            0.5,
            "No planes in this study\n(config: interpolation.planes.enabled, kinds, fraction)",
            ha="center",
            va="center",
            fontsize=11,
            transform=axes.flat[0].transAxes,
        )
    for ax, ((_plane, dataset), g) in zip(axes.flat, panels):
        if g["u"].nunique() >= 2 and g["v"].nunique() >= 2:
            contour = ax.tricontourf(g["u"], g["v"], g["loss"], levels=12, cmap="viridis")
            fig.colorbar(contour, ax=ax, label="probe test loss (nats)")
        ax.scatter(g["u"], g["v"], c="white", s=6, edgecolors="none")
        first = g.iloc[0]
        # each corner's name inside the axes, clear of the title and the colour bar
        for (u, v), name, offset, align in (
            ((0, 0), first["model_a"], (6, 6), ("left", "bottom")),
            ((1, 0), first["model_b"], (-6, 6), ("right", "bottom")),
            ((0, 1), first["model_c"], (6, -6), ("left", "top")),
        ):
            ax.scatter([u], [v], marker="*", s=160, c="red", edgecolors="black", zorder=3)
            ax.annotate(
                name,
                (u, v),
                textcoords="offset points",
                xytext=offset,
                ha=align[0],
                va=align[1],
                fontsize=7,
                color="black",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
            )
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
        frame["loss_vs_members"] = frame["loss"] - frame.groupby(["group", "eval_dataset"])[
            "loss"
        ].transform(lambda s: s[frame.loc[s.index, "kind"] == "member"].mean())
        sns.stripplot(
            frame,
            x="group",
            y="loss_vs_members",
            hue="kind",
            hue_order=["member", "sample", "centroid"],
            palette="colorblind",
            dodge=True,
            ax=ax,
            size=6,
        )
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
    return {
        dataset: result["test_losses"]
        for (model, dataset), result in store.read(probe_files).items()
        if model == "pretrained" and result.get("test_losses") is not None
    }


def write(points, probe_files, out: dict, n_boot: int = N_BOOT, seed: int = 0) -> None:
    """Rule entry: lines/planes/region CSVs, the claims, and the figures ``out`` names (a study that
    is off has no figure to draw)."""
    frame = evaluated(points, probe_files)
    lines, planes, region = line_table(frame), plane_table(frame), region_table(frame)
    lines_with_losses = line_table(frame, losses=True)
    found = claims(
        lines_with_losses,
        region_table(frame, losses=True),
        pretrained_losses(probe_files),
        n_boot,
        seed,
    )
    write_csv(out["lines"], lines)
    write_csv(out["planes"], planes)
    write_csv(out["region"], region)
    write_csv(out["claims"], found)
    if "line_figure" in out:
        save_figure(line_figure(lines_with_losses, n_boot), out["line_figure"])
    if "plane_figure" in out:
        save_figure(plane_figure(planes), out["plane_figure"])
    if "region_figure" in out:
        save_figure(region_figure(region), out["region_figure"])
