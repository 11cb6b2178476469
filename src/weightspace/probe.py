"""The linear probe: a new, seeded linear head trained on a frozen encoder's cached features.

The head sees standardised features (train mean and std) and minimises the mean
cross-entropy plus (l2/2)·||W||² (bias unpenalised) with full-batch L-BFGS in float64.
The problem is convex and strictly so in W, so the result hardly depends on the seed
and is bitwise reproducible on one machine and thread count. The reported loss is the
test cross-entropy in nats: comparable across models on one target dataset.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import WeightspaceError
from . import features as feature_files
from .atomic import write_json

log = logging.getLogger(__name__)

OPTIMIZERS = ("lbfgs",)


@dataclass(frozen=True)
class Protocol:
    """How every head is trained (config.yaml `probe:`); written into each result."""

    optimizer: str = "lbfgs"
    max_iter: int = 500
    tolerance: float = 1e-6  # stop when every gradient entry is below this
    l2: float = 1e-2
    seed: int = 0
    standardize: bool = True
    history_size: int = 20
    tolerance_change: float = 1e-12  # ... or when the objective stops moving

    @classmethod
    def from_config(cls, section: dict) -> "Protocol":
        known = set(cls.__dataclass_fields__)
        protocol = cls(**{k: v for k, v in section.items() if k in known})
        if protocol.optimizer not in OPTIMIZERS:
            raise WeightspaceError(f"config key probe.optimizer: '{protocol.optimizer}' is not one of {OPTIMIZERS}")
        if protocol.l2 < 0 or protocol.max_iter < 1 or protocol.tolerance <= 0:
            raise WeightspaceError("config keys probe.l2 >= 0, probe.max_iter >= 1 and probe.tolerance > 0 are required")
        return protocol


class LinearHead(torch.nn.Module):
    """logits = standardise(x) Wᵀ + b, float64; W and b drawn like torch.nn.Linear from a seeded generator."""

    def __init__(self, dim: int, num_labels: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        bound = 1.0 / math.sqrt(dim)
        draw = lambda *shape: (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound  # noqa: E731
        self.weight = torch.nn.Parameter(draw(num_labels, dim))
        self.bias = torch.nn.Parameter(draw(num_labels))
        self.register_buffer("shift", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(dim, dtype=torch.float64))

    def standardise_with(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        std = x.std(0, unbiased=False)
        self.shift.copy_(x.mean(0))
        self.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))  # a constant feature stays 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64) - self.shift) / self.scale
        return z @ self.weight.T + self.bias


def objective(head: LinearHead, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()


def fit(head: LinearHead, train_features: Callable[[], torch.Tensor], train_y: torch.Tensor,
        protocol: Protocol) -> dict:
    """Train ``head`` with full-batch L-BFGS; ``train_features()`` is called once per evaluation.

    With cached features it returns the same tensor every time; with the encoder in the
    loop it runs the frozen encoder over the training split (the slow reference the
    cache replaces). Standardisation statistics come from one extra call first.
    """
    calls = 0

    def features() -> torch.Tensor:
        nonlocal calls
        calls += 1
        return train_features()

    if protocol.standardize:
        head.standardise_with(features())
    params = [head.weight, head.bias]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=protocol.max_iter, tolerance_grad=protocol.tolerance,
                                  tolerance_change=protocol.tolerance_change, history_size=protocol.history_size,
                                  line_search_fn="strong_wolfe")
    last = {}

    def closure():
        optimizer.zero_grad(set_to_none=False)
        x = features()
        loss = objective(head, x, train_y, protocol.l2)
        loss.backward()
        last["x"] = x
        return loss

    optimizer.step(closure)
    state = optimizer.state[params[0]]
    with torch.no_grad():
        final = objective(head, last["x"], train_y, protocol.l2)
    grad_max = max(float(p.grad.abs().max()) for p in params)
    return {
        "iterations": int(state.get("n_iter", 0)),
        "evaluations": int(state.get("func_evals", 0)),
        "feature_passes": calls,
        "objective": float(final),
        "grad_max": grad_max,
        "converged": grad_max <= protocol.tolerance or int(state.get("n_iter", 0)) < protocol.max_iter,
    }


@torch.no_grad()
def evaluate(head: LinearHead, x: torch.Tensor, y: torch.Tensor) -> dict:
    logits = head(x)
    return {
        "loss": float(torch.nn.functional.cross_entropy(logits, y)),
        "accuracy": float((logits.argmax(-1) == y).double().mean()),
    }


def chance(train_y: np.ndarray, test_y: np.ndarray, num_labels: int) -> dict:
    """What knowing only the train label frequencies gives (add-one smoothed): the floor a probe must beat."""
    prior = (np.bincount(train_y, minlength=num_labels) + 1.0) / (len(train_y) + num_labels)
    return {"loss": float(-np.log(prior[test_y]).mean()), "accuracy": float((test_y == prior.argmax()).mean())}


def train_probe(data: dict, protocol: Protocol) -> dict:
    """Train and evaluate a head on cached features (the arrays of a features file)."""
    num_labels = int(data["num_labels"])
    train_x = torch.from_numpy(np.asarray(data["train_x"])).to(torch.float64)
    test_x = torch.from_numpy(np.asarray(data["test_x"])).to(torch.float64)
    train_y = torch.from_numpy(np.asarray(data["train_y"], dtype=np.int64))
    test_y = torch.from_numpy(np.asarray(data["test_y"], dtype=np.int64))
    if len(train_y) == 0 or len(test_y) == 0:
        raise WeightspaceError("the probe needs training and test examples")
    head = LinearHead(train_x.shape[1], num_labels, protocol.seed)
    started = time.perf_counter()
    info = fit(head, lambda: train_x, train_y, protocol)
    seconds = time.perf_counter() - started
    if not info["converged"]:
        log.warning("the probe did not converge in %d iterations (max gradient %.2e)", protocol.max_iter,
                    info["grad_max"])
    test = evaluate(head, test_x, test_y)
    train = evaluate(head, train_x, train_y)
    return {
        "loss": test["loss"],
        "accuracy": test["accuracy"],
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
        "num_labels": num_labels,
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "chance": chance(data["train_y"], data["test_y"], num_labels),
        "protocol": dict(asdict(protocol), feature_dim=int(train_x.shape[1]), pooling=data.get("pooling")),
        "fit": dict(info, seconds=round(seconds, 4)),
    }


def run(features_path: str | Path, out_path: str | Path, protocol: Protocol, model_id: str | None = None,
        dataset: str | None = None, threads: int = 1) -> dict:
    """Rule entry: a features file in, results/probe/{model_id}/{dataset}.json out."""
    torch.set_num_threads(max(int(threads), 1))
    result = dict(model_id=model_id, dataset=dataset, **train_probe(feature_files.load(features_path), protocol))
    write_json(out_path, result)
    log.info("probe of %s on %s: test loss %.4f, accuracy %.4f (chance %.4f / %.4f), %d iterations, %.2fs",
             model_id, dataset, result["loss"], result["accuracy"], result["chance"]["loss"],
             result["chance"]["accuracy"], result["fit"]["iterations"], result["fit"]["seconds"])
    return result
