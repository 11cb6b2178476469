"""Model merging: fine-tuned members combined relative to the pretrained encoder.

The merge math is PEFT's (``peft.utils.merge_utils``); this module only reads the encoder files,
feeds PEFT one tensor at a time and writes the result. With task vectors τ_i = θ_i − θ_pre and
the same weight ``scale`` for every member, PEFT computes per tensor:

- ``task_arithmetic``: θ_pre + scale·Σ τ_i (``density`` is ignored).
- ``dare_linear``: θ_pre + scale·Σ (m_i ⊙ τ_i) / density, m_i ~ Bernoulli(density) per entry.
- ``ties``: each τ_i keeps its int(density·numel) largest-|τ| entries (per tensor, per member);
  the elected sign is the sign of Σ τ_i (ties of 0 elect +); the result is θ_pre + scale · the
  mean over the members whose kept entry is non-zero with the elected sign (0 where none is).
- ``dare_ties``: as ``ties``, but pruned as in ``dare_linear`` (random drop, 1/density rescale).

At density 1 nothing is pruned, so one member at scale 1 comes back exactly. DARE's draws are
seeded from (seed, tensor name), so a merge is reproducible and independent of tensor order.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from weightspace import WeightspaceError
from weightspace.model import weights

if TYPE_CHECKING:
    import torch

METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties")
RANDOM = ("dare_linear", "dare_ties")


def tensor_seed(seed: int, name: str) -> int:
    """A 64-bit seed for one tensor's DARE draws; hashlib, not hash(), which varies per process."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def _check(pretrained: Path, members: list[Path], method: str, scale: float, density: float):
    if method not in METHODS:
        raise WeightspaceError(f"unknown merge method '{method}' (known: {', '.join(METHODS)})")
    if not 0.0 < density <= 1.0:
        raise WeightspaceError(f"merge density must be in (0, 1], got {density}")
    if not math.isfinite(scale):
        raise WeightspaceError(f"merge scale must be finite, got {scale}")
    if not members:
        raise WeightspaceError("a merge needs at least one member")
    for path in (pretrained, *members):
        if not path.exists():
            raise WeightspaceError(f"weights file {path} does not exist")
    expected = weights.names_and_shapes(pretrained)
    for path in members:
        shapes = weights.names_and_shapes(path)
        for name, shape in expected.items():
            if name not in shapes:
                raise WeightspaceError(f"{path}: no tensor {name} (pretrained {pretrained} has it)")
            if shapes[name] != shape:
                raise WeightspaceError(
                    f"{path}: tensor {name} has shape {shapes[name]}, "
                    f"pretrained {pretrained} has {shape}"
                )
        extra = sorted(set(shapes) - set(expected))
        if extra:
            raise WeightspaceError(f"{path}: tensor {extra[0]} is not in pretrained {pretrained}")
    return list(expected)


def merge(
    pretrained: str | Path,
    members: Sequence[str | Path],
    method: str,
    *,
    scale: float,
    density: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """θ_pre + merged task vectors; float32 tensors by canonical name."""
    import torch
    from peft.utils import merge_utils  # here: importing peft takes seconds
    from safetensors import safe_open

    pretrained, members = Path(pretrained), [Path(m) for m in members]
    scale, density = float(scale), float(density)
    names = _check(pretrained, members, method, scale, density)
    combine = getattr(merge_utils, method)
    kwargs = {} if method == "task_arithmetic" else {"density": density}
    # PEFT takes one weight per task tensor; float64 like the task vectors
    member_weights = torch.full((len(members),), scale, dtype=torch.float64)

    base = safe_open(str(pretrained), framework="pt")
    handles = [safe_open(str(m), framework="pt") for m in members]
    out = {}
    for name in names:  # one tensor name's stack in memory at a time
        theta_pre = base.get_tensor(name).to(torch.float64)
        # float32 differences are exact in float64
        tau = [h.get_tensor(name).to(torch.float64) - theta_pre for h in handles]
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            # density 1 is a valid choice here, not a mistake PEFT should warn about per tensor
            warnings.filterwarnings("ignore", message="The density .* no pruning")
            if method in RANDOM:  # torch.bernoulli uses the global RNG, restored on exit
                torch.manual_seed(tensor_seed(seed, name))
            merged = combine(tau, member_weights, **kwargs)
        out[name] = (theta_pre + merged).to(torch.float32)
    return out


def merge_to_file(
    out_path: str | Path,
    pretrained: str | Path,
    members: Sequence[str | Path],
    method: str,
    *,
    scale: float,
    density: float = 1.0,
    seed: int = 0,
    model_id: str,
) -> None:
    """Merge and write the encoder file (atomically, the merge's settings as metadata)."""
    tensors = merge(pretrained, members, method, scale=scale, density=density, seed=seed)
    weights.save(
        out_path,
        tensors,
        model_id,
        method=method,
        scale=str(float(scale)),
        density=str(float(density)),
        seed=str(int(seed)),
        members=",".join(str(m) for m in members),
    )
