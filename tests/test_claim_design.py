"""What a config's design can decide, said before anything runs: the floors the claims code will
meet."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.distance import cdist

from weightspace.geometry import clusters
from weightspace.plan import claim_design

REPO = Path(__file__).resolve().parents[1]


def filled(config: dict) -> dict:
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return config


@pytest.fixture(scope="module")
def default():
    return filled(yaml.safe_load((REPO / "config.yaml").read_text()))


def assert_decides_every_family(config: dict) -> list[dict]:
    """Every family the paper makes claims in is there, each headline claim's floor is below its
    Bonferroni threshold, and the start-up warns of nothing."""
    rows = claim_design.floors(config)
    assert {r["family"] for r in rows} == {
        "dataset geometry",
        "task geometry",
        "lines and regions",
        "fusion",
    }
    assert all(r["testable"] for r in rows), [r for r in rows if not r["testable"]]
    assert claim_design.warnings(config) == []
    return rows


def test_the_default_can_decide_every_headline_claim(default):
    """No headline claim of the default is 'not testable' from its design alone: every family the
    paper makes claims in is there, and each claim's floor is below its Bonferroni threshold."""
    rows = assert_decides_every_family(default)
    by_id = {r["claim_id"]: r for r in rows}
    # 9 datasets in tasks of 4, 2, 2, 1: 1,890 splits; 9 same-dataset groups, 12 region groups
    # (the one-dataset task's region is its dataset's), 9 fusion targets
    assert by_id["nn1_task"]["floor"] == pytest.approx(1 / 1890)
    assert by_id["interior_same_dataset"]["floor"] == pytest.approx(1 / 512)
    assert by_id["centroid_beats_own_members"]["floor"] == pytest.approx(1 / 4096)
    assert by_id["fusion_gain_all_full_n64"]["floor"] == pytest.approx(1 / 512)


def test_a_smaller_design_says_which_claims_it_cannot_decide(default):
    """The default before: 6 datasets in 3 pairs x 3 seeds, 4 fusion targets, no lines."""
    config = copy.deepcopy(default)
    for name in ("vader_amazon", "vader_nyt_editorials", "sms_spam"):
        del config["datasets"][name]
    config["seeds"] = [0, 1, 2]
    config["fusion"]["targets"] = [
        "rotten_tomatoes",
        "crowdflower_tweets",
        "vader_tweets",
        "trec_coarse",
    ]
    config["interpolation"]["enabled"] = False
    config["region"]["enabled"] = False
    rows = {r["claim_id"]: r for r in claim_design.floors(filled(config))}
    assert rows["dataset_closer_than_task"]["testable"] and rows["nn1_dataset"][
        "floor"
    ] == pytest.approx(1 / 1000)
    for claim in ("task_closer_than_across", "nn1_task"):
        assert not rows[claim]["testable"] and rows[claim]["floor"] == pytest.approx(1 / 15)
    assert (
        not rows["fusion_gain_all_full_n64"]["testable"]
        and rows["fusion_gain_all_full_n64"]["floor"] == 1 / 16
    )
    warnings = claim_design.warnings(filled(config))
    assert len(warnings) == 3
    assert any(
        "nn1_task" in w
        and "15 ways to split 6 datasets into tasks of 2, 2, 2" in w
        and "more datasets per task" in w
        for w in warnings
    )
    assert any(
        "fusion_gain_all_full_n64" in w and "4 targets (16 sign patterns)" in w for w in warnings
    )


def test_a_design_with_enough_units_decides_every_headline_claim(default):
    config = copy.deepcopy(default)
    names = [f"d{i}" for i in range(9)]
    config["datasets"] = {
        n: {"task": f"t{i // 3}", "builtin": "rotten_tomatoes"} for i, n in enumerate(names)
    }
    config["fusion"]["targets"] = names[:7]
    config["interpolation"].update(
        enabled=True,
        fraction={"same_dataset": 1.0, "same_task": 0.0, "cross_task": 0.0, "pretrained": 0.0},
    )
    config["region"].update(enabled=True, groups=["dataset"])
    assert_decides_every_family(filled(config))


def test_the_floors_are_the_ones_the_claims_meet(default):
    """The design's floors equal the p floors the claims code reports on a study of that design."""
    rng = np.random.default_rng(0)
    datasets = np.repeat(sorted(default["datasets"]), len(default["seeds"]))
    tasks = np.array([default["datasets"][d]["task"] for d in datasets])
    X = rng.normal(size=(len(datasets), 16))
    found = clusters.headline_claims(cdist(X, X), datasets, tasks, n_boot=20)
    for row in claim_design.floors(default):
        if row["family"] in ("dataset geometry", "task geometry"):
            assert found.loc[row["claim_id"], "p_floor"] == pytest.approx(row["floor"])


def test_a_study_beyond_a_floats_range_of_relabelings_is_said_not_raised(default):
    """106 datasets x 5 seeds in 3 tasks: ~1e700 ways to reassign the models, more than a float
    holds. The start-up check then said nothing: 1.0 / that count raised OverflowError in
    rules/common.smk, before any job."""
    config = copy.deepcopy(default)
    tasks = [default["datasets"][d]["task"] for d in default["datasets"]]
    config["datasets"] = {
        f"d{i:03d}": {"task": tasks[i % len(tasks)], "builtin": "rotten_tomatoes"}
        for i in range(106)
    }
    config["seeds"] = [0, 1, 2, 3, 4]
    rows = {r["claim_id"]: r for r in claim_design.floors(filled(config))}
    dataset_row = rows["nn1_dataset"]
    assert dataset_row["testable"] and dataset_row["floor"] == 0.0
    mantissa, _, exponent = dataset_row["design"].split()[0].partition("e+")
    assert 1 <= float(mantissa) < 10 and int(exponent) > 308
    assert "ways to reassign 530 models" in dataset_row["design"]
    assert claim_design._count(10**7) == "1.00e+07"
    assert claim_design._count(123_456_789) == "1.23e+08"
    assert claim_design._count(10**400) == "1.00e+400"
    assert claim_design._count(9996 * 10**400) == "1.00e+404"
    claim_design.warnings(filled(config))
