"""Frozen-encoder features: one pass of a model's encoder over a dataset's train and test splits.

The linear probe never trains through the encoder: it reads these pooled features,
computed once per (model, dataset) by an evaluation job (weightspace.probe.evaluation, which
caches them by content under results/probe/cache/features/) and stored as arrays
(train_x, train_y, test_x, test_y, num_labels, pooling). Batches are length-sorted and
padded to their own longest example (model/encoding.py, as fine-tuning's); the encoder runs
under torch.inference_mode in the precision `precision` picks (model/precision.py): fp32 on
CPUs without native bf16 (AVX2 emulates it ~100x slower), bf16 autocast where the CPU has it
(AMX, AVX512-BF16) or on CUDA.
torch and pandas are imported where they are used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weightspace import WeightspaceError
from weightspace.atomic import write_npz
from weightspace.model import base_model
from weightspace.model import precision as numerics
from weightspace.model.encoding import collate, tokenize, tokenize_frame  # noqa: F401 (features.tokenize, .collate)
from weightspace.progress import Progress

if TYPE_CHECKING:
    import pandas as pd
    import torch

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")
SPLITS = ("train", "test")
PRECISIONS = ("auto", "bf16", "no")  # the probe.mixed_precision settings


# ---------------------------------------------------------------- the model's encoder


def recipe_weights(
    paths: Sequence[str | Path], coefficients: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The encoder weights Σ c_i θ_i; a stored model (one file, coefficient 1) is read as is."""
    from weightspace.model import weights as weight_files

    paths, coefficients = list(paths), [float(c) for c in coefficients]
    if len(paths) != len(coefficients) or not paths:
        raise WeightspaceError(
            f"a model recipe needs one coefficient per weights file: {paths} / {coefficients}"
        )
    if len(paths) == 1 and coefficients[0] == 1.0:
        return weight_files.load(paths[0])
    return weight_files.combine(paths, coefficients)


def resolve_pooling(base_dir: str | Path, pooling: str | None) -> str:
    """The configured pooling, or the base's natural one (base.json) when None."""
    pooling = pooling or base_model.base_info(base_dir).get("pooling") or "cls"
    if pooling not in POOLINGS:
        raise WeightspaceError(
            f"config key probe.pooling: '{pooling}' is not one of {', '.join(POOLINGS)}"
        )
    return pooling


# ---------------------------------------------------------------- data


def split_path(data_dir: str | Path, split: str) -> Path:
    """The file of a split the probe reads: its `train` is the prepared probe split (training
    examples the fine-tunes never saw, data.py) where there is one; a folder without it (prepared by
    hand) gives train."""
    data_dir = Path(data_dir)
    if split == "train" and (data_dir / "probe.parquet").exists():
        return data_dir / "probe.parquet"
    return data_dir / f"{split}.parquet"


def read_split(data_dir: str | Path, split: str, num_labels: int) -> pd.DataFrame:
    import pandas as pd

    path = split_path(data_dir, split)
    if not path.exists():
        raise WeightspaceError(f"prepared data file {path} is missing; run prepare_dataset first")
    frame = pd.read_parquet(path)
    for column in ("text", "label"):
        if column not in frame.columns:
            raise WeightspaceError(f"prepared data file {path} has no column '{column}'")
    if len(frame) == 0:
        raise WeightspaceError(f"prepared data file {path} has no examples")
    labels = frame["label"]
    if not pd.api.types.is_integer_dtype(labels) or labels.min() < 0 or labels.max() >= num_labels:
        raise WeightspaceError(
            f"prepared data file {path}: column 'label' must hold integers 0..{num_labels - 1} "
            "(meta.json num_labels)"
        )
    return frame


# ---------------------------------------------------------------- the pass


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """cls: the first token's last hidden state; mean: the mean over real (unmasked) tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    raise WeightspaceError(f"unknown pooling '{pooling}'; use one of {', '.join(POOLINGS)}")


def precision(device: torch.device | str, mixed_precision: str = "auto") -> str:
    """The precision the encoder's matmuls run in: fp32 or bf16 (model/precision.py decides `auto`:
    bf16 on a CPU only where it computes bf16 natively; on CUDA bf16, else fp16)."""
    return numerics.resolve(device, mixed_precision, "probe.mixed_precision", PRECISIONS)


def autocast_for(device: torch.device, mixed_precision: str = "auto"):
    """The autocast context of `precision` on this device (nothing for fp32)."""
    return numerics.autocast(precision(device, mixed_precision), device)


def encode(
    encoder,
    examples: list[dict],
    pooling: str,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    mixed_precision: str = "auto",
    padding: str = "dynamic",
    max_length: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Pooled features (n, hidden) float32, in the order of ``examples``.

    padding='dynamic' sorts examples by length so each batch pads only to its own
    longest example, then restores the original order; padding='max_length' pads
    every batch, in the given order, to ``max_length`` (the slow reference).
    """
    import torch

    from weightspace import hardware

    device = torch.device(device)
    hardware.attention_for_dynamic_shapes(device)
    if padding == "dynamic":
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
        width = None
    elif padding == "max_length":
        order, width = list(range(len(examples))), max_length
    else:
        raise ValueError(f"padding must be dynamic or max_length, not {padding}")
    encoder.eval()
    out = None
    with torch.inference_mode(), autocast_for(device, mixed_precision):
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = {
                k: v.to(device)
                for k, v in collate([examples[i] for i in index], pad_id, width).items()
            }
            hidden = encoder(**batch).last_hidden_state.float()
            pooled = pool(hidden, batch["attention_mask"].float(), pooling).cpu().numpy()
            if out is None:
                out = np.empty((len(examples), pooled.shape[1]), dtype=np.float32)
            out[index] = pooled  # back to the caller's order
            if progress is not None:
                progress.update(len(index))
    if out is None:
        raise WeightspaceError("no examples to encode")
    return out


def extract(
    base_dir: str | Path,
    weight_paths: Sequence[str | Path],
    coefficients: Sequence[float],
    data_dir: str | Path,
    out_path: str | Path,
    pooling: str | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    threads: int = 1,
    mixed_precision: str = "auto",
    model_id: str | None = None,
) -> dict:
    """Write the frozen encoder's pooled features of a dataset's train and test splits to
    ``out_path`` (npz).

    Longer than most: it is one job read top to bottom (the inputs, one `encode` pass per split,
    the finiteness check, the file and its summary), and most of its lines are the arguments of
    its calls and the summary's fields, one a line.
    """
    import torch

    base_dir, data_dir = Path(base_dir), Path(data_dir)
    torch.set_num_threads(max(int(threads), 1))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meta_path = data_dir / "meta.json"
    if not meta_path.exists():
        raise WeightspaceError(
            f"prepared data file {meta_path} is missing; run prepare_dataset first"
        )
    meta = json.loads(meta_path.read_text())
    num_labels = int(meta["num_labels"])
    dataset = meta.get("name", data_dir.name)
    pooling = resolve_pooling(base_dir, pooling)

    tokenizer = base_model.load_tokenizer(base_dir)
    pad_id = base_model.pad_id(tokenizer)
    encoder = base_model.load_encoder(base_dir, recipe_weights(weight_paths, coefficients)).to(
        device
    )

    frames = {split: read_split(data_dir, split, num_labels) for split in SPLITS}
    tokens = {
        split: tokenize_frame(tokenizer, frame, max_length) for split, frame in frames.items()
    }
    total = sum(len(t) for t in tokens.values())
    log.info(
        "features of %s on %s: %d examples (%s), "
        "pooling %s, batch %d, max_length %d, %s, %d threads",
        model_id or "model",
        dataset,
        total,
        ", ".join(f"{s} {len(t)}" for s, t in tokens.items()),
        pooling,
        batch_size,
        max_length,
        device,
        torch.get_num_threads(),
    )
    progress = Progress(total, f"encode {model_id or 'model'} on {dataset}", logger=log)
    started = time.perf_counter()
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_x"] = encode(
            encoder,
            tokens[split],
            pooling,
            pad_id,
            batch_size,
            device,
            mixed_precision,
            progress=progress,
        )
        arrays[f"{split}_y"] = frames[split]["label"].to_numpy(dtype=np.int64)
    seconds = time.perf_counter() - started
    for split in SPLITS:
        if not np.isfinite(arrays[f"{split}_x"]).all():
            raise WeightspaceError(
                f"features of {model_id or 'model'} on {dataset} ({split}) are not finite"
            )
    write_npz(out_path, **arrays, num_labels=np.int64(num_labels), pooling=np.str_(pooling))
    summary = {
        "model_id": model_id,
        "dataset": dataset,
        "pooling": pooling,
        "dim": arrays["train_x"].shape[1],
        "n_train": len(tokens["train"]),
        "n_test": len(tokens["test"]),
        "seconds": round(seconds, 3),
        "examples_per_second": round(total / max(seconds, 1e-9), 1),
        "device": str(device),
    }
    log.info("wrote %s: %s", out_path, summary)
    return summary


def load(path: str | Path) -> dict:
    """The arrays of a features file (no pickles: every array is numeric or a plain string)."""
    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"features file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = [
            k
            for k in ("train_x", "train_y", "test_x", "test_y", "num_labels")
            if k not in data.files
        ]
        if missing:
            raise WeightspaceError(f"features file {path} lacks arrays {missing}")
        out = {k: data[k] for k in data.files}
    out["num_labels"] = int(out["num_labels"])
    if "pooling" in out:
        out["pooling"] = str(out["pooling"])
    return out
