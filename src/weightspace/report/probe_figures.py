"""The probe matrix (every model × every target dataset) and its figures: a loss heatmap and loss vs
weight distance."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace import WeightspaceError, study
from weightspace.atomic import save_figure, write_csv
from weightspace.probe import store
from weightspace.report import palette

log = logging.getLogger(__name__)

MATRIX_COLUMNS = [
    "model",
    "model_kind",
    "model_dataset",
    "model_task",
    "seed",
    "target_dataset",
    "target_task",
    "loss",
    "accuracy",
    "n_train",
    "n_test",
    "l2",
    "chance_loss",
    "chance_accuracy",
    "pretrained_loss",
    "loss_minus_pretrained",
    "loss_minus_pretrained_low",
    "loss_minus_pretrained_high",
]
DISTANCE_COLUMNS = ("model_a", "model_b", "metric", "space", "group", "distance")
# which of the target's relatives a model is; Okabe-Ito colours (colour-blind safe)
RELATION_COLORS = {
    "same dataset": "#0072B2",
    "same task": "#E69F00",
    "other task": "#999999",
    "pretrained": palette.PRETRAINED_COLOR,
}
KIND_MARKERS = {"finetuned": "o", "pretrained": "*", "fused": "D", "mix": "s"}
PRIOR_ROW = "label prior"


def _config(tasks: dict[str, str]) -> dict:
    return {"datasets": {d: {"task": t} for d, t in tasks.items()}}


def probe_matrix(paths: Sequence[str | Path], tasks: dict[str, str]) -> pd.DataFrame:
    """One row per probe result in the results files (probe_store): the model's identity and its
    result on the target."""
    config = _config(tasks)
    rows = []
    for (model_id, target), result in store.read(paths).items():
        if target not in tasks:
            raise WeightspaceError(
                f"probe result of {model_id}: '{target}' is not a dataset of the config"
            )
        model = study.model_table(config, [model_id])[0]
        rows.append(
            {
                "model": model_id,
                "model_kind": model["kind"],
                "model_dataset": model["dataset"],
                "model_task": model["task"],
                "seed": model["seed"],
                "target_dataset": target,
                "target_task": tasks[target],
                "loss": result["loss"],
                "accuracy": result["accuracy"],
                "n_train": result.get("n_train"),
                "n_test": result.get("n_test"),
                "l2": result.get("l2", result.get("protocol", {}).get("l2")),
                "chance_loss": result.get("prior", result.get("chance", {})).get("loss"),
                "chance_accuracy": result.get("prior", result.get("chance", {})).get("accuracy"),
                "test_losses": result.get("test_losses"),
            }
        )
    frame = pd.DataFrame(rows, columns=[*MATRIX_COLUMNS, "test_losses"])
    frame["seed"] = frame["seed"].astype("Int64")
    frame = compare_with_pretrained(frame)
    return frame[MATRIX_COLUMNS]


def compare_with_pretrained(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each row's loss next to the pretrained model's on the same target: the difference, and its
    95% interval from a paired bootstrap over the target's test examples (where both results keep
    per-example losses)."""
    from weightspace.stats import verdicts

    frame = frame.copy()
    pre = frame[frame["model_kind"] == "pretrained"].set_index("target_dataset")
    frame["pretrained_loss"] = frame["target_dataset"].map(pre["loss"]) if len(pre) else np.nan
    frame["loss_minus_pretrained"] = frame["loss"] - frame["pretrained_loss"]
    low, high = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    rng = np.random.default_rng(seed)
    for target, rows in frame.groupby("target_dataset").groups.items():
        reference = pre["test_losses"].get(target) if len(pre) else None
        if reference is None or (isinstance(reference, float) and np.isnan(reference)):
            continue
        reference = np.asarray(reference, dtype=float)
        draws = rng.integers(0, len(reference), size=(n_boot, len(reference)))
        for i in rows:
            losses = frame.at[i, "test_losses"]
            if (
                losses is None
                or (isinstance(losses, float) and np.isnan(losses))
                or len(losses) != len(reference)
            ):
                continue
            diff = np.asarray(losses, dtype=float) - reference
            low[frame.index.get_loc(i)], high[frame.index.get_loc(i)] = verdicts.interval(
                diff[draws].mean(axis=1)
            )
    frame["loss_minus_pretrained_low"], frame["loss_minus_pretrained_high"] = low, high
    return frame


def read_distances(
    path: str | Path, metric: str = "euclidean", space: str = "raw", group: str = "all"
) -> pd.DataFrame:
    """The pairwise weight distances of one metric/space/group, from the geometry's long table."""
    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"distance table {path} does not exist")
    frame = pd.read_parquet(path)
    for column in DISTANCE_COLUMNS:
        if column not in frame.columns:
            raise WeightspaceError(f"distance table {path} has no column '{column}'")
    chosen = frame[
        (frame["metric"] == metric) & (frame["space"] == space) & (frame["group"] == group)
    ]
    if chosen.empty:
        raise WeightspaceError(
            f"distance table {path} has no rows with metric={metric}, space={space}, group={group}"
        )
    return chosen[["model_a", "model_b", "distance"]].reset_index(drop=True)


def distance_to_target(matrix: pd.DataFrame, distances: pd.DataFrame) -> pd.Series:
    """Per row: the mean distance from the model to the target dataset's own fine-tuned models
    (itself excluded)."""
    lookup = {}
    for a, b, d in distances[["model_a", "model_b", "distance"]].itertuples(index=False):
        lookup[(a, b)] = lookup[(b, a)] = float(d)
    own = (
        matrix[matrix["model_kind"] == "finetuned"]
        .groupby("model_dataset")["model"]
        .apply(lambda s: sorted(set(s)))
        .to_dict()
    )
    out, missing = [], 0
    for model, target in matrix[["model", "target_dataset"]].itertuples(index=False):
        values = [lookup.get((model, other)) for other in own.get(target, []) if other != model]
        if any(v is None for v in values):
            missing += 1
        values = [v for v in values if v is not None]
        out.append(float(np.mean(values)) if values else np.nan)
    if missing:
        log.warning("%d (model, target) rows lack some distances in the distance table", missing)
    return pd.Series(out, index=matrix.index, name="distance_to_target")


def relation(row) -> str:
    if row["model_kind"] == "pretrained":
        return "pretrained"
    if row["model_dataset"] == row["target_dataset"]:
        return "same dataset"
    if pd.notna(row["model_task"]) and row["model_task"] == row["target_task"]:
        return "same task"
    return "other task"


def _model_order(matrix: pd.DataFrame, tasks: dict[str, str]) -> list[str]:
    """Pretrained first, then fine-tuned models grouped by task and dataset (config order), then the
    rest."""
    datasets = list(tasks)
    task_order = list(dict.fromkeys(tasks.values()))
    models = matrix.drop_duplicates("model").set_index("model")

    def key(model):
        row = models.loc[model]
        kind = {"pretrained": 0, "finetuned": 1, "fused": 2}.get(row["model_kind"], 3)
        if kind == 1:
            return (
                kind,
                task_order.index(row["model_task"]),
                datasets.index(row["model_dataset"]),
                int(row["seed"]),
                model,
            )
        return (kind, 0, 0, 0, model)

    return sorted(models.index, key=key)


def _target_order(tasks: dict[str, str], targets) -> list[str]:
    task_order = list(dict.fromkeys(tasks.values()))
    return sorted(set(targets), key=lambda d: (task_order.index(tasks[d]), list(tasks).index(d)))


def _row_color(row, colors) -> str:
    if row["model_kind"] == "prior":
        return "#ffffff"
    if row["model_kind"] == "pretrained":
        return palette.PRETRAINED_COLOR
    if row["model_kind"] == "finetuned":
        return colors[row["model_task"]]
    return palette.FUSED_COLOR


def _heatmap_frame(matrix: pd.DataFrame, tasks: dict[str, str]):
    """The heatmap's rows (the label prior first) and columns, the raw losses, the losses minus the
    pretrained model's (or, without one, the models' mean), the colour span and each row's model."""
    prior = matrix.groupby("target_dataset")["chance_loss"].first()
    matrix = pd.concat(
        [
            matrix,
            pd.DataFrame(
                {
                    "model": PRIOR_ROW,
                    "model_kind": "prior",
                    "target_dataset": prior.index,
                    "loss": prior.to_numpy(dtype=float),
                }
            ),
        ],
        ignore_index=True,
    )
    rows = [PRIOR_ROW] + _model_order(matrix[matrix["model"] != PRIOR_ROW], tasks)
    cols = _target_order(tasks, matrix["target_dataset"])
    loss = matrix.pivot(index="model", columns="target_dataset", values="loss").loc[rows, cols]
    if "pretrained" in loss.index:
        scaled = loss - loss.loc["pretrained"]
    else:
        scaled = loss - loss.drop(index=PRIOR_ROW).mean(axis=0)
    span = (
        float(np.nanmax(np.abs(scaled.to_numpy(dtype=float))))
        if scaled.notna().any().any()
        else 1.0
    )
    span = span if span > 0 else 1.0
    info = matrix.drop_duplicates("model").set_index("model").loc[rows]
    return rows, cols, loss, scaled, span, info


def _cell_numbers(ax, rows, cols, loss, scaled, span) -> None:
    """Each cell's raw loss, white where its colour is dark."""
    for i in range(len(rows)):
        for j in range(len(cols)):
            value = loss.iat[i, j]
            if np.isnan(value):
                continue
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(scaled.iat[i, j]) > 0.6 * span else "black",
            )


def _group_lines(ax, rows, cols, info, tasks: dict[str, str]) -> None:
    """Lines between groups: model datasets / tasks, target tasks."""
    for i in range(1, len(rows)):
        a, b = info.iloc[i - 1], info.iloc[i]
        if a["model_kind"] != b["model_kind"] or a["model_task"] != b["model_task"]:
            ax.axhline(i - 0.5, color="white", lw=1.5)
        elif a["model_dataset"] != b["model_dataset"]:
            ax.axhline(i - 0.5, color="white", lw=0.5)
    for j in range(1, len(cols)):
        if tasks[cols[j - 1]] != tasks[cols[j]]:
            ax.axvline(j - 0.5, color="white", lw=1.5)


def _task_bars(fig, grid, ax, rows, cols, info, colors, tasks: dict[str, str]) -> None:
    """The colour bars of the model's task (left) and the target's task (top), and the title."""
    from matplotlib.colors import to_rgb

    left = fig.add_subplot(grid[1, 0])
    left.imshow(
        np.array([[to_rgb(_row_color(info.loc[m], colors))] for m in rows]),
        aspect="auto",
        interpolation="nearest",
    )
    left.set_xticks([])
    left.set_yticks(range(len(rows)), rows, fontsize=7)
    left.set_ylim(ax.get_ylim())
    top = fig.add_subplot(grid[0, 1])
    top.imshow(
        np.array([[to_rgb(colors[tasks[c]]) for c in cols]]), aspect="auto", interpolation="nearest"
    )
    top.set_xlim(ax.get_xlim())
    top.set_xticks([])
    top.set_yticks([])
    top.set_title(
        "linear-probe test loss (nats) of each model on each target\n"
        "colour: loss minus the pretrained model's (blue: better than pretrained)"
    )


def _task_legend(fig, info, colors, tasks: dict[str, str]) -> None:
    """The legend of the task colours (and of the pretrained and fused rows where present)."""
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[t], label=t) for t in dict.fromkeys(tasks.values())]
    kinds = set(info["model_kind"])
    if "pretrained" in kinds:
        handles.append(Patch(color=palette.PRETRAINED_COLOR, label="pretrained"))
    if kinds - {"pretrained", "finetuned", "prior"}:
        handles.append(Patch(color=palette.FUSED_COLOR, label="fused / other"))
    fig.legend(
        handles=handles,
        title="task (left bar: the model's,\ntop bar: the target's)",
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        title_fontsize=8,
        frameon=False,
    )


def heatmap(matrix: pd.DataFrame, tasks: dict[str, str], path: str | Path) -> None:
    """Models (rows, grouped by task and dataset) × targets (columns, grouped by task).

    Colour: the loss minus the pretrained model's loss on that target (diverging: blue below
    the pretrained model, red above, white equal); the numbers are the raw losses. The top
    row is the label prior (predicting the training label frequencies): red there means the
    pretrained model's probe beats the prior. Colour bars at the left and top give the task
    of the model and of the target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    rows, cols, loss, scaled, span, info = _heatmap_frame(matrix, tasks)
    colors = palette.task_colors(tasks.values())

    fig_h = max(3.0, 0.28 * len(rows) + 2.0)
    fig_w = max(5.0, 0.9 * len(cols) + 3.5)
    fig = plt.figure(figsize=(fig_w, fig_h))
    grid = fig.add_gridspec(
        2,
        3,
        width_ratios=[0.25, len(cols), 0.35],
        height_ratios=[0.25, len(rows)],
        wspace=0.03,
        hspace=0.03,
    )
    ax = fig.add_subplot(grid[1, 1])
    # grey: a pair not probed (probe.scope task; a fused base off its target)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#eeeeee")
    image = ax.imshow(
        scaled.to_numpy(dtype=float),
        aspect="auto",
        cmap=cmap,
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span),
        interpolation="nearest",
    )
    if len(rows) * len(cols) <= 600:
        _cell_numbers(ax, rows, cols, loss, scaled, span)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("target dataset (head trained and tested here)")
    _group_lines(ax, rows, cols, info, tasks)

    _task_bars(fig, grid, ax, rows, cols, info, colors, tasks)
    cax = fig.add_subplot(grid[1, 2])
    fig.colorbar(image, cax=cax, label="loss − pretrained (nats)")
    _task_legend(fig, info, colors, tasks)
    save_figure(fig, path)
    plt.close(fig)


def loss_vs_distance(matrix: pd.DataFrame, tasks: dict[str, str], path: str | Path) -> None:
    """One panel per target: probe loss on the target against the mean weight distance to its own
    models.

    Long because the legend is built by hand (one entry per relation, the pretrained star, fused
    models) and the formatter puts each plotting argument on a line of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    data = matrix.dropna(subset=["distance_to_target"]).copy()
    targets = _target_order(tasks, data["target_dataset"]) if len(data) else []
    ncols = min(4, max(len(targets), 1))
    nrows = max(1, -(-len(targets) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(targets) :]:
        ax.set_visible(False)
    if not targets:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(
            0.5,
            0.5,
            "no target has distances to its own fine-tuned models",
            ha="center",
            va="center",
            transform=axes[0, 0].transAxes,
        )
    data["relation"] = data.apply(relation, axis=1)
    for ax, target in zip(axes.flat, targets):
        part = data[data["target_dataset"] == target]
        for (rel, kind), group in part.groupby(["relation", "model_kind"]):
            ax.scatter(
                group["distance_to_target"],
                group["loss"],
                c=RELATION_COLORS[rel],
                marker=KIND_MARKERS.get(kind, "o"),
                s=60 if kind == "pretrained" else 28,
                edgecolors="white",
                linewidths=0.4,
                zorder=3 if rel == "same dataset" else 2,
            )
        ax.set_title(f"{target} ({tasks[target]})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes.flat[: len(targets)]):
        if i + ncols >= len(targets):  # the lowest panel of its column
            ax.set_xlabel("mean Euclidean distance to the target's models", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("probe test loss on target (nats)", fontsize=8)
    handles = [
        Line2D([], [], ls="", marker="o", color=c, label=r)
        for r, c in RELATION_COLORS.items()
        if r != "pretrained"
    ]
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            markersize=10,
            color=palette.PRETRAINED_COLOR,
            label="pretrained",
        )
    )
    if (data["model_kind"] == "fused").any():
        handles.append(
            Line2D([], [], ls="", marker="D", color="#555555", label="fused (colour: relation)")
        )
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        title="model relative to the target",
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write(
    probe_paths: Sequence[str | Path],
    tasks: dict[str, str],
    distances_path: str | Path,
    matrix_path: str | Path,
    heatmap_path: str | Path,
    distance_figure_path: str | Path,
) -> pd.DataFrame:
    """Rule entry: the matrix CSV and both figures."""
    matrix = probe_matrix(probe_paths, tasks)
    matrix["distance_to_target"] = distance_to_target(matrix, read_distances(distances_path))
    write_csv(matrix_path, matrix)
    heatmap(matrix, tasks, heatmap_path)
    loss_vs_distance(matrix, tasks, distance_figure_path)
    log.info(
        "probe matrix: %d models x %d targets",
        matrix["model"].nunique(),
        matrix["target_dataset"].nunique(),
    )
    return matrix
