"""Models evaluated by the linear probe: many (model, dataset) pairs in one process, cached.

A job evaluates a set of pairs: a stored model on every dataset of the study, or the
mixes of one traversal group (a line, a plane, a region) on their datasets. Each pair
needs the model's frozen-encoder features of the dataset (one encoder pass over train
and test together: probe.encoder) and a probe trained on them, its L2 strength chosen by
cross-validation on those features' training split (so no model is favoured by another's
tuning). Both are cached under ``cache_dir`` by what they are computed from (probe.cache:
the keys and the files).

This module decides which pairs need what: a pair whose probe result is cached needs
nothing; the others are grouped by model, read their features from the cache or have them
computed (one model load for all of a model's missing datasets), and are probed. So adding
a dataset computes only the pairs that involve it, a job rerun after its output was deleted
reads everything from the cache (no model is loaded), and a changed dataset or model
recomputes exactly its pairs. The rule entry `run` writes every pair's result (probe.store
reads it) and what the job computed and found cached, with its seconds per stage.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from weightspace import WeightspaceError, study
from weightspace.probe import cache, linear, store
from weightspace.probe.encoder import Dataset, Encoder, Recipe

log = logging.getLogger(__name__)

__all__ = ["Dataset", "Evaluator", "Recipe", "run"]


class Evaluator:
    """Features and probe results of (model, dataset) pairs, from the cache or computed."""

    def __init__(
        self,
        base_dir: str | Path,
        cache_dir: str | Path,
        protocol: linear.Protocol,
        pooling: str | None = None,
        batch_size: int = 64,
        mixed_precision: str = "auto",
        threads: int = 1,
        keep_features: bool = True,
    ):
        self.protocol = protocol
        self.threads = max(int(threads), 1)
        self.encoder = Encoder(base_dir, pooling, batch_size, mixed_precision, self.threads)
        self.cache = cache.Cache(cache_dir)
        # False: only probe results stay in the cache (a few kB a pair, against hidden × examples
        # floats); the pretrained model's features stay either way: every dataset's baseline,
        # re-probed when the protocol changes
        self.keep_features = bool(keep_features)
        self.stats: Counter = Counter()
        self._tokenizer_key = cache.tokenizer_key(base_dir)
        self._seconds: Counter = Counter()  # probe (the encoder times its own stages)

    # ------------------------------------------------------------ keys

    def features_key(self, recipe: Recipe, dataset: Dataset) -> str:
        model, data = cache.model_key(recipe), cache.data_key(dataset)
        return cache.features_key(
            model,
            data,
            self._tokenizer_key,
            self.encoder.pooling,
            dataset.max_length,
            self.encoder.batch_size,
            self.encoder.dtype,
        )

    def probe_key(self, features_key: str, l2: float | None) -> str:
        return cache.probe_key(features_key, self.protocol, l2)

    # ------------------------------------------------------------ features

    def features(
        self, model_id: str, recipe: Recipe, datasets: Iterable[Dataset]
    ) -> dict[str, dict]:
        """dataset name -> this model's features arrays on it; one model load for all missing."""
        out, missing = {}, []
        for dataset in datasets:
            key = self.features_key(recipe, dataset)
            data = self.cache.read_features(key)
            if data is None:
                missing.append((dataset, key))
            else:
                self.stats["features_cached"] += 1
                out[dataset.name] = data
        if missing:
            self.encoder.load(recipe)
            for dataset, key in missing:
                out[dataset.name] = self._computed_features(model_id, dataset, key)
        return out

    def _computed_features(self, model_id: str, dataset: Dataset, key: str) -> dict:
        """The loaded model's features of ``dataset``, cached under ``key`` where features are
        kept."""
        x, labels, seconds = self.encoder.encode(dataset)
        self.stats["examples_encoded"] += len(x)
        if not np.isfinite(x).all():
            raise WeightspaceError(f"features of {model_id} on {dataset.name} are not finite")
        n_train = len(labels["train_y"])
        data = {
            "train_x": x[:n_train],
            "test_x": x[n_train:],
            "train_y": labels["train_y"],
            "test_y": labels["test_y"],
            "num_labels": labels["num_labels"],
            "pooling": self.encoder.pooling,
        }
        if self.keep_features or model_id == study.PRETRAINED:
            self.cache.write_features(key, data, self.encoder.dtype)
        self.stats["features_computed"] += 1
        log.info(
            "features of %s on %s: %d examples in %.2fs (%.1f/s, %s, %d threads)",
            model_id,
            dataset.name,
            len(x),
            seconds,
            len(x) / max(seconds, 1e-9),
            self.encoder.dtype,
            self.threads,
        )
        return data

    # ------------------------------------------------------------ probes

    def _probe(self, data: dict, features_key: str, l2: float | None) -> dict:
        """A probe trained on ``data`` (``l2`` fixed, or None: cross-validated); its result is
        cached."""
        from threadpoolctl import threadpool_limits

        started = time.perf_counter()
        l2_setting = linear.CROSS_VALIDATED if l2 is None else l2
        with threadpool_limits(limits=self.threads):  # the job's threads, one BLAS summation order
            result = linear.train_probe(data, self.protocol, l2=l2_setting)
        self._seconds["probe"] += time.perf_counter() - started
        result["features_key"] = features_key
        result = self.cache.write_probe(self.probe_key(features_key, l2), result)
        self.stats["probes_computed"] += 1
        return result

    def evaluate(
        self,
        pairs: Iterable[tuple[str, str]],
        recipes: dict[str, Recipe],
        datasets: dict[str, Dataset],
        l2: dict[str, float] | None = None,
    ) -> list[dict]:
        """The probe result of every (model id, dataset) pair, in the order given (duplicates once).

        ``l2``: a fixed L2 strength per dataset; a dataset without one (the workflow gives none)
        has its L2 chosen for each model by cross-validation on that model's own training features
        (linear.train_probe)."""
        l2 = l2 or {}
        pairs = list(dict.fromkeys(pairs))
        results: dict[tuple[str, str], dict] = {}
        todo: dict[str, list[tuple[Dataset, str]]] = {}  # model id -> its pairs without a probe
        for model_id, name in pairs:
            if model_id not in recipes or name not in datasets:
                raise WeightspaceError(
                    f"evaluation of ({model_id}, {name}): no recipe or no dataset entry"
                )
            dataset = datasets[name]
            fkey = self.features_key(recipes[model_id], dataset)
            cached = self.cache.read_probe(self.probe_key(fkey, l2.get(name)))
            if cached is not None:
                self.stats["probes_cached"] += 1
                results[(model_id, name)] = dict(cached, model_id=model_id, dataset=name)
            else:
                todo.setdefault(model_id, []).append((dataset, fkey))
        for model_id, items in todo.items():
            arrays = self.features(model_id, recipes[model_id], [d for d, _ in items])
            for dataset, fkey in items:
                result = self._probe(arrays[dataset.name], fkey, l2.get(dataset.name))
                results[(model_id, dataset.name)] = dict(
                    result, model_id=model_id, dataset=dataset.name
                )
        return [results[p] for p in pairs]

    def job_summary(self, started: float) -> dict:
        """What the job computed and found cached, its seconds in all and per stage
        (seconds_load_model, _tokenize, _encode, _probe: the stage-times table reads them), and
        the encoder's settings."""
        seconds = {**self.encoder.seconds, **self._seconds}
        return dict(
            sorted(self.stats.items()),
            seconds=round(time.perf_counter() - started, 3),
            **{f"seconds_{k}": round(v, 3) for k, v in sorted(seconds.items())},
            dtype=self.encoder.dtype,
            threads=self.threads,
            pooling=self.encoder.pooling,
        )


# ---------------------------------------------------------------- rule entries


def _evaluator(base_dir, cache_dir, settings: dict, threads: int) -> Evaluator:
    protocol = linear.Protocol.from_config(dict(settings.get("protocol", {})))
    return Evaluator(
        base_dir,
        cache_dir,
        protocol,
        pooling=settings.get("pooling"),
        batch_size=settings.get("batch_size", 64),
        mixed_precision=settings.get("mixed_precision", "auto"),
        threads=threads,
        keep_features=settings.get("keep_features", True),
    )


def run(
    base_dir: str | Path,
    cache_dir: str | Path,
    out_path: str | Path,
    pairs: Sequence[Sequence[str]],
    recipes: dict[str, tuple[Sequence[str], Sequence[float]]],
    datasets: dict[str, dict],
    settings: dict,
    threads: int = 1,
    job: str | None = None,
) -> dict:
    """Rule entry of evaluate_model / evaluate_group: every pair's probe result -> one results file.

    recipes: model id -> (weights files, coefficients); datasets: name -> {data_dir, max_length}.
    Each probe's L2 is chosen on its own model's training features, so a job depends on its own
    models and datasets only.
    """
    started = time.perf_counter()
    evaluator = _evaluator(base_dir, cache_dir, settings, threads)
    specs = {
        name: Dataset(name, str(d["data_dir"]), int(d.get("max_length", 128)))
        for name, d in datasets.items()
    }
    pairs = [tuple(p) for p in pairs]
    results = evaluator.evaluate(pairs, {m: Recipe.of(*r) for m, r in recipes.items()}, specs)
    summary = dict(job=job, pairs=len(results), **evaluator.job_summary(started))
    store.write(out_path, results, summary)
    log.info("%s: %d pairs; %s", job or "evaluation", len(results), summary)
    return summary
