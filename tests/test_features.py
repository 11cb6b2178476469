"""Frozen-encoder features: pooling, sentence pairs, dynamic padding, model recipes and the features
file."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_features_close, generated_frame
from weightspace import WeightspaceError
from weightspace.model import base_model, encoding, weights
from weightspace.model import precision as numerics
from weightspace.probe import features

TEXTS = [
    "good",
    "the movie was really quite awful and the acting poor",
    "a lovely plot",
    "bad food",
    "superb service and fine acting , really happy with the movie overall",
]
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
    (folder / "meta.json").write_text(
        json.dumps(
            {"name": folder.name, "task": "sentiment", "num_labels": 2, "has_text_pair": pairs}
        )
    )
    return folder


@pytest.fixture(scope="module")
def pretrained_file(tiny_base, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "pretrained.safetensors"
    weights.save(path, weights.encoder_weights(base_model.load_encoder(tiny_base)), "pretrained")
    return path


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_matches_a_manual_computation(encoder, tokenizer, pooling, precision):
    """Batched and padded, in fp32 or bf16, against one example at a time in fp32. In bf16 the
    features differ from fp32 by its rounding (up to 1.8e-4 here, relative 1.3e-3: the failure seen
    on a Zen 4, where `auto` chose bf16, reproduced on AVX2 with bf16 forced): the precision, not
    the CPU's kernels, made it."""
    examples = features.tokenize(tokenizer, TEXTS, None, max_length=64)
    got = features.encode(
        encoder, examples, pooling, tokenizer.pad_token_id, batch_size=2, mixed_precision=precision
    )
    want = np.stack([manual(encoder, tokenizer, t, None, pooling) for t in TEXTS])
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    # the other pooling gives other vectors (mean is not silently cls or vice versa)
    other = np.stack(
        [manual(encoder, tokenizer, t, None, "mean" if pooling == "cls" else "cls") for t in TEXTS]
    )
    assert_features_close(got, want, precision, wrong=other)


def test_sentence_pairs_use_the_pair_encoding(encoder, tokenizer, precision):
    examples = features.tokenize(tokenizer, TEXTS, PAIRS, max_length=64)
    assert all(1 in e["token_type_ids"] for e in examples)  # the second segment is marked
    assert all(e["input_ids"].count(tokenizer.sep_token_id) == 2 for e in examples)
    got = features.encode(
        encoder, examples, "mean", tokenizer.pad_token_id, batch_size=3, mixed_precision=precision
    )
    want = np.stack([manual(encoder, tokenizer, t, p, "mean") for t, p in zip(TEXTS, PAIRS)])
    # the pair left out
    alone = np.stack([manual(encoder, tokenizer, t, None, "mean") for t in TEXTS])
    assert_features_close(got, want, precision, wrong=alone)


def test_dynamic_padding_equals_padding_to_max_length(encoder, tokenizer, precision):
    frame = generated_frame(40, seed=3, pairs=True)
    texts = [" ".join(t.split()[: 1 + i % 8]) for i, t in enumerate(frame["text"])]  # 1..8 words
    examples = features.tokenize(tokenizer, texts, frame["text_pair"], max_length=14)
    assert max(len(e["input_ids"]) for e in examples) == 14  # some are truncated
    assert len({len(e["input_ids"]) for e in examples}) > 1  # lengths differ, so the sort matters
    padded = {
        pooling: features.encode(
            encoder,
            examples,
            pooling,
            tokenizer.pad_token_id,
            batch_size=16,
            padding="max_length",
            max_length=14,
            mixed_precision=precision,
        )
        for pooling in ("cls", "mean")
    }
    for pooling, other in (("cls", "mean"), ("mean", "cls")):
        dynamic = features.encode(
            encoder,
            examples,
            pooling,
            tokenizer.pad_token_id,
            batch_size=7,
            mixed_precision=precision,
        )
        # rows out of order (a lost sort) are 0.016 apart: the fp32 tolerance (~1e-6) catches that,
        # bf16's cannot
        assert_features_close(dynamic, padded[pooling], precision, wrong=padded[other])


def test_extract_writes_the_features_file(tiny_base, pretrained_file, tmp_path, precision):
    data = write_dataset(tmp_path / "alpha", pairs=True)
    summary = features.extract(
        tiny_base,
        [pretrained_file],
        [1.0],
        data,
        tmp_path / "f.npz",
        batch_size=8,
        max_length=24,
        model_id="pretrained",
        mixed_precision=precision,
    )
    out = features.load(tmp_path / "f.npz")
    assert out["pooling"] == "mean" == summary["pooling"]  # the base's natural pooling (base.json)
    assert out["num_labels"] == 2
    for split, n in (("train", 48), ("test", 32)):
        assert out[f"{split}_x"].shape == (n, 32) and out[f"{split}_x"].dtype == np.float32
        assert out[f"{split}_y"].dtype == np.int64
        np.testing.assert_array_equal(
            out[f"{split}_y"],
            generated_frame(n, seed=0 if split == "train" else 1, pairs=True)["label"],
        )
    # row i is example i: compare two rows with the example encoded alone
    encoder, tokenizer = base_model.load_encoder(tiny_base), base_model.load_tokenizer(tiny_base)
    frame = generated_frame(32, seed=1, pairs=True)
    for i in (0, 17):
        enc = tokenizer(
            frame["text"][i],
            frame["text_pair"][i],
            truncation=True,
            max_length=24,
            return_tensors="pt",
        )
        with torch.no_grad():
            want = encoder(**enc).last_hidden_state[0].mean(0).numpy()
        assert_features_close(out["test_x"][i], want, precision, wrong=out["test_x"][i + 1])
    features.extract(
        tiny_base,
        [pretrained_file],
        [1.0],
        data,
        tmp_path / "cls.npz",
        pooling="cls",
        max_length=24,
    )
    cls = features.load(tmp_path / "cls.npz")
    assert cls["pooling"] == "cls" and np.abs(cls["train_x"] - out["train_x"]).max() > 1e-3


def test_a_mix_is_built_from_its_recipe(
    tiny_base, pretrained_file, tmp_path, monkeypatch, precision
):
    a = weights.load(pretrained_file)
    generator = torch.Generator().manual_seed(1)
    b = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in a.items()}
    weights.save(tmp_path / "b.safetensors", b, "b")
    weights.save(tmp_path / "mid.safetensors", {k: 0.25 * a[k] + 0.75 * b[k] for k in a}, "mid")
    data = write_dataset(tmp_path / "beta", n_train=16, n_test=8)
    ends = [pretrained_file, tmp_path / "b.safetensors"]
    for name, paths, coefficients in (
        ("mix", ends, [0.25, 0.75]),
        ("swapped", ends, [0.75, 0.25]),
        ("mid", [tmp_path / "mid.safetensors"], [1.0]),
    ):
        features.extract(
            tiny_base,
            paths,
            coefficients,
            data,
            tmp_path / f"{name}.npz",
            max_length=24,
            mixed_precision=precision,
        )
    mix, mid, swapped = (
        features.load(tmp_path / f"{name}.npz") for name in ("mix", "mid", "swapped")
    )
    assert_features_close(mix["train_x"], mid["train_x"], precision, wrong=swapped["train_x"])
    # a stored model is read as is, not combined
    monkeypatch.setattr(
        weights, "combine", lambda *a, **k: pytest.fail("combine called for a stored model")
    )
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


def test_precision_settings_and_their_autocast():
    """What `auto` picks on each kind of CPU is tested on fake /proc/cpuinfo texts in
    test_hardware.py."""
    assert features.precision("cpu", "no") == "fp32" and features.precision("cpu", "bf16") == "bf16"
    assert isinstance(
        features.autocast_for(torch.device("cpu"), "no"), type(contextlib.nullcontext())
    )
    assert isinstance(features.autocast_for(torch.device("cpu"), "bf16"), torch.autocast)
    with pytest.raises(WeightspaceError, match="probe.mixed_precision"):
        features.precision("cpu", "fp8")
    # the probe never computes in fp16
    with pytest.raises(WeightspaceError, match="probe.mixed_precision"):
        features.precision("cpu", "fp16")
    # one vocabulary: the names fine-tuning records, and the dtypes they stand for
    assert [numerics.autocast_dtype(n) for n in numerics.NAMES] == [
        None,
        torch.bfloat16,
        torch.float16,
    ]
    assert [numerics.torch_dtype(n) for n in numerics.NAMES] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]
    assert (
        numerics.grad_scaler("bf16", "cpu") is None
        and numerics.grad_scaler("fp16", "cpu") is not None
    )


def test_training_and_features_tokenize_and_collate_alike(tokenizer):
    """One tokenization (model/encoding.py): a training example is a features example plus its
    label."""
    frame = generated_frame(9, seed=5, pairs=True)
    train = encoding.tokenize_frame(tokenizer, frame, 12, labels=True)
    plain = features.tokenize(tokenizer, frame["text"], frame["text_pair"], 12)
    assert [{k: v for k, v in e.items() if k != "labels"} for e in train] == plain
    assert [e["labels"] for e in train] == frame["label"].tolist()
    batch, inputs = encoding.collate(train, 0), features.collate(plain, 0)
    assert (
        list(batch) == [*inputs, "labels"] and batch["labels"].tolist() == frame["label"].tolist()
    )
    assert all(torch.equal(batch[k], inputs[k]) for k in inputs)
    assert features.collate(plain, 0, width=16)["input_ids"].shape == (9, 16)


def test_bf16_features_stay_close_to_fp32(encoder, tokenizer):
    examples = features.tokenize(tokenizer, TEXTS, None, max_length=64)
    fp32 = features.encode(encoder, examples, "mean", tokenizer.pad_token_id, mixed_precision="no")
    bf16 = features.encode(
        encoder, examples, "mean", tokenizer.pad_token_id, mixed_precision="bf16"
    )
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - fp32).max() < 0.1 * np.abs(fp32).max()  # bf16 keeps ~3 significant digits
    assert np.abs(bf16 - fp32).max() > 0  # it did run in bf16


def test_cuda_attention_leaves_cudnn_for_dynamic_shapes_and_the_cpu_untouched():
    """cuDNN's attention compiles a plan per batch shape (8x slower bf16 training with dynamic
    padding on an H100, benchmarks/cuda_check.py): on CUDA it is switched off; on a CPU nothing
    changes."""
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
