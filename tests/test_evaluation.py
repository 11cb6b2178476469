"""Evaluation jobs: many (model, dataset) pairs per process, features and probes cached by content,
the results files and their reader, and the per-dataset L2 selection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_features_close, generated_frame
from weightspace import WeightspaceError
from weightspace.model import base_model, weights
from weightspace.plan import traversal
from weightspace.probe import cache, evaluation, linear, store

PROTOCOL = linear.Protocol(l2_grid=(0.01, 1.0, 100.0), cv_folds=3)


def write_dataset(folder: Path, n_train=48, n_test=24, seed=0, pairs=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    generated_frame(n_train, seed=seed, pairs=pairs).to_parquet(folder / "train.parquet")
    generated_frame(n_test, seed=seed + 1, pairs=pairs).to_parquet(folder / "test.parquet")
    (folder / "meta.json").write_text(
        json.dumps({"name": folder.name, "task": "sentiment", "num_labels": 2})
    )
    return folder


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory):
    """pretrained, a perturbed model b, and their stored 25/75 mix."""
    folder = tmp_path_factory.mktemp("weights")
    a = weights.encoder_weights(base_model.load_encoder(tiny_base))
    generator = torch.Generator().manual_seed(1)
    b = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in a.items()}
    paths = {
        "pretrained": folder / "pretrained.safetensors",
        "b": folder / "b.safetensors",
        "mid": folder / "mid.safetensors",
    }
    weights.save(paths["pretrained"], a, "pretrained")
    weights.save(paths["b"], b, "b")
    weights.save(paths["mid"], {k: 0.25 * a[k] + 0.75 * b[k] for k in a}, "mid")
    return paths


def datasets(root: Path, names=("alpha", "beta")) -> dict[str, evaluation.Dataset]:
    out = {}
    for i, name in enumerate(names):
        folder = root / "data" / name
        if not folder.exists():
            write_dataset(folder, seed=10 * i, pairs=name.endswith("_pairs"))
        out[name] = evaluation.Dataset(name, str(folder), max_length=24)
    return out


def evaluator(tiny_base, root: Path) -> evaluation.Evaluator:
    return evaluation.Evaluator(tiny_base, root / "cache", PROTOCOL, batch_size=8)


def recipes(models) -> dict[str, evaluation.Recipe]:
    return {
        "pretrained": evaluation.Recipe.of([models["pretrained"]]),
        "b": evaluation.Recipe.of([models["b"]]),
        "mix.ab": evaluation.Recipe.of([models["pretrained"], models["b"]], [0.25, 0.75]),
    }


def test_cache_computes_each_pair_once_and_a_rerun_loads_no_model(tiny_base, models, tmp_path):
    data = datasets(tmp_path)
    pairs = [(m, d) for m in ("pretrained", "b") for d in data]
    first = evaluator(tiny_base, tmp_path)
    results = first.evaluate(pairs, recipes(models), data, {"alpha": 0.1, "beta": 1.0})
    assert first.stats["features_computed"] == 4 and first.stats["probes_computed"] == 4
    assert first.stats["examples_encoded"] == 4 * (48 + 24)
    for (model_id, dataset), result in zip(pairs, results):
        assert (result["model_id"], result["dataset"]) == (model_id, dataset)
        assert len(result["test_losses"]) == result["n_test"] == 24  # per example, test-split order
        assert np.mean(result["test_losses"]) == pytest.approx(result["loss"], rel=1e-9)
        assert result["l2"] == {"alpha": 0.1, "beta": 1.0}[dataset]
        assert "prior" in result

    again = evaluator(tiny_base, tmp_path)
    assert again.evaluate(pairs, recipes(models), data, {"alpha": 0.1, "beta": 1.0}) == results
    assert again.stats["probes_cached"] == 4 and again.stats["features_computed"] == 0
    assert again.stats["probes_computed"] == 0
    assert again.encoder.model is None  # nothing was loaded: every result came from the cache

    # another L2 retrains the probes from cached features; no encoder pass
    other = evaluator(tiny_base, tmp_path)
    changed = other.evaluate(pairs, recipes(models), data, {"alpha": 0.1, "beta": 30.0})
    assert other.stats["features_cached"] == 2 and other.stats["probes_computed"] == 2
    assert other.stats["features_computed"] == 0 and other.encoder.model is None
    assert changed[0] == results[0] and changed[1]["loss"] != results[1]["loss"]


def test_adding_or_changing_a_dataset_computes_only_its_pairs(tiny_base, models, tmp_path):
    data = datasets(tmp_path)
    l2 = {"alpha": 0.1, "beta": 1.0, "gamma_pairs": 1.0}
    pairs = [(m, d) for m in ("pretrained", "b") for d in data]
    evaluator(tiny_base, tmp_path).evaluate(pairs, recipes(models), data, l2)

    more = datasets(tmp_path, ("alpha", "beta", "gamma_pairs"))  # add a dataset
    ev = evaluator(tiny_base, tmp_path)
    ev.evaluate([(m, d) for m in ("pretrained", "b") for d in more], recipes(models), more, l2)
    assert ev.stats["features_computed"] == 2 and ev.stats["probes_computed"] == 2
    assert ev.stats["probes_cached"] == 4

    # new content under the same name (a changed dataset entry): its pairs only, keyed by content
    # not mtime
    generated_frame(40, seed=99).to_parquet(Path(more["beta"].data_dir) / "train.parquet")
    ev = evaluator(tiny_base, tmp_path)
    ev.evaluate([(m, d) for m in ("pretrained", "b") for d in more], recipes(models), more, l2)
    assert ev.stats["features_computed"] == 2 and ev.stats["probes_cached"] == 4

    # a touched file with the same bytes is the same dataset
    os.utime(Path(more["alpha"].data_dir) / "test.parquet", ns=(1, 1))
    ev = evaluator(tiny_base, tmp_path)
    ev.evaluate([(m, d) for m in ("pretrained", "b") for d in more], recipes(models), more, l2)
    assert ev.stats["probes_cached"] == 6 and ev.stats["features_computed"] == 0


def test_without_kept_features_the_cache_holds_probe_results_and_the_pretrained_features(
    tiny_base, models, tmp_path
):
    data = datasets(tmp_path)
    pairs = [(m, d) for m in ("pretrained", "b", "mix.ab") for d in data]
    l2 = {"alpha": 0.1, "beta": 1.0}
    lean = evaluation.Evaluator(
        tiny_base, tmp_path / "cache", PROTOCOL, batch_size=8, keep_features=False
    )
    results = lean.evaluate(pairs, recipes(models), data, l2)
    assert lean.stats["features_computed"] == 6 and lean.stats["probes_computed"] == 6
    kept = sorted(p.stem for p in (tmp_path / "cache" / "features").rglob("*.npz"))
    assert kept == sorted(
        lean.features_key(recipes(models)["pretrained"], d) for d in data.values()
    )
    assert len(list((tmp_path / "cache" / "probe").rglob("*.json"))) == 6

    # a rerun reads every probe result, loads no model; another L2 re-encodes only the models
    # without features
    again = evaluation.Evaluator(
        tiny_base, tmp_path / "cache", PROTOCOL, batch_size=8, keep_features=False
    )
    assert (
        again.evaluate(pairs, recipes(models), data, l2) == results and again.encoder.model is None
    )
    other = evaluation.Evaluator(
        tiny_base, tmp_path / "cache", PROTOCOL, batch_size=8, keep_features=False
    )
    other.evaluate(pairs, recipes(models), data, {"alpha": 0.1, "beta": 30.0})
    # beta: b and mix.ab
    assert other.stats["features_cached"] == 1 and other.stats["features_computed"] == 2


def test_a_mix_is_keyed_and_computed_by_content(tiny_base, models, tmp_path, precision):
    """A mix and the same weights stored are one model. On a Zen 4, where `auto` chose bf16, their
    features were 2.3e-5 apart: the mix rounds its float64 sum once, the stored file was summed in
    fp32, and weights one fp32 ulp apart can round to bf16 values one bf16 ulp apart. The precision
    made it; AVX2's emulated kernels happen to round these to the same values. The tolerance follows
    the dtype (conftest.ROUNDINGS)."""
    r = recipes(models)
    same = evaluation.Recipe.of([models["pretrained"], models["pretrained"]], [0.5, 0.5])
    assert cache.model_key(same) == cache.model_key(r["pretrained"])
    assert cache.model_key(r["mix.ab"]) != cache.model_key(r["b"])
    data = datasets(tmp_path, ("alpha",))
    ev = evaluation.Evaluator(
        tiny_base, tmp_path / "cache", PROTOCOL, batch_size=8, mixed_precision=precision
    )
    mix = ev.features("mix.ab", r["mix.ab"], data.values())["alpha"]
    stored = ev.features("mid", evaluation.Recipe.of([models["mid"]]), data.values())["alpha"]
    # what a mix that ignored the pretrained end would be
    other = ev.features("b", r["b"], data.values())["alpha"]
    for split in ("train_x", "test_x"):
        assert_features_close(mix[split], stored[split], precision, wrong=other[split])
    assert len(mix["train_x"]) == 48 and len(mix["test_x"]) == 24


def test_run_writes_one_results_file_that_the_reader_reads(tiny_base, models, tmp_path):
    data = datasets(tmp_path)
    settings = {"protocol": {"l2_grid": [0.01, 1.0, 100.0], "cv_folds": 3}, "batch_size": 8}
    spec = {name: {"data_dir": d.data_dir, "max_length": 24} for name, d in data.items()}
    summary = evaluation.run(
        tiny_base,
        tmp_path / "cache",
        tmp_path / "models" / "pretrained.json",
        [("pretrained", d) for d in data],
        {"pretrained": ([models["pretrained"]], [1.0])},
        spec,
        settings,
        job="pretrained",
    )
    assert summary["features_computed"] == 2 and summary["probes_computed"] == 2
    evaluation.run(
        tiny_base,
        tmp_path / "cache",
        tmp_path / "groups" / "line.x.json",
        [("mix.ab", "alpha")],
        {"mix.ab": ([models["pretrained"], models["b"]], [0.25, 0.75])},
        spec,
        settings,
    )
    results = store.read(
        [tmp_path / "models" / "pretrained.json", tmp_path / "groups" / "line.x.json"]
    )
    assert set(results) == {("pretrained", "alpha"), ("pretrained", "beta"), ("mix.ab", "alpha")}
    assert store.job_info(tmp_path / "models" / "pretrained.json")["pairs"] == 2
    # every probe chose its own L2 on its own model's training features (nested: the test split
    # never enters)
    for result in results.values():
        selection = result["l2_selection"]
        assert result["l2"] in (0.01, 1.0, 100.0) and selection["l2"] == result["l2"]
        assert selection["grid"] == [0.01, 1.0, 100.0] and selection["folds"] == 3
        assert selection["n_train"] == result["n_train"] == 48
    # a rerun reads every pair from the cache
    again = evaluation.run(
        tiny_base,
        tmp_path / "cache",
        tmp_path / "again.json",
        [("pretrained", d) for d in data],
        {"pretrained": ([models["pretrained"]], [1.0])},
        spec,
        settings,
        job="pretrained",
    )
    assert again["probes_cached"] == 2 and again.get("probes_computed", 0) == 0


def test_a_models_l2_is_chosen_on_its_own_features():
    """Noise features get a large L2 (a head held near the prior), informative ones a small one: the
    choice follows each (model, dataset)'s own training features, so no model is tuned on
    another's."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(160, 60))
    signal = {
        "train_x": x,
        "train_y": (x[:, 0] + 0.3 * rng.normal(size=160) > 0).astype(int),
        "num_labels": 2,
        "test_x": x[:40],
        "test_y": (x[:40, 0] > 0).astype(int),
    }
    noise = dict(signal, train_y=rng.integers(0, 2, 160))
    protocol = linear.Protocol(l2_grid=(0.001, 0.1, 10.0, 1000.0), cv_folds=4)
    chosen = {
        name: linear.train_probe(arrays, protocol, l2=linear.CROSS_VALIDATED)
        for name, arrays in (("signal", signal), ("noise", noise))
    }
    assert chosen["signal"]["l2"] <= 0.1 < 10.0 <= chosen["noise"]["l2"]
    for name, arrays in (("signal", signal), ("noise", noise)):
        expected = linear.select_l2(arrays["train_x"], arrays["train_y"], 2, protocol)
        # on the training split only
        assert chosen[name]["l2_selection"]["cv_loss"] == expected["cv_loss"]
    fixed = linear.train_probe(signal, protocol, l2=1.0)
    assert fixed["l2"] == 1.0 and fixed["l2_selection"] is None


def test_the_reader_accepts_one_result_files_and_rejects_others(tmp_path):
    legacy = tmp_path / "probe" / "b.seed0" / "alpha.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"loss": 0.5, "accuracy": 0.75}))
    store.write(tmp_path / "many.json", [{"model_id": "m", "dataset": "alpha", "loss": 0.4}])
    results = store.read([legacy, tmp_path / "many.json"])
    assert results[("b.seed0", "alpha")]["loss"] == 0.5 and results[("m", "alpha")]["loss"] == 0.4
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(WeightspaceError, match="neither"):
        store.read([tmp_path / "bad.json"])
    with pytest.raises(WeightspaceError, match="missing"):
        store.read([tmp_path / "none.json"])
    with pytest.raises(WeightspaceError, match="model_id and dataset"):
        store.write(tmp_path / "x.json", [{"loss": 1.0}])


def test_a_damaged_cache_file_is_recomputed(tiny_base, models, tmp_path):
    data = datasets(tmp_path, ("alpha",))
    ev = evaluator(tiny_base, tmp_path)
    first = ev.evaluate([("b", "alpha")], recipes(models), data, {"alpha": 1.0})
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            path.write_bytes(b"not what it was")
    ev = evaluator(tiny_base, tmp_path)
    again = ev.evaluate([("b", "alpha")], recipes(models), data, {"alpha": 1.0})
    assert (
        again[0]["test_losses"] == first[0]["test_losses"] and again[0]["loss"] == first[0]["loss"]
    )
    assert ev.stats["features_computed"] == 1 and ev.stats["probes_computed"] == 1


def test_group_names_cover_every_traversal_point():

    config = {
        "datasets": {"a": {"task": "s"}, "b": {"task": "s"}, "c": {"task": "t"}},
        "seeds": [0, 1],
    }
    names = {traversal.group_name(p.as_row()) for p in traversal.all_points(config)}
    import re

    assert names and all(re.fullmatch(traversal.GROUP_PATTERN, n) for n in names)
    assert any(n.startswith("line.") for n in names) and any(n.startswith("region.") for n in names)
    with pytest.raises(WeightspaceError):
        traversal.group_name({"study": "cube"})
