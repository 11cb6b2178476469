"""Colours that mean the same thing in every figure: one colour-blind-safe colour per task."""

from __future__ import annotations

PRETRAINED_COLOR = "#000000"
FUSED_COLOR = "#7f7f7f"


def task_colors(tasks) -> dict[str, str]:
    """Task -> hex colour, from seaborn's colour-blind palette, stable under task order."""
    import seaborn as sns

    names = sorted(set(t for t in tasks if t))
    colors = sns.color_palette("colorblind", n_colors=max(len(names), 1)).as_hex()
    return {name: colors[i % len(colors)] for i, name in enumerate(names)}


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*"]


def dataset_markers(datasets) -> dict[str, str]:
    names = sorted(set(d for d in datasets if d))
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
