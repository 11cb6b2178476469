"""Jobs sized for their work: the default study's job count, and a paper-sized study whose jobs grow
as models + datasets (not their product) and that plans in seconds."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, packaged_model_folder
from tiny_study import dry_run_jobs, planned_jobs
from weightspace import study
from weightspace.plan import fusion

pytestmark = pytest.mark.workflow

MAX_DEFAULT_JOBS = 150
# the rules of opt-in stages (config keys models, fusion.merges, where_to_start): not in the default
OPT_IN = {"import_model", "merge", "merge_summary", "rank_starts", "start_summary"}


def stored_models(config: dict) -> int:
    return 1 + len(study.finetuned_ids(config)) + len(fusion.fused_bases(config))


def test_default_study_has_at_most_150_jobs(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    jobs = planned_jobs(tmp_path)
    total = sum(jobs.values())
    assert total <= MAX_DEFAULT_JOBS, jobs
    assert "features" not in jobs and "probe" not in jobs  # no job per (model, dataset) pair
    # one per stored model: every dataset inside
    assert jobs["evaluate_model"] == stored_models(config)
    # each probe chooses its L2 on its own model's features, inside its job
    assert "probe_l2" not in jobs
    # lines/planes per dataset, regions
    assert jobs.get("evaluate_group", 0) <= 4 * len(config["datasets"]) + 3


def test_the_default_dag_runs_every_stage_and_draws_every_figure(tmp_path):
    """The default is the whole mission: every rule of the workflow has a job in its DAG (lines,
    planes, regions, the full probe matrix and fusion included), and the summary reads every
    figure."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    jobs = planned_jobs(tmp_path)
    rules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        rules |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), flags=re.M))
    assert rules and rules - OPT_IN <= set(jobs), sorted(rules - OPT_IN - set(jobs))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    # the full probe matrix: one evaluation job per stored model, each on every dataset
    assert config["probe"]["scope"] == "all"
    jobs_of = {job["rule"]: job for job in dry_run_jobs(tmp_path)}
    figures = {Path(f).name for f in jobs_of["summary"]["input"] if f.endswith(".png")}
    assert figures == {
        "tsne.png",
        "distance_heatmap.png",
        "probe_loss_heatmap.png",
        "interpolation.png",
        "planes.png",
        "region.png",
        "fusion.png",
    }


def test_the_opt_in_stages_join_the_default_through_their_overlay(tmp_path):
    """Brought models, merges and where to start are opt-in (issue 27: the evaluation runs in its
    own config, not in the time-bounded default): configs/where-to-start.yaml on top of the default,
    with one brought model, has a job of every one of their rules."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "configs/where-to-start.yaml").read_text())
    config["where_to_start"] = overlay["where_to_start"]
    config["fusion"]["merges"] = overlay["fusion"]["merges"]
    config["models"] = {"own": {"path": str(packaged_model_folder())}}  # the base itself: it fits
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tmp_path)
    assert OPT_IN <= set(jobs), sorted(OPT_IN - set(jobs))
    assert jobs["rank_starts"] == 4 and jobs["merge"] == 3 * len(config["datasets"])
    # evaluation mode fine-tunes every candidate of its 4 targets (the pretrained start, 16 other
    # datasets' fine-tunes, the brought model, the fused base and 3 merges), each (target, start)
    # once: the pretrained, fused and merged starts' runs are fusion's (9 targets x 5 starts)
    assert jobs["finetune_from"] == 9 * 5 + 4 * 17


def test_a_stage_that_is_off_draws_no_figure(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["interpolation"]["planes"]["enabled"] = False
    config["region"]["enabled"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    jobs_of = {job["rule"]: job for job in dry_run_jobs(tmp_path)}
    drawn = {Path(f).name for f in jobs_of["interpolation_summary"]["output"] if f.endswith(".png")}
    assert drawn == {"interpolation.png"}
    read = {Path(f).name for f in jobs_of["summary"]["input"] if f.endswith(".png")}
    assert "planes.png" not in read and "region.png" not in read and "interpolation.png" in read


def paper_config(n_datasets: int, seeds: int = 5) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    tasks = ["general", "nli", "sentiment", "topic", "twitter"]
    config["datasets"] = {
        f"d{i:02d}_x": {"task": tasks[i % len(tasks)], "builtin": "rotten_tomatoes"}
        for i in range(n_datasets)
    }
    config["seeds"] = list(range(seeds))
    config["fusion"]["targets"] = ["d00_x", "d01_x", "d02_x"]
    # the whole DAG: lines, regions and the full probe matrix (the 30-minute default leaves them
    # out)
    config["interpolation"]["enabled"] = config["region"]["enabled"] = True
    config["probe"]["scope"] = "all"
    return config


def test_a_paper_sized_study_grows_as_models_plus_datasets(tmp_path):
    counts = {}
    for n in (18, 36):
        root = tmp_path / str(n)
        root.mkdir()
        config = paper_config(n)
        (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        started = time.perf_counter()
        jobs = planned_jobs(root)
        seconds = time.perf_counter() - started
        counts[n] = jobs
        models = stored_models(config)
        assert jobs["evaluate_model"] == models and "probe_l2" not in jobs
        assert jobs["evaluate_group"] <= 4 * n + 2 * len(
            {d["task"] for d in config["datasets"].values()}
        )
        print(f"{n} datasets x 5 seeds: {sum(jobs.values())} jobs, planned in {seconds:.1f} s")
        if n == 36:
            # measured ~11 s on a busy 2-core machine
            assert seconds <= 60, f"planning took {seconds:.1f} s"
    # doubling the datasets doubles the jobs (models + datasets), it does not quadruple them (models
    # x datasets)
    ratio = sum(counts[36].values()) / sum(counts[18].values())
    assert ratio < 2.3, (ratio, counts)
