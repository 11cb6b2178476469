"""Encoder weights: the unit of the geometry.

A model's encoder weights are its parameters with the classification head removed,
float32, in one safetensors file per model. Everything the geometry, the probe and the
fusion do to a model goes through these files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch

from . import WeightspaceError
from .atomic import write_safetensors


def encoder_weights(model) -> dict[str, torch.Tensor]:
    """The encoder's parameters (and buffers that are weights) of a model, float32.

    For a *ForSequenceClassification model the encoder is ``model.base_model``; the head
    is everything else. Non-float buffers (position ids) are not weights and are left out.
    """
    encoder = getattr(model, "base_model", model)
    state = encoder.state_dict()
    return {
        name: t.detach().to("cpu", torch.float32).clone()
        for name, t in state.items()
        if t.is_floating_point()
    }


def save(path: str | Path, weights: Mapping[str, torch.Tensor], model_id: str, **metadata) -> None:
    write_safetensors(path, dict(weights), {"model_id": model_id, "format": "weightspace-encoder-v1", **metadata})


def load(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise WeightspaceError(f"weights file {path} is not a readable safetensors file: {err}") from None


def names_and_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def combine(paths: Iterable[str | Path], coefficients: Iterable[float]) -> dict[str, torch.Tensor]:
    """Σ c_i θ_i, parameter by parameter, reading one tensor per file at a time.

    Interpolation (1-α, α), planes, Dirichlet samples and averages (1/n each) are all
    this one operation; the mean is over the model axis only.
    """
    from safetensors import safe_open

    paths = [str(p) for p in paths]
    coefficients = [float(c) for c in coefficients]
    if len(paths) != len(coefficients) or not paths:
        raise ValueError("combine needs one coefficient per weights file")
    handles = [safe_open(p, framework="pt") for p in paths]
    names = list(handles[0].keys())
    for p, h in zip(paths[1:], handles[1:]):
        if sorted(h.keys()) != sorted(names):
            raise WeightspaceError(f"weights file {p} has other parameters than {paths[0]}")
    out = {}
    for name in names:
        # float64 accumulation so that α=0 and α=1 return an endpoint exactly
        acc = torch.zeros(handles[0].get_slice(name).get_shape(), dtype=torch.float64)
        for c, h in zip(coefficients, handles):
            if c != 0.0:
                acc.add_(h.get_tensor(name).to(torch.float64), alpha=c)
        out[name] = acc.to(torch.float32)
    return out


def average(paths: Iterable[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean over models (the fusion of a region)."""
    paths = list(paths)
    return combine(paths, [1.0 / len(paths)] * len(paths))


def extract(base_dir: str | Path, model_dir: str | Path | None, out_path: str | Path) -> dict[str, tuple]:
    """Write the encoder weights of a fine-tuned model (or of the base when ``model_dir`` is None).

    Returns the parameter names and shapes, which are also logged.
    """
    import logging

    from . import base_model
    from .finetune import load_finetuned

    if model_dir is None:
        model, model_id = base_model.load_encoder(base_dir), "pretrained"
    else:
        model, model_id = load_finetuned(model_dir, base_dir), f"{Path(model_dir).parent.name}.{Path(model_dir).name}"
    tensors = encoder_weights(model)
    save(out_path, tensors, model_id)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    logging.getLogger(__name__).info(
        "%s: %d encoder tensors, %d parameters", model_id, len(shapes), sum(t.numel() for t in tensors.values())
    )
    return shapes
