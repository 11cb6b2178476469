"""Where-to-start tables and figure: the rule entry that reads the rankings and the fine-tunes."""

from __future__ import annotations

import json

import pandas as pd

from weightspace.atomic import write_csv
from weightspace.plan.fusion import run_of_path
from weightspace.report.start_figures import start_figure
from weightspace.train import start_outcomes


def write(
    rankings,
    metrics_files,
    runs_path,
    targets_path,
    outcomes_path,
    figure_path,
    top_k: int,
    n_boot: int = 1000,
    seed: int = 0,
) -> None:
    """Rule entry: the runs, the per-target outcomes, the pooled outcomes, the figure."""
    ranking = pd.concat([pd.read_csv(path) for path in rankings], ignore_index=True)
    metrics = []
    for path in metrics_files:
        run = run_of_path(path)
        metrics.append((run.target, run.base, run.size, json.loads(open(path).read())))
    runs = start_outcomes.run_table(metrics)
    targets = start_outcomes.target_outcomes(ranking, runs, top_k, bootstrap=n_boot, seed=seed)
    write_csv(runs_path, runs)
    write_csv(targets_path, targets)
    write_csv(outcomes_path, start_outcomes.pooled_outcomes(targets, bootstrap=n_boot, seed=seed))
    start_figure(ranking, runs, top_k, figure_path)
