"""Frozen-encoder features: pooling, sentence pairs, dynamic padding, model recipes and the features file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import generated_frame
from weightspace import WeightspaceError, base_model, features, weights

TEXTS = ["good", "the movie was really quite awful and the acting poor", "a lovely plot", "bad food",
         "superb service and fine acting , really happy with the movie overall"]
PAIRS = ["the plot", "acting", "a movie was really the food and service", "fine", "sad"]


@pytest.fixture(scope="module")
def encoder(tiny_base):
    torch.manual_seed(0)
    return base_model.load_encoder(tiny_base).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    return base_model.load_tokenizer(tiny_base)


def manual(encoder, tokenizer, text, pair, pooling):
    """One example alone, no padding at all: the reference."""
    with torch.no_grad():
        hidden = encoder(**tokenizer(text, pair, return_tensors="pt")).last_hidden_state[0]
    return (hidden[0] if pooling == "cls" else hidden.mean(0)).numpy()


def write_dataset(folder: Path, n_train=48, n_test=32, pairs=False, seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    generated_frame(n_train, seed=seed, pairs=pairs).to_parquet(folder / "train.parquet")
    generated_frame(n_test, seed=seed + 1, pairs=pairs).to_parquet(folder / "test.parquet")
    (folder / "meta.json").write_text(json.dumps({"name": folder.name, "task": "sentiment", "num_labels": 2,
                                                  "has_text_pair": pairs}))
    return folder


@pytest.fixture(scope="module")
def pretrained_file(tiny_base, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "pretrained.safetensors"
    weights.save(path, weights.encoder_weights(base_model.load_encoder(tiny_base)), "pretrained")
    return path


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_matches_a_manual_computation(encoder, tokenizer, pooling):
    examples = features.tokenize(tokenizer, TEXTS, None, max_length=64)
    got = features.encode(encoder, examples, pooling, tokenizer.pad_token_id, batch_size=2)
    want = np.stack([manual(encoder, tokenizer, t, None, pooling) for t in TEXTS])
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the two poolings are different vectors (mean is not silently cls or vice versa)
    other = features.encode(encoder, examples, "mean" if pooling == "cls" else "cls", tokenizer.pad_token_id)
    assert np.abs(other - got).max() > 1e-3


def test_sentence_pairs_use_the_pair_encoding(encoder, tokenizer):
    examples = features.tokenize(tokenizer, TEXTS, PAIRS, max_length=64)
    assert all(1 in e["token_type_ids"] for e in examples)  # the second segment is marked
    assert all(e["input_ids"].count(tokenizer.sep_token_id) == 2 for e in examples)
    got = features.encode(encoder, examples, "mean", tokenizer.pad_token_id, batch_size=3)
    want = np.stack([manual(encoder, tokenizer, t, p, "mean") for t, p in zip(TEXTS, PAIRS)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    alone = features.encode(encoder, features.tokenize(tokenizer, TEXTS, None, 64), "mean", tokenizer.pad_token_id)
    assert np.abs(alone - got).max() > 1e-3


def test_dynamic_padding_equals_padding_to_max_length(encoder, tokenizer):
    frame = generated_frame(40, seed=3, pairs=True)
    texts = [" ".join(t.split()[: 1 + i % 8]) for i, t in enumerate(frame["text"])]  # 1..8 words
    examples = features.tokenize(tokenizer, texts, frame["text_pair"], max_length=14)
    assert max(len(e["input_ids"]) for e in examples) == 14  # some are truncated
    assert len({len(e["input_ids"]) for e in examples}) > 1  # lengths differ, so the sort matters
    for pooling in ("cls", "mean"):
        dynamic = features.encode(encoder, examples, pooling, tokenizer.pad_token_id, batch_size=7)
        padded = features.encode(encoder, examples, pooling, tokenizer.pad_token_id, batch_size=16,
                                 padding="max_length", max_length=14)
        np.testing.assert_allclose(dynamic, padded, atol=1e-5)


def test_extract_writes_the_features_file(tiny_base, pretrained_file, tmp_path):
    data = write_dataset(tmp_path / "alpha", pairs=True)
    summary = features.extract(tiny_base, [pretrained_file], [1.0], data, tmp_path / "f.npz", batch_size=8,
                               max_length=24, model_id="pretrained")
    out = features.load(tmp_path / "f.npz")
    assert out["pooling"] == "mean" == summary["pooling"]  # the base's natural pooling (base.json)
    assert out["num_labels"] == 2
    for split, n in (("train", 48), ("test", 32)):
        assert out[f"{split}_x"].shape == (n, 32) and out[f"{split}_x"].dtype == np.float32
        assert out[f"{split}_y"].dtype == np.int64
        np.testing.assert_array_equal(out[f"{split}_y"], generated_frame(n, seed=0 if split == "train" else 1,
                                                                         pairs=True)["label"])
    # row i is example i: compare two rows with the example encoded alone
    encoder, tokenizer = base_model.load_encoder(tiny_base), base_model.load_tokenizer(tiny_base)
    frame = generated_frame(32, seed=1, pairs=True)
    for i in (0, 17):
        enc = tokenizer(frame["text"][i], frame["text_pair"][i], truncation=True, max_length=24, return_tensors="pt")
        with torch.no_grad():
            want = encoder(**enc).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(out["test_x"][i], want, atol=1e-5)
    features.extract(tiny_base, [pretrained_file], [1.0], data, tmp_path / "cls.npz", pooling="cls", max_length=24)
    cls = features.load(tmp_path / "cls.npz")
    assert cls["pooling"] == "cls" and np.abs(cls["train_x"] - out["train_x"]).max() > 1e-3


def test_a_mix_is_built_from_its_recipe(tiny_base, pretrained_file, tmp_path, monkeypatch):
    a = weights.load(pretrained_file)
    generator = torch.Generator().manual_seed(1)
    b = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in a.items()}
    weights.save(tmp_path / "b.safetensors", b, "b")
    weights.save(tmp_path / "mid.safetensors", {k: 0.25 * a[k] + 0.75 * b[k] for k in a}, "mid")
    data = write_dataset(tmp_path / "beta", n_train=16, n_test=8)
    features.extract(tiny_base, [pretrained_file, tmp_path / "b.safetensors"], [0.25, 0.75], data,
                     tmp_path / "mix.npz", max_length=24)
    features.extract(tiny_base, [tmp_path / "mid.safetensors"], [1.0], data, tmp_path / "mid.npz", max_length=24)
    mix, mid = features.load(tmp_path / "mix.npz"), features.load(tmp_path / "mid.npz")
    np.testing.assert_allclose(mix["train_x"], mid["train_x"], atol=1e-5)
    # a stored model is read as is, not combined
    monkeypatch.setattr(weights, "combine", lambda *a, **k: pytest.fail("combine called for a stored model"))
    assert features.recipe_weights([pretrained_file], [1.0]).keys() == a.keys()


def test_bad_inputs_are_named(tiny_base, pretrained_file, tmp_path):
    data = write_dataset(tmp_path / "gamma", n_train=8, n_test=8)
    frame = generated_frame(8).rename(columns={"text": "sentence"})
    frame.to_parquet(data / "train.parquet")
    with pytest.raises(WeightspaceError, match=r"train.parquet has no column 'text'"):
        features.extract(tiny_base, [pretrained_file], [1.0], data, tmp_path / "x.npz")
    frame = generated_frame(8)
    frame.loc[0, "label"] = 5
    frame.to_parquet(data / "train.parquet")
    with pytest.raises(WeightspaceError, match=r"train.parquet: column 'label'"):
        features.extract(tiny_base, [pretrained_file], [1.0], data, tmp_path / "x.npz")
    with pytest.raises(WeightspaceError, match="probe.pooling"):
        features.resolve_pooling(tiny_base, "max")
    with pytest.raises(WeightspaceError, match="does not exist"):
        features.recipe_weights([tmp_path / "missing.safetensors"], [1.0])
    assert not (tmp_path / "x.npz").exists()


def test_precision_is_bf16_on_cpu_only_where_the_cpu_has_it(monkeypatch):
    from weightspace import hardware

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)  # AVX2: emulated bf16, 100x slower
    assert features.precision("cpu", "auto") == "float32"
    assert isinstance(features.autocast_for(torch.device("cpu"), "auto"), type(features.contextlib.nullcontext()))
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)  # AMX / AVX512-BF16
    assert features.precision("cpu", "auto") == "bfloat16"
    assert features.precision("cpu", "no") == "float32"
    assert features.precision("cpu", "bf16") == "bfloat16"
    with pytest.raises(WeightspaceError, match="mixed_precision"):
        features.precision("cpu", "fp8")


def test_bf16_features_stay_close_to_fp32(encoder, tokenizer):
    examples = features.tokenize(tokenizer, TEXTS, None, max_length=64)
    fp32 = features.encode(encoder, examples, "mean", tokenizer.pad_token_id, mixed_precision="no")
    bf16 = features.encode(encoder, examples, "mean", tokenizer.pad_token_id, mixed_precision="bf16")
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - fp32).max() < 0.1 * np.abs(fp32).max()  # bf16 keeps ~3 significant digits
    assert np.abs(bf16 - fp32).max() > 0  # it did run in bf16


def test_cuda_attention_leaves_cudnn_for_dynamic_shapes_and_the_cpu_untouched():
    """cuDNN's attention compiles a plan per batch shape (8x slower bf16 training with dynamic padding on an
    H100, benchmarks/cuda_check.py): on CUDA it is switched off; on a CPU nothing changes."""
    import torch

    from weightspace import hardware

    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        hardware.attention_for_dynamic_shapes("cpu")
        assert torch.backends.cuda.cudnn_sdp_enabled()
        hardware.attention_for_dynamic_shapes(torch.device("cuda"))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
