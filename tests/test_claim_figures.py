"""The line and fusion figures draw the intervals their claims rest on, not only the spread of the
data."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from test_controls import N_BOOT, fusion_summary, lines_frame
from weightspace.geometry import interpolation
from weightspace.report import fusion_tables
from weightspace.train import fusion_outcomes


def legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_line_figure_bands_are_the_bootstrap_interval_of_the_mean_loss():
    rng = np.random.default_rng(0)
    basin = lambda alpha, base: base + 0.4 * (alpha - 0.5) ** 2  # noqa: E731
    lines = lines_frame({"same_dataset": basin}, 200, rng)
    lines["loss"] = [float(np.mean(v)) for v in lines["test_losses"]]
    band = interpolation._mean_loss_intervals(lines, n_boot=N_BOOT)
    means = lines.groupby("alpha")["loss"].mean()
    assert band["mean"].to_numpy() == pytest.approx(means.to_numpy(), rel=1e-12)
    assert (band["low"] < band["mean"]).all() and (band["mean"] < band["high"]).all()
    # a sampling interval over test examples: four times the examples, about half the width
    more = lines_frame({"same_dataset": basin}, 800, rng)
    ratio = (
        interpolation._mean_loss_intervals(more, n_boot=N_BOOT).eval("high - low")
    ) / band.eval("high - low")
    assert ratio.between(0.35, 0.7).all(), ratio

    fig = interpolation.line_figure(lines, n_boot=N_BOOT)
    assert any("95% interval of the mean" in t for t in legend_texts(fig))
    # without per-example losses the figure falls back to the range over lines
    fig = interpolation.line_figure(lines.drop(columns="test_losses"), n_boot=N_BOOT)
    assert any("range over lines" in t for t in legend_texts(fig))


def test_fusion_figure_shows_the_claims_interval_and_every_seed():
    rng = np.random.default_rng(1)
    summary = fusion_summary(3 + rng.normal(0, 1, size=12), 4, 3)
    wins, paired = fusion_outcomes.wins_table(summary), fusion_outcomes.paired_gains(summary)
    found = fusion_outcomes.claims(summary, n_boot=N_BOOT)
    row = found.iloc[0]
    fig = fusion_tables.figure(wins, paired, found)
    label = (
        f"all: mean {row['effect']:+.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}], "
        f"p {row['p_value']:.3g}, {row['verdict']}"
    )
    assert label in legend_texts(fig)
    dots = sum(
        len(c.get_offsets()) for c in fig.axes[0].collections if isinstance(c, PathCollection)
    )
    assert dots == len(paired) == 12  # one dot per (target, seed) run
    # from the tables alone: bars, no band
    assert not any("mean" in t for t in legend_texts(fusion_tables.figure(wins)))
