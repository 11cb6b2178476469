"""The default's own design (config.yaml), simulated: its false-"holds" rate under each family's
null and its power at the effects its run measured (docs/example/summary.md, 2026-12-07).

The design is read from config.yaml: tasks of 4, 2 and 2 datasets × 2 seeds, 8 fusion targets × 2
seeds, one same-dataset line per dataset. The effects are the run's (README "Design of the
default"):

- dataset geometry: within-dataset / within-task distance 0.9415, within-task / across-tasks 0.9731;
- fusion: +5.81 points, target means with sd 6.17, seeds within a target sd 4.55;
- same-dataset lines: interior gain 0.0183 nats, its sd over the 8 datasets 0.0157 (one line each).

Power is asserted where the design reaches 80 % and, where it does not, pinned to the range the
README states, so that a change of design or rule that moves it cannot pass unnoticed.
"""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import cdist

from conftest import REPO
from test_calibration import (
    ALPHA,
    N_BOOT,
    assert_at_least,
    assert_at_most,
    draw_weights,
    family_holds,
    fusion_study,
    layout,
    lines_study,
    rate,
)
from weightspace.geometry import clusters, interpolation
from weightspace.stats import verdicts
from weightspace.train import fusion_outcomes

STUDIES = 200

WITHIN_DATASET_OVER_TASK = 0.9415
WITHIN_TASK_OVER_ACROSS = 0.9731
FUSION_GAIN, FUSION_TARGET_SD, FUSION_SEED_SD = 5.81, 6.17, 4.55
INTERIOR_GAIN, INTERIOR_GROUP_SD = 0.0183, 0.0157


@pytest.fixture(scope="module")
def design() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    tasks = Counter(entry["task"] for entry in config["datasets"].values())
    seeds = len(config["seeds"])
    lines = config["interpolation"]
    targets = config["fusion"]["targets"] or list(config["datasets"])
    return {
        "per_task": sorted(tasks.values(), reverse=True),
        "seeds": seeds,
        "targets": len(targets),
        "fusion_seeds": len(config["fusion"]["seeds"]),
        # every dataset a same-dataset group, its seed pairs up to pairs_per_relation
        "groups": len(config["datasets"]) if lines["fraction"]["same_dataset"] >= 1 else None,
        "lines": min(comb(seeds, 2), lines["pairs_per_relation"]),
        "test_examples": config["data"]["max_examples"]["test"],
    }


def scales() -> tuple[float, float]:
    """Dataset and task offsets (per coordinate, seed noise 1) that give the run's two ratios:
    distance² grows by 2·dim·scale² per level that differs."""
    dataset = np.sqrt(1 / WITHIN_DATASET_OVER_TASK**2 - 1)
    task = np.sqrt((1 + dataset**2) * (1 / WITHIN_TASK_OVER_ACROSS**2 - 1))
    return float(dataset), float(task)


def test_the_design_is_the_one_the_effects_were_measured_on(design):
    assert design == {
        "per_task": [4, 2, 2],
        "seeds": 2,
        "targets": 8,
        "fusion_seeds": 2,
        "groups": 8,
        "lines": 1,
        "test_examples": 256,
    }


def test_geometry_nulls_and_power_on_the_default_design(design):
    """Under a task-only structure no dataset claim holds, under dataset effects alone no task
    claim holds (each at most 5 % of studies); at the run's effects both dataset claims hold in
    >= 80 % of studies, the distance task claim too, and 1-NN by task almost never (nearest
    other-dataset neighbours barely feel a task offset this small)."""
    rng = np.random.default_rng(20)
    datasets, tasks = layout(design["per_task"], design["seeds"])
    plan = clusters.Design(datasets, tasks, 1000, 0)
    dataset_scale, task_scale = scales()
    false_dataset, false_task, both_dataset, task_distance, task_nn = [], [], [], [], []
    for _ in range(STUDIES):
        X = draw_weights(datasets, tasks, rng, task_scale=0.5, dim=2000)
        found = clusters.headline_claims(cdist(X, X), datasets, tasks, n_boot=N_BOOT, design=plan)
        false_dataset.append(family_holds(found, "dataset geometry"))
        X = draw_weights(datasets, tasks, rng, dataset_scale=0.5, dim=2000)
        found = clusters.headline_claims(cdist(X, X), datasets, tasks, n_boot=N_BOOT, design=plan)
        false_task.append(family_holds(found, "task geometry"))
        X = draw_weights(datasets, tasks, rng, task_scale, dataset_scale, dim=2000)
        found = clusters.headline_claims(cdist(X, X), datasets, tasks, n_boot=N_BOOT, design=plan)
        holds = found["verdict"] == verdicts.HOLDS
        both_dataset.append(bool(holds[["dataset_closer_than_task", "nn1_dataset"]].all()))
        task_distance.append(bool(holds["task_closer_than_across"]))
        task_nn.append(bool(holds["nn1_task"]))
    print("dataset null:", assert_at_most(false_dataset, ALPHA, "false holds"))
    print("task null:", assert_at_most(false_task, ALPHA, "false holds"))
    print("dataset power:", assert_at_least(both_dataset, 0.8, "power"))
    print("task distance power:", assert_at_least(task_distance, 0.8, "power"))
    share, text = rate(task_nn)
    print("1-NN by task power:", text)
    assert share <= 0.1, text


def test_fusion_null_and_power_on_the_default_design(design):
    """8 targets × 2 seeds: at most 5 % false holds with target effects of mean zero; at the run's
    gain and spread the claim holds in about 61 % of studies (README), below 80 %: the targets
    vary too much for 8 of them (a third seed barely helps: the spread is the targets')."""
    rng = np.random.default_rng(21)
    null, hits = [], []
    for _ in range(STUDIES):
        args = (design["targets"], design["fusion_seeds"])
        summary = fusion_study(rng, *args, 0.0, FUSION_TARGET_SD, FUSION_SEED_SD)
        null.append(family_holds(fusion_outcomes.claims(summary, n_boot=N_BOOT), "fusion"))
        summary = fusion_study(rng, *args, FUSION_GAIN, FUSION_TARGET_SD, FUSION_SEED_SD)
        hits.append(family_holds(fusion_outcomes.claims(summary, n_boot=N_BOOT), "fusion"))
    print("fusion null:", assert_at_most(null, ALPHA, "false holds"))
    share, text = rate(hits)
    print("fusion power:", text)
    assert 0.45 <= share <= 0.78, text


def test_lines_null_and_power_on_the_default_design(design):
    """One line in each of 8 datasets: at most 5 % false holds with group effects of mean zero;
    at the run's interior gain and spread the claim holds in about 65 % of studies (README)."""
    rng = np.random.default_rng(22)
    shape = (design["groups"], design["lines"], design["test_examples"])
    null, hits = [], []
    for _ in range(STUDIES):
        lines = lines_study(rng, *shape, 0.0, INTERIOR_GROUP_SD, 0.0)
        null.append(
            family_holds(
                interpolation.claims(lines, pd.DataFrame(), {}, N_BOOT), "lines and regions"
            )
        )
        lines = lines_study(rng, *shape, INTERIOR_GAIN, INTERIOR_GROUP_SD, 0.0)
        found = interpolation.claims(lines, pd.DataFrame(), {}, n_boot=N_BOOT)
        hits.append(
            found.set_index("claim_id").loc["interior_same_dataset", "verdict"] == verdicts.HOLDS
        )
    print("lines null:", assert_at_most(null, ALPHA, "false holds"))
    share, text = rate(hits)
    print("interior power:", text)
    assert 0.5 <= share <= 0.8, text
