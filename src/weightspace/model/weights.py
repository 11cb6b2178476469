"""Encoder weights: the unit of the geometry.

A model's encoder is its transformer without any pooler or head, for every family: the
embeddings and the layers, under canonical names (the base-model prefix such as ``bert.`` or
``roberta.`` stripped). Pretrained, fine-tuned, fused and mixed models have exactly the same
tensors. They are stored float32, one safetensors file per model; everything the geometry,
the probe and the fusion do to a model goes through these files. Names are worked out from
the tensor names and the config's model_type alone: extracting a model's encoder reads and
writes tensors without building the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from weightspace import WeightspaceError
from weightspace.atomic import atomic_path, canonical_header, write_safetensors

if TYPE_CHECKING:
    import torch

FORMAT = "weightspace-encoder-v2"  # v2: poolers are never part of the encoder

# model_type -> the attribute (and state-dict prefix) of the encoder inside a task model
# (*ForSequenceClassification, *ForMaskedLM, ...). Others are asked of transformers.
BASE_PREFIX = {
    "bert": "bert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "xlm-roberta-xl": "roberta",
    "camembert": "roberta",
    "distilbert": "distilbert",
    "mpnet": "mpnet",
    "deberta": "deberta",
    "deberta-v2": "deberta",
    "electra": "electra",
    "albert": "albert",
    "modernbert": "model",
}
# top-level modules of a bare encoder that are not the transformer itself
NOT_ENCODER = ("pooler.",)


def model_type_of(model_type_or_config) -> str:
    """The model_type of a config object, a config.json dict, a config.json path or a model folder,
    or a str."""
    if (
        isinstance(model_type_or_config, str)
        and "/" not in model_type_or_config
        and not model_type_or_config.endswith(".json")
    ):
        return model_type_or_config
    if isinstance(model_type_or_config, (str, Path)):
        path = Path(model_type_or_config)
        path = path / "config.json" if path.is_dir() else path
        model_type_or_config = json.loads(path.read_text())
    if isinstance(model_type_or_config, Mapping):
        model_type = model_type_or_config.get("model_type")
    else:
        model_type = getattr(model_type_or_config, "model_type", None)
    if not model_type:
        raise WeightspaceError(f"cannot tell the model_type of {model_type_or_config!r}")
    return model_type


def base_prefix(model_type_or_config) -> str:
    """The encoder's prefix in a task model's state dict,
    e.g. 'roberta' for RoBERTa and XLM-RoBERTa."""
    model_type = model_type_of(model_type_or_config)
    if model_type in BASE_PREFIX:
        return BASE_PREFIX[model_type]
    try:  # any other family: its encoder class says (imports transformers, slower)
        import transformers
        from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

        return getattr(transformers, MODEL_MAPPING_NAMES[model_type]).base_model_prefix
    except Exception:
        raise WeightspaceError(
            f"model_type '{model_type}': cannot tell which tensors are its encoder "
            f"(known: {', '.join(BASE_PREFIX)})"
        ) from None


def encoder_keys(
    floating: Mapping[str, bool], model_type_or_config, prefix: str | None = None
) -> dict[str, str]:
    """canonical encoder name -> the key in a state dict, given each key's 'is a float tensor'.

    A task model's state dict (``roberta.encoder...``, ``classifier...``) keeps the keys under its
    encoder prefix, stripped; a bare encoder's (``encoder...``, ``pooler...``) keeps its own keys.
    Either way poolers, heads and non-float buffers (position ids) are left out. ``prefix``: the
    model's own ``base_model_prefix`` where a model object is at hand (remote-code families).
    """
    prefix = (prefix or base_prefix(model_type_or_config)) + "."
    wrapped = any(key.startswith(prefix) for key in floating)
    out = {}
    for key, is_float in floating.items():
        if wrapped:
            if not key.startswith(prefix):
                continue  # the head (classifier, pre_classifier, a task pooler, lm_head)
            name = key[len(prefix) :]
        else:
            name = key
        if is_float and not name.startswith(NOT_ENCODER):
            out[name] = key
    if not out:
        raise WeightspaceError(f"no encoder tensors among {list(floating)[:5]}...")
    return dict(sorted(out.items()))


def encoder_tensors_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], model_type_or_config
) -> dict[str, torch.Tensor]:
    """The encoder tensors of a task model's or a bare encoder's state dict: canonical names,
    float32, on CPU."""
    import torch

    keys = encoder_keys(
        {k: t.is_floating_point() for k, t in state_dict.items()}, model_type_or_config
    )
    return {
        name: state_dict[key].detach().to("cpu", torch.float32).clone()
        for name, key in keys.items()
    }


def encoder_weights(model) -> dict[str, torch.Tensor]:
    """The encoder tensors of a model object (task model or bare encoder), float32."""
    import torch

    state = model.state_dict()
    keys = encoder_keys(
        {k: t.is_floating_point() for k, t in state.items()},
        model.config,
        getattr(model, "base_model_prefix", None),
    )
    return {
        name: state[key].detach().to("cpu", torch.float32).clone() for name, key in keys.items()
    }


def load_into(model, weights: Mapping[str, torch.Tensor]) -> None:
    """Copy canonical encoder weights into a model (task model or bare encoder) strictly: every
    encoder tensor named, every shape equal; its pooler and head stay as they are."""
    import torch

    state = model.state_dict()
    keys = encoder_keys(
        {k: t.is_floating_point() for k, t in state.items()},
        model.config,
        getattr(model, "base_model_prefix", None),
    )
    missing = sorted(set(keys) - set(weights))
    unexpected = sorted(set(weights) - set(keys))
    if missing or unexpected:
        raise WeightspaceError(
            f"encoder weights do not match the base: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    for name, key in keys.items():
        if tuple(weights[name].shape) != tuple(state[key].shape):
            raise WeightspaceError(
                f"encoder weight {name}: shape {tuple(weights[name].shape)} != base "
                f"{tuple(state[key].shape)}"
            )
    with torch.no_grad():
        for name, key in keys.items():
            state[key].copy_(weights[name].to(state[key].dtype))


def save(path: str | Path, weights: Mapping[str, torch.Tensor], model_id: str, **metadata) -> None:
    write_safetensors(path, dict(weights), {"model_id": model_id, "format": FORMAT, **metadata})


def load(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise WeightspaceError(
            f"weights file {path} is not a readable safetensors file: {err}"
        ) from None


def names_and_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def combine(paths: Iterable[str | Path], coefficients: Iterable[float]) -> dict[str, torch.Tensor]:
    """Σ c_i θ_i, parameter by parameter, reading one tensor per file at a time.

    Interpolation (1-α, α), planes, Dirichlet samples and averages (1/n each) are all
    this one operation; the mean is over the model axis only.
    """
    import torch
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


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
NUMPY_FLOATS = ("F64", "F32", "F16")


def model_files(folder: str | Path) -> list[Path]:
    """The safetensors file(s) of a Hugging Face model folder
    (one file, or the shards of an index)."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return sorted(
            {folder / name for name in json.loads(index.read_text())["weight_map"].values()}
        )
    raise WeightspaceError(
        f"model folder {folder} has no model.safetensors (nor a safetensors index)"
    )


def _read_encoder(folder: Path, model_type_or_config, framework: str) -> dict:
    from safetensors import safe_open

    model_type = model_type_of(model_type_or_config if model_type_or_config is not None else folder)
    handles, floating, dtypes = {}, {}, {}
    for path in model_files(folder):
        handle = safe_open(str(path), framework=framework)
        for key in handle.keys():
            handles[key] = handle
            dtypes[key] = handle.get_slice(key).get_dtype()
            floating[key] = dtypes[key] in FLOAT_DTYPES
    keys = encoder_keys(floating, model_type)
    if framework == "np" and any(dtypes[key] not in NUMPY_FLOATS for key in keys.values()):
        return _read_encoder(folder, model_type, "pt")  # bf16 / fp8: numpy has no such type
    return {
        name: handles[key].get_tensor(key).astype("float32", copy=False)
        if framework == "np"
        else handles[key].get_tensor(key).float()
        for name, key in keys.items()
    }


def encoder_layout(folder: str | Path, model_type_or_config=None) -> dict[str, tuple[int, ...]]:
    """Canonical encoder name -> shape of a model folder's safetensors, from the headers alone
    (no tensor is read): what a compatibility check compares."""
    from safetensors import safe_open

    folder = Path(folder)
    model_type = model_type_of(model_type_or_config if model_type_or_config is not None else folder)
    shapes, floating = {}, {}
    for path in model_files(folder):
        with safe_open(str(path), framework="np") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                shapes[key] = tuple(piece.get_shape())
                floating[key] = piece.get_dtype() in FLOAT_DTYPES
    return {name: shapes[key] for name, key in encoder_keys(floating, model_type).items()}


def read_encoder(folder: str | Path, model_type_or_config=None) -> dict[str, torch.Tensor]:
    """The encoder tensors of a model folder's safetensors, float32, read tensor by tensor
    (no model is built).

    ``model_type_or_config`` defaults to the folder's own config.json.
    """
    import torch

    arrays = _read_encoder(Path(folder), model_type_or_config, "pt")
    return {name: t.to(torch.float32) for name, t in arrays.items()}


def extract(
    base_dir: str | Path, model_dir: str | Path | None, out_path: str | Path
) -> dict[str, tuple]:
    """Write the encoder weights of a fine-tuned model (or of the base when ``model_dir`` is None).

    Reads the safetensors tensor by tensor and writes the encoder's, canonical names, float32; the
    model type comes from the base's config.json. Neither a model nor torch is loaded (numpy reads
    and writes; torch only for bf16 sources). Returns the parameter names and shapes.
    """
    base_dir = Path(base_dir)
    if model_dir is None:
        folder, model_id = base_dir, "pretrained"
    else:
        folder, model_id = Path(model_dir), f"{Path(model_dir).parent.name}.{Path(model_dir).name}"
    return extract_folder(folder, out_path, model_id, base_dir, base_dir / "config.json")


def extract_folder(
    folder: str | Path,
    out_path: str | Path,
    model_id: str,
    base_dir: str | Path,
    model_type_or_config=None,
    **metadata,
) -> dict[str, tuple]:
    """Write the encoder weights of any model folder (``extract``'s work; brought models give
    their own config and metadata such as their source). Returns the names and shapes."""
    import logging

    import numpy as np

    tensors = _read_encoder(Path(folder), model_type_or_config, "np")
    metadata = {"model_id": model_id, "format": FORMAT, **metadata}
    base_json = Path(base_dir) / "base.json"
    if base_json.exists():
        info = json.loads(base_json.read_text())
        metadata.update(base=info.get("source", ""), base_commit=info.get("commit") or "")
    if all(isinstance(t, np.ndarray) for t in tensors.values()):
        from safetensors.numpy import save_file

        with atomic_path(out_path) as tmp:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in tensors.items()},
                str(tmp),
                metadata={k: str(v) for k, v in metadata.items()},
            )
            canonical_header(tmp)
    else:
        save(
            out_path,
            tensors,
            model_id,
            **{k: v for k, v in metadata.items() if k not in ("model_id", "format")},
        )
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    logging.getLogger(__name__).info(
        "%s: %d encoder tensors, %d parameters",
        model_id,
        len(shapes),
        sum(int(np.prod(s)) for s in shapes.values()),
    )
    return shapes
