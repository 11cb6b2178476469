"""What the CPU can do, read at run time: its name and whether it computes bf16 natively.

Machines of one kind differ: on AVX2-only CPUs bf16 matmuls are emulated and ~100x
slower than fp32; with AMX or AVX512-BF16 they are faster than fp32. Precision choices
(`auto`, model/precision.py) therefore ask here, never assume.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# x86 flags (the "flags" line) and the aarch64 feature (the "Features" line)
# of bf16 matmuls in hardware
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
CPUINFO = Path("/proc/cpuinfo")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a /proc/cpuinfo text (x86 and aarch64 layouts alike)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """This machine's CPU fields (empty where there is no /proc/cpuinfo), read once per process."""
    if not CPUINFO.exists():
        return {}
    return parse_cpuinfo(CPUINFO.read_text(errors="replace"))


def cpu_flags() -> set[str]:
    """The CPU's feature flags: x86 names them "flags", aarch64 "Features"."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def amd_generation(family: int, model: int) -> str | None:
    """The Zen generation of an AMD family/model pair; None where it is not one of these."""
    if family == 23:
        return "Zen 2" if model >= 0x30 else "Zen 1"
    if family == 25:
        return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF else "Zen 3"
    if family == 26:
        return "Zen 5"
    return None


def cpu_name() -> str:
    """The CPU's model name, as a timing should name it.

    Virtual machines often report a bare "AMD EPYC": the family and model (and the Zen generation
    they mean) are added then, so that a Zen 1 and a Zen 4 of one machine kind are told apart.
    """
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if any(ch.isdigit() for ch in name) or "cpu family" not in info:
        return name
    try:
        family, model = int(info["cpu family"]), int(info.get("model", "-1"))
    except ValueError:
        return name
    generation = (
        amd_generation(family, model) if "AMD" in info.get("vendor_id", "") + name else None
    )
    return f"{name} (family {family} model {model}{', ' + generation if generation else ''})"


def torch_cpu_capability() -> str:
    """torch's dispatch level on this CPU (e.g. AVX2, AVX512); 'unknown' where torch cannot say."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # an old torch without the call
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AMX or AVX512-BF16), so bf16 autocast pays."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def describe() -> dict:
    """One line of facts to log and to print next to every timing."""
    import os

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_capability": torch_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
    }


def attention_for_dynamic_shapes(device) -> None:
    """On CUDA, keep scaled-dot-product attention off cuDNN's backend for this process.

    Dynamic padding gives nearly every batch its own shape, and cuDNN's attention builds an
    execution plan per new shape: measured on an H100 (torch 2.11, RoBERTa-base shape, batch 32,
    widths 8-128, bf16), training ran at 4.8 steps/s with it and 42.9 without, and a first bf16
    encoder pass at 215 examples/s with it and 6,058 once off (benchmarks/cuda_check.py; the README
    has the runs). PyTorch then picks the flash or memory-efficient kernels.
    Nothing to do on a CPU.
    """
    import torch

    if torch.device(device).type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
