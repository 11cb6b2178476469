"""Precision: what a `mixed_precision` setting computes in on a device, by one name everywhere.

A setting (config `finetune.mixed_precision`, `probe.mixed_precision`) is auto, no, bf16 or fp16; it
resolves to one of the names fp32, bf16, fp16, which metrics, job summaries and cache keys record.
The one place `auto` is decided, for fine-tuning and feature extraction alike: on CUDA bf16 where
the GPU has it, else fp16; on a CPU bf16 only where it computes bf16 natively (AMX, AVX512-BF16:
hardware.cpu_has_native_bf16), fp32 elsewhere (AVX2 emulates bf16, ~100x slower matmuls).
bf16 / fp16 ask for that dtype on any device (the benchmarks' accuracy checks); no: fp32 throughout.
torch is imported where it is used.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from weightspace import WeightspaceError, hardware

if TYPE_CHECKING:
    import torch

SETTINGS = ("auto", "no", "bf16", "fp16")
NAMES = ("fp32", "bf16", "fp16")
# name -> torch's name of the dtype
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve(
    device, setting: str, key: str = "mixed_precision", choices: tuple[str, ...] = SETTINGS
) -> str:
    """The precision a setting computes in on ``device``: fp32, bf16 or fp16. ``key`` names the
    config key in errors; ``choices``, the settings it accepts."""
    import torch

    if setting not in choices:
        raise WeightspaceError(f"config key {key}: '{setting}' is not one of {', '.join(choices)}")
    if setting == "no":
        return "fp32"
    if setting in ("bf16", "fp16"):
        return setting
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if hardware.cpu_has_native_bf16() else "fp32"


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a precision name (fp32: torch.float32)."""
    import torch

    return getattr(torch, _DTYPES[name])


def autocast_dtype(name: str) -> torch.dtype | None:
    """The dtype autocast computes in for a precision name; None for fp32 (no autocast)."""
    return None if name == "fp32" else torch_dtype(name)


def autocast(name: str, device):
    """The autocast context of a precision name on ``device`` (a null context for fp32)."""
    dtype = autocast_dtype(name)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(torch.device(device).type, dtype=dtype)


def grad_scaler(name: str, device):
    """The gradient scaler fp16 training needs (its small range underflows gradients);
    None otherwise."""
    if name != "fp16":
        return None
    import torch

    return torch.amp.GradScaler(torch.device(device).type)
