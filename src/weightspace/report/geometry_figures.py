"""Figures of the weight geometry: the t-SNE/PCA map of the models and the clustered distance
heatmap.

Colour = task (palette.task_colors, the same in every figure), marker = dataset; the
pretrained model is a black star, fused models grey crosses, mix models small grey dots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from weightspace import study
from weightspace.atomic import save_figure
from weightspace.report.palette import FUSED_COLOR, PRETRAINED_COLOR, dataset_markers, task_colors

METRIC_WORDS = {"euclidean": "Euclidean distance", "cosine": "cosine distance"}
SPACE_WORDS = {
    "raw": "flattened encoder weights",
    "task_vector": "task vectors (weights - pretrained)",
}
SPECIAL = {  # kind -> (colour, marker, size, label)
    "pretrained": (PRETRAINED_COLOR, "*", 260, "pretrained"),
    "fused": (FUSED_COLOR, "X", 110, "fused"),
    "mix": (FUSED_COLOR, ".", 50, "mix (line/plane/region point)"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _what(frame: pd.DataFrame) -> str:
    metric, space = frame["metric"].iloc[0], frame["space"].iloc[0]
    return f"{METRIC_WORDS.get(metric, metric)} between {SPACE_WORDS.get(space, space)}"


BROUGHT_EDGE = "#d62728"  # a brought model's outline: labelled ones keep their task's colour


def _scatter(ax, frame: pd.DataFrame, x: str, y: str, colors: dict, markers: dict) -> None:
    for row in frame.itertuples():
        if row.kind == "brought":
            labelled = isinstance(row.task, str) and isinstance(row.dataset, str)
            ax.scatter(
                getattr(row, x),
                getattr(row, y),
                c=colors.get(row.task, FUSED_COLOR) if labelled else FUSED_COLOR,
                marker=markers.get(row.dataset, "D") if labelled else "D",
                s=70,
                edgecolors=BROUGHT_EDGE,
                linewidths=1.4,
                zorder=2,
            )
            if not labelled:  # no label to read it by: its name
                ax.annotate(
                    row.model_id.removeprefix("brought."),
                    (getattr(row, x), getattr(row, y)),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
        elif row.kind in SPECIAL:
            color, marker, size, _ = SPECIAL[row.kind]
            ax.scatter(
                getattr(row, x),
                getattr(row, y),
                c=color,
                marker=marker,
                s=size,
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
            )
        else:
            ax.scatter(
                getattr(row, x),
                getattr(row, y),
                c=colors.get(row.task, FUSED_COLOR),
                marker=markers.get(row.dataset, "o"),
                s=70,
                edgecolors="black",
                linewidths=0.4,
                zorder=2,
            )
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_handles(frame: pd.DataFrame, colors: dict, markers: dict):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, edgecolor="black", label=f"task: {t}") for t, c in colors.items()]
    handles += [
        Line2D(
            [],
            [],
            marker=m,
            linestyle="",
            color="#bbbbbb",
            markeredgecolor="black",
            markersize=8,
            label=f"dataset: {d}",
        )
        for d, m in markers.items()
    ]
    if (frame["kind"] == "brought").any():
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                linestyle="",
                color=FUSED_COLOR,
                markeredgecolor=BROUGHT_EDGE,
                markersize=8,
                label="brought (red outline; named where unlabelled)",
            )
        )
    for kind, (color, marker, size, label) in SPECIAL.items():
        if (frame["kind"] == kind).any():
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=marker,
                    linestyle="",
                    color=color,
                    markersize=np.sqrt(size),
                    label=label,
                )
            )
    return handles


def projection_figure(tsne: pd.DataFrame, pca: pd.DataFrame, path) -> None:
    """t-SNE (left) and PCA (right) of the models, coloured by task, marked by dataset."""
    plt = _pyplot()
    ft = tsne[study.labelled(tsne)]
    colors = task_colors(ft["task"].dropna())
    markers = dataset_markers(ft["dataset"].dropna())
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    _scatter(left, tsne, "x", "y", colors, markers)
    perplexity = tsne["perplexity"].iloc[0]
    agreement = tsne["nn1_dataset_plane"].iloc[0] if "nn1_dataset_plane" in tsne else np.nan
    title = (
        f"t-SNE of the fine-tuned{' and brought' if (tsne['kind'] == 'brought').any() else ''} "
        f"models (perplexity {perplexity:.3g})"
        if np.isfinite(perplexity)
        else "t-SNE (too few models)"
    )
    if np.isfinite(agreement):
        title += f"\nnearest neighbour of the same dataset: {agreement:.0%}"
    left.set_title(title)
    left.set_xlabel("t-SNE 1")
    left.set_ylabel("t-SNE 2")
    _scatter(right, pca, "pc1", "pc2", colors, markers)
    right.set_title("PCA of all models")
    right.set_xlabel(f"PC1 ({100 * pca['explained_pc1'].iloc[0]:.1f}% of variance)")
    right.set_ylabel(f"PC2 ({100 * pca['explained_pc2'].iloc[0]:.1f}% of variance)")
    fig.legend(
        handles=_legend_handles(pca, colors, markers),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(f"Where {len(pca)} models lie in weight space: {_what(tsne)}", fontsize=13)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _bar_colors(tab: pd.DataFrame) -> pd.DataFrame:
    """Per model, the colour of its task and of its dataset (pretrained black, fused/mix grey)."""
    import seaborn as sns

    ft = tab[study.labelled(tab)]
    t_colors = task_colors(ft["task"].dropna())
    names = sorted(ft["dataset"].dropna().unique())
    # a palette unlike the task colours, so a dataset bar is not read as a task
    d_palette = sns.color_palette(
        "Set2" if len(names) <= 8 else "husl", n_colors=max(len(names), 1)
    ).as_hex()
    d_colors = {d: d_palette[i % len(d_palette)] for i, d in enumerate(names)}

    def pick(row, mapping, key):
        if row["kind"] == "pretrained":
            return PRETRAINED_COLOR
        return mapping.get(row[key], FUSED_COLOR)

    return (
        pd.DataFrame(
            {
                "task": tab.apply(pick, axis=1, args=(t_colors, "task")),
                "dataset": tab.apply(pick, axis=1, args=(d_colors, "dataset")),
            },
            index=tab.index,
        ),
        t_colors,
        d_colors,
    )


def distance_heatmap(D: pd.DataFrame, table, path, primary: dict | None = None) -> None:
    """Seaborn clustermap of the distance matrix (average linkage on the distances themselves)."""
    import seaborn as sns
    from matplotlib.patches import Patch
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    from weightspace.geometry.clusters import table_frame

    plt = _pyplot()
    primary = primary or {"metric": "euclidean", "space": "raw"}
    tab = table_frame(table, list(D.index))
    bars, t_colors, d_colors = _bar_colors(tab)
    n = len(D)
    values = D.to_numpy(dtype=float)
    link = (
        linkage(squareform((values + values.T) / 2, checks=False), method="average")
        if n > 2
        else None
    )
    size = min(22, max(7, 0.32 * n + 4))
    grid = sns.clustermap(
        D,
        row_linkage=link,
        col_linkage=link,
        row_cluster=link is not None,
        col_cluster=link is not None,
        row_colors=bars,
        col_colors=bars,
        cmap="viridis",
        xticklabels=True,
        yticklabels=True,
        figsize=(size, size),
        cbar_kws={"label": METRIC_WORDS.get(primary["metric"], primary["metric"])},
        dendrogram_ratio=0.12,
        colors_ratio=0.025,
    )
    fontsize = 9 if n <= 30 else max(4, 9 - (n - 30) // 15)
    grid.ax_heatmap.tick_params(labelsize=fontsize)
    grid.ax_heatmap.set_xlabel("")
    grid.ax_heatmap.set_ylabel("")
    handles = [Patch(facecolor=c, label=f"task: {t}") for t, c in t_colors.items()]
    handles += [Patch(facecolor=c, label=f"dataset: {d}") for d, c in d_colors.items()]
    handles += [Patch(facecolor=PRETRAINED_COLOR, label="pretrained")]
    if (tab["kind"].isin(["fused", "mix"])).any():
        handles.append(Patch(facecolor=FUSED_COLOR, label="fused / mix"))
    grid.figure.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.8), frameon=False, fontsize=9
    )
    what = (
        f"{METRIC_WORDS.get(primary['metric'], primary['metric'])} between "
        f"{SPACE_WORDS.get(primary['space'], primary['space'])}"
    )
    grid.figure.suptitle(
        f"Pairwise {what}, {n} models, average-linkage clustering", y=1.02, fontsize=13
    )
    save_figure(grid.figure, path)
    plt.close(grid.figure)
