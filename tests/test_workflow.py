"""The real workflow on a tiny study: the default config plans, the tiny one runs end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors import safe_open

from conftest import REPO
from tiny_study import planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow


def test_default_config_plans_one_finetune_per_dataset_and_seed(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    jobs = planned_jobs(tmp_path)
    assert jobs["finetune"] == len(config["datasets"]) * len(config["seeds"])
    assert jobs["prepare_dataset"] == len(config["datasets"])
    assert jobs["extract_weights"] == jobs["finetune"]
    assert len(config["datasets"]) >= 6
    assert len({d["task"] for d in config["datasets"].values()}) >= 3


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["finetune"].pop("batch_size"), "batch_size"),
        (lambda c: c["finetune"].update(learning_rate="fast"), "learning_rate"),
        (lambda c: c["datasets"]["alpha"].update(tsk="x"), "tsk"),
    ],
)
def test_bad_config_stops_with_the_key_named(tmp_path, mutate, key):
    config = tiny_config(tmp_path)
    mutate(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_config(root, tiny_config(root))
    snakemake(root, "--cores", "2")
    return root


def test_tiny_study_produces_every_output(finished_study):
    root = finished_study
    results = root / "results"
    for dataset in ("alpha", "beta", "gamma_pairs"):
        meta = json.loads((results / "data" / dataset / "meta.json").read_text())
        assert meta["num_labels"] == 2 and meta["label_names"] == ["neg", "pos"]
        for split in ("train", "validation", "test"):
            frame = pd.read_parquet(results / "data" / dataset / f"{split}.parquet")
            assert len(frame) > 0
            assert ("text_pair" in frame.columns) == dataset.endswith("_pairs")
        for seed in (0, 1):
            run = results / "finetune" / dataset / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["steps"] == 6 and 0 <= metrics["test"]["accuracy"] <= 1
            assert (run / "train_log.csv").exists() and (run / "model.safetensors").exists()
            with safe_open(str(results / "weights" / f"{dataset}.seed{seed}.safetensors"), "pt") as f:
                assert not any(k.startswith("classifier") for k in f.keys())
            assert (results / "benchmarks" / "finetune" / dataset / f"seed{seed}.tsv").exists()
            assert "train" in (results / "logs" / "finetune" / dataset / f"seed{seed}.log").read_text()
    assert (results / "weights" / "pretrained.safetensors").exists()


def test_finished_study_has_nothing_left_to_do(finished_study):
    assert planned_jobs(finished_study) == {}
