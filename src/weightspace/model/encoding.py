"""Token ids for the encoder: one tokenization and one batch collation, for fine-tuning and for
features alike.

Examples are tokenized once, unpadded (lists of ids, and the label where training needs it); a batch
is padded when it is made, to its own longest example (dynamic padding) or to a given width. torch
is imported where a batch is made: modules that only tokenize stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch

# the tokenizer outputs a model takes, in the order a batch holds them; a tokenizer gives a subset
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    labels: Sequence[int] | None = None,
) -> list[dict]:
    """Token ids per example, unpadded (padding happens per batch); pairs use the tokenizer's pair
    encoding. With ``labels``, each example holds its label too (under "labels", what the model's
    loss reads)."""
    enc = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=True,
        max_length=max_length,
    )
    keys = [k for k in MODEL_INPUTS if k in enc]
    examples = [{k: enc[k][i] for k in keys} for i in range(len(enc["input_ids"]))]
    if labels is not None:
        for example, label in zip(examples, labels, strict=True):
            example["labels"] = label
    return examples


def tokenize_frame(
    tokenizer, frame: pd.DataFrame, max_length: int, labels: bool = False
) -> list[dict]:
    """The examples of a prepared split (columns text, text_pair where a task has pairs, label)."""
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    return tokenize(
        tokenizer,
        frame["text"].tolist(),
        pairs,
        max_length,
        frame["label"].astype("int64").tolist() if labels else None,
    )


def collate(examples: list[dict], pad_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example (dynamic padding) or to ``width``;
    labels become a vector."""
    import torch

    width = width or max(len(e["input_ids"]) for e in examples)
    batch = {}
    for key in examples[0]:
        if key == "labels":
            batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.long)
            continue
        fill = pad_id if key == "input_ids" else 0
        batch[key] = torch.tensor(
            [e[key] + [fill] * (width - len(e[key])) for e in examples], dtype=torch.long
        )
    return batch
