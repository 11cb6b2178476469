"""The real thing on a small scale: the packaged MiniLM base fine-tuned on a real packaged dataset
(TREC coarse, 6 question types) learns it, and the linear probe on the fine-tuned encoder's frozen
features finds it too, clearly above chance; with the labels shuffled it does not. A broken pipeline
(labels misaligned with texts, a head that never trains, features of the wrong model) fails here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weightspace.data import prepare
from weightspace.model import base_model, weights
from weightspace.probe import features, linear
from weightspace.train import finetune

pytestmark = pytest.mark.packaged

DATASET = "trec_coarse"


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("packaged")
    base = root / "base"
    base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, base)
    prepared = root / "data" / DATASET
    prepare.prepare_dataset(
        DATASET,
        {"task": "topic", "builtin": DATASET},
        {"max_examples": {"train": 256, "validation": 64, "test": 128}, "split_seed": 0},
        prepared,
    )
    settings = finetune.Settings(
        epochs=3,
        max_steps=40,
        batch_size=16,
        learning_rate=1e-4,
        max_length=32,
        checkpoint_every=1000,
        seed=0,
    )
    metrics = finetune.finetune(
        base, prepared, root / "finetune", settings, threads=2, model_id=f"{DATASET}.seed0"
    )
    weights.extract(base, root / "finetune", root / "weights.safetensors")
    feature_file = root / "features.npz"
    features.extract(
        base,
        [root / "weights.safetensors"],
        [1.0],
        prepared,
        feature_file,
        batch_size=64,
        max_length=32,
        threads=2,
        model_id=f"{DATASET}.seed0",
    )
    return {
        "root": root,
        "metrics": metrics,
        "features": feature_file,
        "meta": json.loads((prepared / "meta.json").read_text()),
    }


def test_fine_tuning_learns_a_real_dataset(fine_tuned):
    metrics, meta = fine_tuned["metrics"], fine_tuned["meta"]
    assert meta["num_labels"] == 6 and meta["label_names"][0] == "ABBR"
    majority = max(meta["label_counts"]["test"].values()) / meta["counts"]["test"]
    assert metrics["test"]["accuracy"] > majority + 0.2, (metrics["test"], majority)


def test_probe_on_its_own_dataset_is_clearly_above_chance(fine_tuned):
    protocol = linear.Protocol.from_config({})
    result = linear.run(
        fine_tuned["features"],
        fine_tuned["root"] / "probe.json",
        protocol,
        model_id=f"{DATASET}.seed0",
        dataset=DATASET,
    )
    chance = result["chance"]
    assert result["n_test"] == 128 and result["num_labels"] == 6
    assert result["accuracy"] > chance["accuracy"] + 0.3, (result["accuracy"], chance)
    assert result["loss"] < 0.6 * chance["loss"], (result["loss"], chance)

    # the same features with the training labels shuffled: nothing to learn, the test accuracy falls
    # to chance
    arrays = features.load(fine_tuned["features"])
    arrays["train_y"] = np.random.default_rng(0).permutation(arrays["train_y"])
    shuffled = linear.train_probe(arrays, protocol)
    assert shuffled["accuracy"] < chance["accuracy"] + 0.15 < result["accuracy"], shuffled[
        "accuracy"
    ]
