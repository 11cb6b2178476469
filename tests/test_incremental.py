"""Incremental reruns on a finished tiny study: adding a dataset or a seed plans only the new jobs,
changing one dataset's config reruns only that dataset's jobs, removing a dataset keeps its cached
artifacts.

Runs and dry runs target the per-dataset artifacts (tiny_study.core_targets: data, fine-tunes,
encoder weights) and check exact job counts for those rules; the last dry run covers the whole
workflow.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tiny_study import core_targets, dry_run_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

PER_DATASET = ("prepare_dataset", "finetune")  # a fine-tune writes its encoder weights too
SHARED = ("base_model", "extract_pretrained_weights")


def artifacts(root: Path) -> dict[str, int]:
    """Every cached artifact file -> its modification time (ns)."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for folder in ("base", "data", "finetune", "weights")
        for p in (root / "results" / folder).rglob("*")
        if p.is_file()
    }


def belongs(path: str, dataset: str) -> bool:
    """Is this file one of the dataset's (results/data/alpha/..., .../alpha/seed0/...,
    weights/alpha.seed0...)?"""
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

    # add a dataset: only its prep, fine-tune and weights; running them leaves every old artifact as
    # it was
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

    # add a seed (dry run): a fine-tune per dataset (it writes the encoder weights too), all for the
    # new seed
    jobs = plan(root, dict(copy.deepcopy(config), seeds=[0, 1]))
    assert counts(jobs) == {"finetune": 2}
    assert not any(job["rule"] in SHARED for job in jobs)
    assert all("seed1" in path for path in outputs(jobs))

    # change one dataset's config (dry run): its prep, fine-tune and weights rerun (params trigger),
    # nothing else
    changed = copy.deepcopy(config)
    changed["datasets"]["alpha"]["max_examples"] = {"train": 40, "validation": 16, "test": 32}
    jobs = plan(root, changed)
    assert counts(jobs) == dict.fromkeys(PER_DATASET, 1)
    assert not any(job["rule"] in SHARED for job in jobs)
    assert all(belongs(path, "alpha") for path in outputs(jobs))
    assert "results/data/alpha/meta.json" in outputs(jobs)

    # remove a dataset: nothing to run, its cached artifacts stay, and no job of the whole workflow
    # touches them
    before = artifacts(root)
    removed = copy.deepcopy(config)
    del removed["datasets"]["gamma_pairs"]
    assert plan(root, removed) == []
    run(root, removed)
    assert artifacts(root) == before
    assert any(belongs(k, "gamma_pairs") for k in before)
    for job in dry_run_jobs(root):
        assert not any(belongs(path, "gamma_pairs") for path in job["input"] + job["output"]), job


# ------------------------------------------------- the probe stage: one job per model, cached pairs


def evaluation_targets(config: dict) -> list[str]:
    """Every stored model's evaluation results (pretrained and fine-tunes)."""
    models = ["pretrained"] + [f"{d}.seed{s}" for d in config["datasets"] for s in config["seeds"]]
    return [f"results/probe/models/{m}.json" for m in models]


def job_infos(root: Path) -> dict[str, dict]:
    from weightspace.probe import store

    return {
        p.stem: store.job_info(p) for p in (root / "results" / "probe" / "models").glob("*.json")
    }


def test_evaluation_jobs_compute_only_missing_pairs(tmp_path):
    from weightspace.probe import store

    root = tmp_path
    full = tiny_config(root, {"alpha": "sentiment", "gamma_pairs": "nli"}, seeds=(0,))
    config = copy.deepcopy(full)
    del config["datasets"]["gamma_pairs"]
    write_config(root, config)
    snakemake(root, "--cores", "2", *evaluation_targets(config))
    infos = job_infos(root)
    assert set(infos) == {"pretrained", "alpha.seed0"}
    assert (
        infos["pretrained"]["features_computed"] == 1
        and infos["pretrained"]["probes_computed"] == 1
    )
    assert (
        infos["alpha.seed0"]["features_computed"] == 1
        and infos["alpha.seed0"]["probes_computed"] == 1
    )

    # add a dataset: one evaluation job per model and no other probe job (each probe chooses its own
    # L2); the old models compute the new pair only
    write_config(root, full)
    jobs = dry_run_jobs(root, *evaluation_targets(full))
    rules = sorted(job["rule"] for job in jobs if job["rule"].startswith(("probe", "evaluate")))
    assert rules == ["evaluate_model"] * 3
    old = store.read([root / "results/probe/models/alpha.seed0.json"])
    snakemake(root, "--cores", "2", *evaluation_targets(full))
    infos = job_infos(root)
    assert infos["alpha.seed0"]["probes_cached"] == 1
    assert (
        infos["alpha.seed0"]["features_computed"] == 1
        and infos["alpha.seed0"]["probes_computed"] == 1
    )
    assert (
        infos["pretrained"]["probes_cached"] == 1 and infos["pretrained"]["features_computed"] == 1
    )
    assert infos["gamma_pairs.seed0"]["features_computed"] == 2
    new = store.read([root / "results/probe/models/alpha.seed0.json"])
    # the cached result, as it was
    assert new[("alpha.seed0", "alpha")] == old[("alpha.seed0", "alpha")]
    assert set(new) == {("alpha.seed0", "alpha"), ("alpha.seed0", "gamma_pairs")}

    # a deleted output: the rerun reads every pair from the cache
    (root / "results/probe/models/gamma_pairs.seed0.json").unlink()
    snakemake(root, "--cores", "2", *evaluation_targets(full))
    info = job_infos(root)["gamma_pairs.seed0"]
    assert (
        info["probes_cached"] == 2
        and info.get("features_computed", 0) == 0
        and info.get("probes_computed", 0) == 0
    )

    # change one dataset's entry: its pairs are recomputed, the other dataset's come from the cache
    changed = copy.deepcopy(full)
    changed["datasets"]["gamma_pairs"]["max_examples"] = {"train": 40, "validation": 16, "test": 24}
    write_config(root, changed)
    snakemake(root, "--cores", "2", *evaluation_targets(changed))
    infos = job_infos(root)
    assert (
        infos["alpha.seed0"]["probes_cached"] == 1
        and infos["alpha.seed0"]["features_computed"] == 1
    )
    assert (
        infos["pretrained"]["probes_cached"] == 1 and infos["pretrained"]["features_computed"] == 1
    )
    assert (
        store.read([root / "results/probe/models/pretrained.json"])[("pretrained", "gamma_pairs")][
            "n_test"
        ]
        == 24
    )

    # remove a dataset: the remaining jobs rerun from the cache alone and drop its pairs
    removed = copy.deepcopy(changed)
    del removed["datasets"]["gamma_pairs"]
    write_config(root, removed)
    snakemake(root, "--cores", "2", *evaluation_targets(removed))
    infos = job_infos(root)
    for model in ("pretrained", "alpha.seed0"):
        assert infos[model]["probes_cached"] == 1 and infos[model].get("probes_computed", 0) == 0
        assert set(store.read([root / f"results/probe/models/{model}.json"])) == {(model, "alpha")}
