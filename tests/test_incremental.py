"""Incremental reruns on a finished tiny study: adding a dataset or a seed plans only the new jobs, changing one
dataset's config reruns only that dataset's jobs, removing a dataset keeps its cached artifacts.

Runs and dry runs target the per-dataset artifacts (tiny_study.core_targets: data, fine-tunes, encoder
weights) and check exact job counts for those rules; the last dry run covers the whole workflow.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tiny_study import core_targets, dry_run_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

PER_DATASET = ("prepare_dataset", "finetune", "extract_weights")
SHARED = ("base_model", "extract_pretrained_weights")


def artifacts(root: Path) -> dict[str, int]:
    """Every cached artifact file -> its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for folder in ("base", "data", "finetune", "weights") for p in (root / "results" / folder).rglob("*")
            if p.is_file()}


def belongs(path: str, dataset: str) -> bool:
    """Is this file one of the dataset's (results/data/alpha/..., .../alpha/seed0/..., weights/alpha.seed0...)?"""
    return any(part == dataset or part.startswith(f"{dataset}.") for part in Path(path).parts)


def counts(jobs: list[dict]) -> dict[str, int]:
    """Jobs per rule, for the rules every study has per dataset and seed."""
    return {rule: n for rule in PER_DATASET if (n := sum(job["rule"] == rule for job in jobs))}


def outputs(jobs: list[dict]) -> list[str]:
    return [path for job in jobs for path in job["output"]]


def run(root: Path, config: dict) -> None:
    write_config(root, config)
    snakemake(root, "--cores", "2", *core_targets(config))


def plan(root: Path, config: dict) -> list[dict]:
    write_config(root, config)
    return dry_run_jobs(root, *core_targets(config))


def test_adding_changing_and_removing_datasets_and_seeds(tmp_path):
    root = tmp_path
    full = tiny_config(root, {"alpha": "sentiment", "gamma_pairs": "nli"}, seeds=(0,))
    config = copy.deepcopy(full)
    del config["datasets"]["gamma_pairs"]
    run(root, config)  # the finished study: one dataset, one seed

    # add a dataset: only its prep, fine-tune and weights; running them leaves every old artifact as it was
    before = artifacts(root)
    config = copy.deepcopy(full)
    jobs = plan(root, config)
    assert counts(jobs) == dict.fromkeys(PER_DATASET, 1)
    assert not any(job["rule"] in SHARED for job in jobs)
    assert all(belongs(path, "gamma_pairs") for path in outputs(jobs))
    run(root, config)
    after = artifacts(root)
    assert {k: after[k] for k in before} == before, "an existing artifact was rewritten"
    assert any(belongs(k, "gamma_pairs") for k in after.keys() - before.keys())

    # add a seed (dry run): a fine-tune and a weights job per dataset, all for the new seed
    jobs = plan(root, dict(copy.deepcopy(config), seeds=[0, 1]))
    assert counts(jobs) == {"finetune": 2, "extract_weights": 2}
    assert not any(job["rule"] in SHARED for job in jobs)
    assert all("seed1" in path for path in outputs(jobs))

    # change one dataset's config (dry run): its prep, fine-tune and weights rerun (params trigger), nothing else
    changed = copy.deepcopy(config)
    changed["datasets"]["alpha"]["max_examples"] = {"train": 40, "validation": 16, "test": 32}
    jobs = plan(root, changed)
    assert counts(jobs) == dict.fromkeys(PER_DATASET, 1)
    assert not any(job["rule"] in SHARED for job in jobs)
    assert all(belongs(path, "alpha") for path in outputs(jobs))
    assert "results/data/alpha/meta.json" in outputs(jobs)

    # remove a dataset: nothing to run, its cached artifacts stay, and no job of the whole workflow touches them
    before = artifacts(root)
    removed = copy.deepcopy(config)
    del removed["datasets"]["gamma_pairs"]
    assert plan(root, removed) == []
    run(root, removed)
    assert artifacts(root) == before
    assert any(belongs(k, "gamma_pairs") for k in before)
    for job in dry_run_jobs(root):
        assert not any(belongs(path, "gamma_pairs") for path in job["input"] + job["output"]), job
