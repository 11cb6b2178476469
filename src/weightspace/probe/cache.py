"""The evaluation cache: features and probe results keyed by what they are computed from.

Keys are content digests (weightspace.digest), never file names or modification times:

- model key: the sha256 of each weights file and its coefficient (a stored model is
  one file with coefficient 1; a mix Σ c_i θ_i is its endpoints' digests and weights);
- data key: the sha256 of the dataset's prepared train and test files and its label count;
- tokenizer key: the base folder's files that are not weights (tokenizer, config, base.json);
- features key: model key, data key, tokenizer key, pooling, max_length, batch size and
  the precision the encoder ran in (features/{key[:2]}/{key}.npz);
- probe key: features key, the protocol (its L2 grid and folds, or a fixed L2), and the
  probe's code (probe/{key[:2]}/{key}.json).

A key's value depends on these inputs only, so a cache that earlier jobs wrote stays valid.
Files are written atomically; a file that cannot be read back is reported and recomputed,
never trusted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weightspace import WeightspaceError
from weightspace.atomic import write_json, write_npz
from weightspace.digest import file_digest, value_digest
from weightspace.probe import features, linear

if TYPE_CHECKING:
    from weightspace.probe.encoder import Dataset, Recipe

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # raise when the features of an unchanged model and dataset would change
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")


# ---------------------------------------------------------------- content keys


def model_key(recipe: Recipe) -> str:
    """Same content, same key: a file's digest with its coefficient, summed over repeated files."""
    terms: dict[str, float] = {}
    for path, c in zip(recipe.paths, recipe.coefficients):
        digest = file_digest(path)
        terms[digest] = terms.get(digest, 0.0) + c
    return value_digest(sorted((d, round(c, 12)) for d, c in terms.items() if c != 0.0))


def data_key(dataset: Dataset) -> str:
    folder = Path(dataset.data_dir)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise WeightspaceError(
            f"prepared data file {meta_path} is missing; run prepare_dataset first"
        )
    num_labels = int(json.loads(meta_path.read_text())["num_labels"])
    splits = [file_digest(features.split_path(folder, split)) for split in features.SPLITS]
    return value_digest([num_labels] + splits)


def tokenizer_key(base_dir: str | Path) -> str:
    """The base folder's files that are not weights: tokenizer, config, base.json."""
    files = sorted(
        p for p in Path(base_dir).iterdir() if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES)
    )
    return value_digest([(p.name, file_digest(p)) for p in files])


def probe_code_key() -> str:
    """The probe's source: a change to the probe's maths invalidates cached probe results (not
    features)."""
    return file_digest(linear.__file__)


def features_key(
    model: str,
    data: str,
    tokenizer: str,
    pooling: str,
    max_length: int,
    batch_size: int,
    dtype: str,
) -> str:
    """The key of a model's features of a dataset, from its parts (model_key, data_key,
    tokenizer_key, the encoder's settings)."""
    return value_digest(
        {
            "version": FEATURES_VERSION,
            "model": model,
            "data": data,
            "tokenizer": tokenizer,
            "pooling": pooling,
            "max_length": max_length,
            "batch_size": batch_size,
            "dtype": dtype,
        }
    )


def protocol_settings(protocol: linear.Protocol, l2: float | None) -> dict:
    """The protocol as the probe key holds it, with the L2 used: fixed, or "cross-validated"."""
    settings = asdict(protocol)
    if l2 is not None:
        settings["l2"] = float(l2)
    else:  # chosen per (model, dataset) by cross-validation on its own training features
        settings["l2"] = "cross-validated"
    return settings


def probe_key(features_key: str, protocol: linear.Protocol, l2: float | None) -> str:
    """The key of a probe result: its features, protocol and L2 (None: cross-validated), code."""
    return value_digest(
        {
            "features": features_key,
            "protocol": protocol_settings(protocol, l2),
            "code": probe_code_key(),
        }
    )


# ---------------------------------------------------------------- cache files


class Cache:
    """The cache's files under ``root``: {kind}/{key[:2]}/{key}{suffix}, kind features (.npz) or
    probe (.json)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def read_features(self, key: str) -> dict | None:
        """The cached features arrays (features.load), or None when absent or unreadable."""
        path = self.path("features", key, ".npz")
        if not path.exists():
            return None
        try:
            return features.load(path)
        except Exception as err:  # a damaged cache file is recomputed, never trusted
            log.warning("cached features %s are unreadable (%s): recomputing", path, err)
            return None

    def write_features(self, key: str, data: dict, dtype: str) -> None:
        """Store features arrays ({train,test}_{x,y}, num_labels, pooling) and the precision
        they were computed in."""
        write_npz(
            self.path("features", key, ".npz"),
            train_x=data["train_x"],
            test_x=data["test_x"],
            train_y=data["train_y"],
            test_y=data["test_y"],
            num_labels=np.int64(data["num_labels"]),
            pooling=np.str_(data["pooling"]),
            dtype=np.str_(dtype),
        )

    def read_probe(self, key: str) -> dict | None:
        """The cached probe result, or None when absent or unreadable."""
        return self._read_json("probe", key)

    def write_probe(self, key: str, result: dict) -> dict:
        """Store a probe result; returns it as read back from JSON, so that this job's result
        and a rerun's (read from the cache) are the same thing."""
        path = self.path("probe", key, ".json")
        write_json(path, result)
        return json.loads(path.read_text())

    def _read_json(self, kind: str, key: str) -> dict | None:
        path = self.path(kind, key, ".json")
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.warning("cached %s %s is unreadable (%s): recomputing", kind, path, err)
            return None
