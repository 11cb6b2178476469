"""Models evaluated by the linear probe: many (model, dataset) pairs in one process, cached by content.

A job evaluates a set of pairs: a stored model on every dataset of the study, or the
mixes of one traversal group (a line, a plane, a region) on their datasets. Each pair
needs the model's frozen-encoder features of the dataset (one encoder pass over train
and test together) and a probe trained on them, its L2 strength chosen by cross-validation on
those features' training split (so no model is favoured by another's tuning). Both are
cached under ``cache_dir`` by what they are computed from, never by file names or
modification times:

- model key: the sha256 of each weights file and its coefficient (a stored model is
  one file with coefficient 1; a mix Σ c_i θ_i is its endpoints' digests and weights);
- data key: the sha256 of the dataset's prepared train and test files and its label count;
- features key: model key, data key, the tokenizer's files, pooling, max_length, batch
  size and the precision the encoder ran in (features/{key}.npz);
- probe key: features key, the protocol (its L2 grid and folds, or a fixed L2), and the probe's
  code (probe/{key}.json).

So adding a dataset computes only the pairs that involve it, a job rerun after its
output was deleted reads everything from the cache (no model is loaded), and a changed
dataset or model recomputes exactly its pairs. The job's output lists every pair's
result (probe_store reads it) and what the job computed and found cached.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from weightspace import WeightspaceError, study
from weightspace.digest import file_digest, value_digest
from weightspace.probe import features, linear, store
from weightspace.atomic import write_json, write_npz

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # raise when the features of an unchanged model and dataset would change
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset as a job sees it: its folder (train/test parquet, meta.json) and max_length."""

    name: str
    data_dir: str
    max_length: int = 128


@dataclass(frozen=True)
class Recipe:
    """A model's encoder: Σ c_i θ_i of stored weights files (a stored model: one file, coefficient 1)."""

    paths: tuple[str, ...]
    coefficients: tuple[float, ...]

    @classmethod
    def of(cls, paths: Sequence[str | Path], coefficients: Sequence[float] | None = None) -> "Recipe":
        paths = tuple(str(p) for p in paths)
        coefficients = tuple(float(c) for c in (coefficients if coefficients is not None else [1.0] * len(paths)))
        if len(paths) != len(coefficients) or not paths:
            raise WeightspaceError(f"a model recipe needs one coefficient per weights file: {paths} / {coefficients}")
        return cls(paths, coefficients)


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
        raise WeightspaceError(f"prepared data file {meta_path} is missing; run prepare_dataset first")
    num_labels = int(json.loads(meta_path.read_text())["num_labels"])
    return value_digest([num_labels] + [file_digest(features.split_path(folder, split)) for split in features.SPLITS])


def tokenizer_key(base_dir: str | Path) -> str:
    """The base folder's files that are not weights: tokenizer, config, base.json."""
    files = sorted(p for p in Path(base_dir).iterdir() if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES))
    return value_digest([(p.name, file_digest(p)) for p in files])


def probe_code_key() -> str:
    """The probe's source: a change to the probe's maths invalidates cached probe results (not features)."""
    return file_digest(linear.__file__)


# ---------------------------------------------------------------- the evaluator


class Evaluator:
    """Features and probe results of (model, dataset) pairs, from the cache or computed, in one process."""

    def __init__(self, base_dir: str | Path, cache_dir: str | Path, protocol: linear.Protocol,
                 pooling: str | None = None, batch_size: int = 64, mixed_precision: str = "auto",
                 threads: int = 1, keep_features: bool = True):
        self.base_dir = Path(base_dir)
        self.cache_dir = Path(cache_dir)
        self.protocol = protocol
        self.pooling = features.resolve_pooling(self.base_dir, pooling)
        self.batch_size = int(batch_size)
        self.mixed_precision = mixed_precision
        self.threads = max(int(threads), 1)
        # False: only probe results stay in the cache (a few kB a pair, against hidden × examples floats); the
        # pretrained model's features stay either way: every dataset's baseline, re-probed when the protocol changes
        self.keep_features = bool(keep_features)
        self.stats: Counter = Counter()
        self._tokenizer_key = tokenizer_key(self.base_dir)
        self._tokens: dict[str, tuple[list[dict], dict]] = {}  # dataset -> (train + test examples, labels)
        self._torch = None
        self._encoder = None
        self._device = None
        self._seconds = Counter()

    # ------------------------------------------------------------ torch, lazily

    def _setup_torch(self) -> None:
        if self._torch is None:
            import torch

            torch.set_num_threads(self.threads)
            self._torch = torch
            self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self._tokenizer = features.base_model.load_tokenizer(self.base_dir)

    @property
    def dtype(self) -> str:
        """The precision the encoder runs in (part of the features key)."""
        import torch

        device = self._device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return features.precision(device, self.mixed_precision)

    def _load_encoder(self, recipe: Recipe):
        from weightspace.model import base_model

        started = time.perf_counter()
        weights = features.recipe_weights(recipe.paths, recipe.coefficients)
        if self._encoder is None:
            self._encoder = base_model.load_encoder(self.base_dir, weights).to(self._device).eval()
        else:
            base_model.load_encoder_state(self._encoder, weights)
        self._seconds["load_model"] += time.perf_counter() - started
        return self._encoder

    def _examples(self, dataset: Dataset) -> tuple[list[dict], dict]:
        """Tokenised train + test examples of a dataset (once per job) and their labels."""
        if dataset.name not in self._tokens:
            started = time.perf_counter()
            meta = json.loads((Path(dataset.data_dir) / "meta.json").read_text())
            num_labels = int(meta["num_labels"])
            examples, labels = [], {"num_labels": num_labels}
            for split in features.SPLITS:
                frame = features.read_split(dataset.data_dir, split, num_labels)
                pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
                examples += features.tokenize(self._tokenizer, frame["text"].tolist(), pairs, dataset.max_length)
                labels[f"{split}_y"] = frame["label"].to_numpy(dtype=np.int64)
            self._tokens[dataset.name] = (examples, labels)
            self._seconds["tokenize"] += time.perf_counter() - started
        return self._tokens[dataset.name]

    # ------------------------------------------------------------ keys and cache files

    def features_key(self, recipe: Recipe, dataset: Dataset) -> str:
        return value_digest({"version": FEATURES_VERSION, "model": model_key(recipe), "data": data_key(dataset),
                       "tokenizer": self._tokenizer_key, "pooling": self.pooling, "max_length": dataset.max_length,
                       "batch_size": self.batch_size, "dtype": self.dtype})

    def _protocol_dict(self, l2: float | None) -> dict:
        settings = asdict(self.protocol)
        if l2 is not None:
            settings["l2"] = float(l2)
        else:  # chosen per (model, dataset) by cross-validation on its own training features
            settings["l2"] = "cross-validated"
        return settings

    def probe_key(self, features_key: str, l2: float | None) -> str:
        return value_digest({"features": features_key, "protocol": self._protocol_dict(l2), "code": probe_code_key()})

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.cache_dir / kind / key[:2] / f"{key}{suffix}"

    def _read_features(self, key: str) -> dict | None:
        path = self._path("features", key, ".npz")
        if not path.exists():
            return None
        try:
            return features.load(path)
        except Exception as err:  # a damaged cache file is recomputed, never trusted
            log.warning("cached features %s are unreadable (%s): recomputing", path, err)
            return None

    def _read_json(self, kind: str, key: str) -> dict | None:
        path = self._path(kind, key, ".json")
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.warning("cached %s %s is unreadable (%s): recomputing", kind, path, err)
            return None

    # ------------------------------------------------------------ features

    def features(self, model_id: str, recipe: Recipe, datasets: Iterable[Dataset]) -> dict[str, dict]:
        """dataset name -> the features arrays of this model on it; one encoder load for all missing ones."""
        out, missing = {}, []
        for dataset in datasets:
            key = self.features_key(recipe, dataset)
            data = self._read_features(key)
            if data is None:
                missing.append((dataset, key))
            else:
                self.stats["features_cached"] += 1
                out[dataset.name] = data
        if missing:
            self._setup_torch()
            encoder = self._load_encoder(recipe)
            pad_id = features.base_model.pad_id(self._tokenizer)
            for dataset, key in missing:
                examples, labels = self._examples(dataset)
                n_train = len(labels["train_y"])
                started = time.perf_counter()
                # one pass over train and test together: length-sorted batches span both splits
                x = features.encode(encoder, examples, self.pooling, pad_id, self.batch_size, self._device,
                                    self.mixed_precision)
                seconds = time.perf_counter() - started
                self._seconds["encode"] += seconds
                self.stats["examples_encoded"] += len(examples)
                if not np.isfinite(x).all():
                    raise WeightspaceError(f"features of {model_id} on {dataset.name} are not finite")
                data = {"train_x": x[:n_train], "test_x": x[n_train:], "train_y": labels["train_y"],
                        "test_y": labels["test_y"], "num_labels": labels["num_labels"], "pooling": self.pooling}
                if self.keep_features or model_id == study.PRETRAINED:
                    write_npz(self._path("features", key, ".npz"), train_x=data["train_x"], test_x=data["test_x"],
                              train_y=data["train_y"], test_y=data["test_y"],
                              num_labels=np.int64(labels["num_labels"]), pooling=np.str_(self.pooling),
                              dtype=np.str_(self.dtype))
                self.stats["features_computed"] += 1
                log.info("features of %s on %s: %d examples in %.2fs (%.1f/s, %s, %d threads)", model_id,
                         dataset.name, len(examples), seconds, len(examples) / max(seconds, 1e-9), self.dtype,
                         self.threads)
                out[dataset.name] = data
        return out

    # ------------------------------------------------------------ probes

    def _train(self, data: dict, l2: float | None) -> dict:
        from threadpoolctl import threadpool_limits

        started = time.perf_counter()
        with threadpool_limits(limits=self.threads):  # the job's threads, and one BLAS summation order
            result = linear.train_probe(data, self.protocol, l2=linear.CROSS_VALIDATED if l2 is None else l2)
        self._seconds["probe"] += time.perf_counter() - started
        return result

    def evaluate(self, pairs: Iterable[tuple[str, str]], recipes: dict[str, Recipe], datasets: dict[str, Dataset],
                 l2: dict[str, float] | None = None) -> list[dict]:
        """The probe result of every (model id, dataset) pair, in the order given (duplicates once).

        ``l2``: a fixed L2 strength per dataset; a dataset without one (the workflow gives none) has its L2 chosen
        for each model by cross-validation on that model's own training features (linear.train_probe)."""
        l2 = l2 or {}
        pairs = list(dict.fromkeys(pairs))
        results: dict[tuple[str, str], dict] = {}
        todo: dict[str, list[tuple[Dataset, str]]] = {}
        for model_id, name in pairs:
            if model_id not in recipes or name not in datasets:
                raise WeightspaceError(f"evaluation of ({model_id}, {name}): no recipe or no dataset entry")
            dataset = datasets[name]
            fkey = self.features_key(recipes[model_id], dataset)
            cached = self._read_json("probe", self.probe_key(fkey, l2.get(name)))
            if cached is not None:
                self.stats["probes_cached"] += 1
                results[(model_id, name)] = dict(cached, model_id=model_id, dataset=name)
            else:
                todo.setdefault(model_id, []).append((dataset, fkey))
        for model_id, items in todo.items():
            arrays = self.features(model_id, recipes[model_id], [d for d, _ in items])
            for dataset, fkey in items:
                result = self._train(arrays[dataset.name], l2.get(dataset.name))
                result["features_key"] = fkey
                path = self._path("probe", self.probe_key(fkey, l2.get(dataset.name)), ".json")
                write_json(path, result)
                result = json.loads(path.read_text())  # as JSON holds it: a rerun reads the same thing
                self.stats["probes_computed"] += 1
                results[(model_id, dataset.name)] = dict(result, model_id=model_id, dataset=dataset.name)
        return [results[p] for p in pairs]

    def job_summary(self, started: float) -> dict:
        return dict(sorted(self.stats.items()), seconds=round(time.perf_counter() - started, 3),
                    **{f"seconds_{k}": round(v, 3) for k, v in sorted(self._seconds.items())},
                    dtype=self.dtype, threads=self.threads, pooling=self.pooling)


# ---------------------------------------------------------------- rule entries


def _evaluator(base_dir, cache_dir, settings: dict, threads: int) -> Evaluator:
    protocol = linear.Protocol.from_config(dict(settings.get("protocol", {})))
    return Evaluator(base_dir, cache_dir, protocol, pooling=settings.get("pooling"),
                     batch_size=settings.get("batch_size", 64), mixed_precision=settings.get("mixed_precision", "auto"),
                     threads=threads, keep_features=settings.get("keep_features", True))


def run(base_dir: str | Path, cache_dir: str | Path, out_path: str | Path, pairs: Sequence[Sequence[str]],
        recipes: dict[str, tuple[Sequence[str], Sequence[float]]], datasets: dict[str, dict], settings: dict,
        threads: int = 1, job: str | None = None) -> dict:
    """Rule entry of evaluate_model / evaluate_group: every pair's probe result -> one results file.

    recipes: model id -> (weights files, coefficients); datasets: name -> {data_dir, max_length}. Each probe's L2
    is chosen on its own model's training features, so a job depends on its own models and datasets only.
    """
    started = time.perf_counter()
    evaluator = _evaluator(base_dir, cache_dir, settings, threads)
    specs = {name: Dataset(name, str(d["data_dir"]), int(d.get("max_length", 128))) for name, d in datasets.items()}
    results = evaluator.evaluate([tuple(p) for p in pairs], {m: Recipe.of(*r) for m, r in recipes.items()}, specs)
    summary = dict(job=job, pairs=len(results), **evaluator.job_summary(started))
    store.write(out_path, results, summary)
    log.info("%s: %d pairs; %s", job or "evaluation", len(results), summary)
    return summary
