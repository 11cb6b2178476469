"""The frozen encoder of an evaluation job: what a model and a dataset are, and one pass over them.

Owns the job's torch: torch is imported on first use (the precision, part of every features
key, asks for the device), and its threads, device and tokenizer are set up only once
something must be encoded, so a job whose every pair is cached loads no model. The base model
is built once per job; every later recipe (a stored weights file, or a mix Σ c_i θ_i of
several) is loaded into that same model. Each dataset's train and test splits are tokenised
once per job and encoded in one pass (features.encode). Times its model loads, tokenisation
and encoder passes (``seconds``: the job summary's seconds_load_model, seconds_tokenize and
seconds_encode).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weightspace import WeightspaceError
from weightspace.model import base_model
from weightspace.probe import features


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset as a job sees it: its folder (train/test parquet, meta.json) and
    max_length."""

    name: str
    data_dir: str
    max_length: int = 128


@dataclass(frozen=True)
class Recipe:
    """A model's encoder: Σ c_i θ_i of stored weights files (a stored model: one file,
    coefficient 1)."""

    paths: tuple[str, ...]
    coefficients: tuple[float, ...]

    @classmethod
    def of(cls, paths: Sequence[str | Path], coefficients: Sequence[float] | None = None) -> Recipe:
        paths = tuple(str(p) for p in paths)
        if coefficients is None:
            coefficients = [1.0] * len(paths)
        coefficients = tuple(float(c) for c in coefficients)
        if len(paths) != len(coefficients) or not paths:
            raise WeightspaceError(
                f"a model recipe needs one coefficient per weights file: {paths} / {coefficients}"
            )
        return cls(paths, coefficients)


class Encoder:
    """The base's encoder in one process: built on the first recipe loaded, its weights replaced
    for each later one."""

    def __init__(
        self,
        base_dir: str | Path,
        pooling: str | None = None,
        batch_size: int = 64,
        mixed_precision: str = "auto",
        threads: int = 1,
    ):
        self.base_dir = Path(base_dir)
        self.pooling = features.resolve_pooling(self.base_dir, pooling)
        self.batch_size = int(batch_size)
        self.mixed_precision = mixed_precision
        self.threads = max(int(threads), 1)
        self.model = None  # None until a recipe had to be encoded
        self.seconds: Counter = Counter()  # load_model, tokenize, encode
        self._torch = None
        self._device = None
        self._tokenizer = None
        # dataset name -> (train + test examples, labels)
        self._tokens: dict[str, tuple[list[dict], dict]] = {}

    def _setup(self) -> None:
        if self._torch is None:
            import torch

            torch.set_num_threads(self.threads)
            self._torch = torch
            self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self._tokenizer = base_model.load_tokenizer(self.base_dir)

    @property
    def dtype(self) -> str:
        """The precision the encoder runs in (part of the features key)."""
        import torch

        device = self._device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return features.precision(device, self.mixed_precision)

    def load(self, recipe: Recipe) -> None:
        """Make ``recipe``'s weights the encoder's: the first recipe builds the model, later ones
        replace its weights."""
        self._setup()
        started = time.perf_counter()
        weights = features.recipe_weights(recipe.paths, recipe.coefficients)
        if self.model is None:
            self.model = base_model.load_encoder(self.base_dir, weights).to(self._device).eval()
        else:
            base_model.load_encoder_state(self.model, weights)
        self.seconds["load_model"] += time.perf_counter() - started

    def _examples(self, dataset: Dataset) -> tuple[list[dict], dict]:
        """Tokenised train + test examples of a dataset (once per job) and their labels."""
        if dataset.name not in self._tokens:
            started = time.perf_counter()
            meta = json.loads((Path(dataset.data_dir) / "meta.json").read_text())
            num_labels = int(meta["num_labels"])
            examples, labels = [], {"num_labels": num_labels}
            for split in features.SPLITS:
                frame = features.read_split(dataset.data_dir, split, num_labels)
                texts = frame["text"].tolist()
                pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
                examples += features.tokenize(self._tokenizer, texts, pairs, dataset.max_length)
                labels[f"{split}_y"] = frame["label"].to_numpy(dtype=np.int64)
            self._tokens[dataset.name] = (examples, labels)
            self.seconds["tokenize"] += time.perf_counter() - started
        return self._tokens[dataset.name]

    def encode(self, dataset: Dataset) -> tuple[np.ndarray, dict, float]:
        """The loaded recipe's pooled features of ``dataset``'s train then test examples (a row
        each), their labels ({train_y, test_y, num_labels}) and the seconds of the encoder pass
        (tokenising not counted)."""
        if self.model is None:
            raise WeightspaceError("the encoder has no weights: load a recipe before encoding")
        pad_id = base_model.pad_id(self._tokenizer)
        examples, labels = self._examples(dataset)
        started = time.perf_counter()
        # one pass over train and test together: length-sorted batches span both splits
        x = features.encode(
            self.model,
            examples,
            self.pooling,
            pad_id,
            self.batch_size,
            self._device,
            self.mixed_precision,
        )
        seconds = time.perf_counter() - started
        self.seconds["encode"] += seconds
        return x, labels, seconds
