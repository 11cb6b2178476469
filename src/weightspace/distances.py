"""Pairwise distances between models' encoder weights: one streamed Gram matrix, cached by file content.

Every distance reported here is a function of inner products, so one pass over the
weights that accumulates the Gram matrix G = X Xᵀ (X: one flattened model per row) gives
all of them, for every parameter group at once:

  raw weights   ||a - b||² = G_aa + G_bb - 2 G_ab        cos(a, b) = G_ab / sqrt(G_aa G_bb)
  task vectors  <a - p, b - p> = G_ab - G_ap - G_bp + G_pp   (p: the pretrained weights)

Euclidean distance is translation invariant, so it is the same on raw weights and on task
vectors; cosine is not. The pretrained model is the zero task vector: its cosine distances
in task-vector space are undefined (NaN).

Streaming: the files are memory-mapped (safetensors ``safe_open``) and read tensor by tensor
in blocks of rows, one block of every model at a time, so the peak memory is the n×n
matrices plus one block per model (``block_mb`` in all), whatever the number of models, and
each file's bytes are read once.

Numerical care: float32 weights are exact in float64 and the products are summed in float64.
A squared distance taken from G loses digits to cancellation, about 1e-16·||a||² in absolute
terms (~1e-8 for MiniLM, ||θ||² ≈ 4.5e7), far below the squared distance of two fine-tuned
models; small negative results (identical models) are clamped to 0, and a task vector whose
squared norm is below 1e-12·||p||² counts as the zero vector.

Cache: G_ab depends only on the contents of files a and b, so the Gram entries of the last
run are stored under ``cache_dir`` keyed by the sha256 of each file (``gram.npz``, no pickle),
and the digests themselves are remembered per (path, size, mtime, inode) (``digests.json``) so
unchanged files are not rehashed. What the cache saves: with no new or changed file, no
weights file is read at all; with m new or changed files out of n, only the m rows of G are
computed (m·n instead of n² block products) — but every file is still read once, because
the new rows need the old models' blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open

from . import WeightspaceError
from .atomic import write_csv, write_json, write_npz, write_parquet

log = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
SPACES = ("raw", "task_vector")
ALL = "all"
CACHE_FORMAT = "weightspace-gram-v1"
ZERO_VECTOR_RTOL = 1e-12
LAYER_PATTERN = re.compile(r"(?:^|\.)layer\.(\d+)\.")


# ---------------------------------------------------------------- parameter groups


def parameter_groups(names: list[str], groups: dict[str, str] | None, per_layer: bool = False) -> dict[str, list[str]]:
    """Group name -> the parameter names in it. 'all' holds every parameter; groups may overlap.

    ``groups`` maps a name to a regular expression searched in each parameter name
    (config key geometry.groups); ``per_layer`` adds one group per transformer layer.
    """
    out = {ALL: list(names)}
    for name, pattern in (groups or {}).items():
        if name == ALL:
            raise WeightspaceError("geometry.groups: 'all' is reserved (every parameter); pick another group name")
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise WeightspaceError(f"geometry.groups.{name}: '{pattern}' is not a regular expression: {err}") from None
        members = [n for n in names if regex.search(n)]
        if not members:
            raise WeightspaceError(f"geometry.groups.{name}: '{pattern}' matches no parameter (e.g. '{names[0]}')")
        out[name] = members
    if per_layer:
        layers: dict[str, list[str]] = {}
        for n in names:
            m = LAYER_PATTERN.search(n)
            if m:
                layers.setdefault(f"layer{int(m[1])}", []).append(n)
        if not layers:
            raise WeightspaceError("geometry.per_layer: no parameter name has a 'layer.N.' part")
        out.update(sorted(layers.items(), key=lambda kv: int(kv[0][5:])))
    return out


def group_signature(groups: dict[str, list[str]]) -> dict[str, str]:
    """A short fingerprint of each group's parameter list: cached Grams are valid only for the same groups."""
    return {g: hashlib.sha256("\n".join(members).encode()).hexdigest()[:16] for g, members in groups.items()}


# ---------------------------------------------------------------- content digests


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    """path -> sha256, remembered per (size, mtime, inode) so that an unchanged file is not rehashed."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        self.hashed = 0
        if self.path and self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                log.warning("digest cache %s is unreadable: ignored", self.path)

    def digest(self, path: str | Path) -> str:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise WeightspaceError(f"weights file {path} does not exist") from None
        key = str(Path(path).resolve())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self.entries.get(key)
        if entry and entry.get("stamp") == stamp:
            return entry["sha256"]
        self.hashed += 1
        value = file_digest(path)
        self.entries[key] = {"stamp": stamp, "sha256": value}
        return value

    def save(self) -> None:
        if self.path:
            write_json(self.path, self.entries)


# ---------------------------------------------------------------- streaming


def _open_all(stack: contextlib.ExitStack, paths: list[str]) -> list:
    handles = []
    for p in paths:
        try:
            handles.append(stack.enter_context(safe_open(p, framework="numpy")))
        except Exception as err:  # safetensors raises its own types for missing or corrupt files
            raise WeightspaceError(f"weights file {p} is not a readable safetensors file: {err}") from None
    return handles


def _float_layout(handle, path: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the floating-point tensors (weights) of one file."""
    layout = {}
    for name in handle.keys():
        sl = handle.get_slice(name)
        if sl.get_dtype() in ("F64", "F32", "F16"):
            layout[name] = tuple(sl.get_shape())
        elif sl.get_dtype() in ("BF16", "F8_E4M3", "F8_E5M2"):
            raise WeightspaceError(f"weights file {path}: tensor {name} is {sl.get_dtype()}; weights files are float32")
    if not layout:
        raise WeightspaceError(f"weights file {path} holds no floating-point tensors")
    return layout


def read_layout(path: str | Path) -> dict[str, tuple[int, ...]]:
    with contextlib.ExitStack() as stack:
        return _float_layout(_open_all(stack, [str(path)])[0], str(path))


def stream_gram(
    paths: list[str],
    groups: dict[str, list[str]],
    rows: list[int] | None = None,
    block_mb: float = 256,
) -> dict[str, np.ndarray]:
    """Gram rows ``rows`` × all files, one matrix per group, in one pass over the files.

    Each tensor is cut into blocks of whole rows; a block of every model is stacked into a
    (n, b) float64 array X and X[rows] Xᵀ is added to the Gram of every group that holds the
    tensor. ``rows=None`` means every file (the full Gram).
    """
    paths = [str(p) for p in paths]
    n = len(paths)
    rows = list(range(n)) if rows is None else list(rows)
    acc = {g: np.zeros((len(rows), n)) for g in groups}
    if not rows:
        return acc
    member_of: dict[str, list[str]] = {}
    for g, names in groups.items():
        for name in names:
            member_of.setdefault(name, []).append(g)
    with contextlib.ExitStack() as stack:
        handles = _open_all(stack, paths)
        layout = _float_layout(handles[0], paths[0])
        for p, h in zip(paths[1:], handles[1:]):
            if _float_layout(h, p) != layout:
                raise WeightspaceError(f"weights file {p} has other parameters or shapes than {paths[0]}")
        missing = set(member_of) - set(layout)
        if missing:
            raise WeightspaceError(f"weights file {paths[0]} lacks parameters {sorted(missing)[:3]}")
        per_model = max(1024, int(block_mb * 2**20 // (8 * n)))
        widest = max((math.prod(s[1:]) for s in layout.values() if len(s) > 1), default=1)
        X = np.empty((n, max(per_model, widest)))  # one block per model: the only weights in memory
        row_sel = None if len(rows) == n and rows == list(range(n)) else np.asarray(rows)
        for name, shape in layout.items():
            targets = member_of.get(name)
            if not targets:
                continue
            size = math.prod(shape)
            row_size = math.prod(shape[1:]) if len(shape) > 1 else 1
            n_rows = shape[0] if shape else 1
            step = n_rows if size <= per_model else max(1, per_model // row_size)
            for r0 in range(0, n_rows, step):
                r1 = min(n_rows, r0 + step)
                width = (r1 - r0) * row_size
                for i, h in enumerate(handles):
                    sl = h.get_slice(name)
                    X[i, :width] = (sl[r0:r1] if shape else h.get_tensor(name)).reshape(-1)
                block = X[:, :width]
                prod = block @ block.T if row_sel is None else block[row_sel] @ block.T
                for g in targets:
                    acc[g] += prod
    return acc


# ---------------------------------------------------------------- the cache


@dataclass
class GramCache:
    """Gram entries between files known by content (sha256), one matrix per group."""

    digests: list[str] = field(default_factory=list)
    grams: dict[str, np.ndarray] = field(default_factory=dict)
    signature: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "GramCache":
        if not path.exists():
            return cls()
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != CACHE_FORMAT:
                    log.info("Gram cache %s has another format: ignored", path)
                    return cls()
                names = [str(s) for s in z["group_names"]]
                return cls(
                    digests=[str(d) for d in z["digests"]],
                    grams={g: z[f"gram.{g}"] for g in names},
                    signature=dict(zip(names, (str(s) for s in z["group_signatures"]))),
                )
        except (OSError, ValueError, KeyError) as err:
            log.warning("Gram cache %s is unreadable (%s): ignored", path, err)
            return cls()

    def save(self, path: Path) -> None:
        names = list(self.grams)
        write_npz(
            path,
            format=np.array(CACHE_FORMAT),
            digests=np.array(self.digests, dtype="U64"),
            group_names=np.array(names, dtype=str),
            group_signatures=np.array([self.signature[g] for g in names], dtype=str),
            **{f"gram.{g}": self.grams[g] for g in names},
        )

    def usable_for(self, signature: dict[str, str]) -> bool:
        return bool(self.digests) and all(self.signature.get(g) == s for g, s in signature.items())


@dataclass
class GramResult:
    """Gram matrices over models (rows in model order) and what the run had to compute."""

    grams: dict[str, np.ndarray]
    digests: list[str]
    info: dict


def gram_matrices(
    paths: list[str],
    groups: dict[str, str] | None = None,
    per_layer: bool = False,
    cache_dir: str | Path | None = None,
    block_mb: float = 256,
) -> GramResult:
    """Gram matrices (per group) of the weights files ``paths``, reusing cached pairs.

    Files with the same content share one row. With a cache, only rows of files whose
    digest the cache does not know are computed; the cache is then rewritten for exactly
    this run's files.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise WeightspaceError("no weights files to compare")
    cache_dir = Path(cache_dir) if cache_dir else None
    digests_cache = DigestCache(cache_dir / "digests.json" if cache_dir else None)
    digests = [digests_cache.digest(p) for p in paths]
    unique = list(dict.fromkeys(digests))
    path_of = {d: p for d, p in zip(reversed(digests), reversed(paths))}  # first path of each content
    unique_paths = [path_of[d] for d in unique]

    layout = read_layout(unique_paths[0])
    members = parameter_groups(list(layout), groups, per_layer)
    signature = group_signature(members)

    cache = GramCache.load(cache_dir / "gram.npz") if cache_dir else GramCache()
    if cache.digests and not cache.usable_for(signature):
        log.info("Gram cache holds other parameter groups: recomputing every pair")
        cache = GramCache()
    known = {d: i for i, d in enumerate(cache.digests)}
    old = [i for i, d in enumerate(unique) if d in known]
    new = [i for i, d in enumerate(unique) if d not in known]

    u = len(unique)
    grams = {g: np.full((u, u), np.nan) for g in members}
    if old:
        src = np.array([known[unique[i]] for i in old])
        for g in members:
            grams[g][np.ix_(old, old)] = cache.grams[g][np.ix_(src, src)]
    if new:
        rows = stream_gram(unique_paths, members, rows=new, block_mb=block_mb)
        for g in members:
            grams[g][new, :] = rows[g]
            grams[g][:, new] = rows[g].T
            block = rows[g][:, new]
            grams[g][np.ix_(new, new)] = (block + block.T) / 2  # the same pair summed in two orders
    info = {
        "models": len(paths),
        "distinct_files": u,
        "new_files": len(new),
        "files_read": u if new else 0,
        "files_hashed": digests_cache.hashed,
        "pairs_computed": len(new) * u - len(new) * (len(new) - 1) // 2,
        "pairs_reused": len(old) * (len(old) + 1) // 2,
        "groups": {g: len(m) for g, m in members.items()},
    }
    log.info("Gram matrices: %s", info)
    if cache_dir:
        GramCache(unique, grams, signature).save(cache_dir / "gram.npz")
        digests_cache.save()
    index = [unique.index(d) for d in digests]
    return GramResult({g: G[np.ix_(index, index)] for g, G in grams.items()}, digests, info)


# ---------------------------------------------------------------- from Gram to distances


def task_vector_gram(G: np.ndarray, reference: int) -> np.ndarray:
    """<a - p, b - p> = G_ab - G_ap - G_bp + G_pp, with p the model at index ``reference``."""
    g = G[:, reference]
    return G - g[:, None] - g[None, :] + G[reference, reference]


def distance_matrix(G: np.ndarray, metric: str, space: str = "raw", reference: int | None = None) -> np.ndarray:
    """n×n distances from a Gram matrix: 'euclidean' or 'cosine' (1 - cos), on 'raw' or 'task_vector'."""
    if metric not in METRICS:
        raise WeightspaceError(f"geometry.metrics: unknown metric '{metric}' (known: {', '.join(METRICS)})")
    if space not in SPACES:
        raise WeightspaceError(f"geometry.spaces: unknown space '{space}' (known: {', '.join(SPACES)})")
    scale = float(np.nanmax(np.abs(np.diag(G)))) or 1.0
    if space == "task_vector":
        if reference is None:
            raise WeightspaceError("geometry.spaces: task_vector needs the pretrained model among the models")
        G = task_vector_gram(G, reference)
    sq = np.clip(np.diag(G), 0.0, None)
    if metric == "euclidean":
        d2 = sq[:, None] + sq[None, :] - 2.0 * G
        D = np.sqrt(np.clip(d2, 0.0, None))  # cancellation can leave -1e-9 for identical models
        np.fill_diagonal(D, 0.0)
        return (D + D.T) / 2
    zero = sq <= ZERO_VECTOR_RTOL * scale
    norms = np.sqrt(np.where(zero, 1.0, sq))
    cos = np.clip(G / np.outer(norms, norms), -1.0, 1.0)
    D = 1.0 - cos
    np.fill_diagonal(D, 0.0)
    D[zero, :] = np.nan  # the direction of a zero vector is undefined
    D[:, zero] = np.nan
    return (D + D.T) / 2


# ---------------------------------------------------------------- the study's distances


def pairwise_distances(
    model_ids: list[str],
    paths: list[str],
    metrics=METRICS,
    spaces=SPACES,
    groups: dict[str, str] | None = None,
    per_layer: bool = False,
    reference: str = "pretrained",
    cache_dir: str | Path | None = None,
    block_mb: float = 256,
) -> tuple[pd.DataFrame, dict]:
    """Long table (model_a, model_b, metric, space, group, distance): every ordered pair, diagonal included."""
    if len(model_ids) != len(paths):
        raise WeightspaceError(f"{len(model_ids)} model ids but {len(paths)} weights files")
    if len(set(model_ids)) != len(model_ids):
        raise WeightspaceError("model ids are not unique")
    if "task_vector" in spaces and reference not in model_ids:
        raise WeightspaceError(f"geometry.spaces has task_vector but no '{reference}' model is among the models")
    ref = model_ids.index(reference) if reference in model_ids else None
    result = gram_matrices(paths, groups, per_layer, cache_dir, block_mb)
    n = len(model_ids)
    a = np.repeat(np.array(model_ids, dtype=object), n)
    b = np.tile(np.array(model_ids, dtype=object), n)
    frames = []
    for group, G in result.grams.items():
        for metric in metrics:
            for space in spaces:
                D = distance_matrix(G, metric, space, ref)
                frames.append(pd.DataFrame({"model_a": a, "model_b": b, "metric": metric, "space": space,
                                            "group": group, "distance": D.reshape(-1)}))
    return pd.concat(frames, ignore_index=True), result.info


def square(frame: pd.DataFrame, metric: str, space: str, group: str = ALL) -> pd.DataFrame:
    """One square matrix (model ids as index and columns, in first-seen order) out of the long table."""
    part = frame[(frame["metric"] == metric) & (frame["space"] == space) & (frame["group"] == group)]
    if part.empty:
        raise WeightspaceError(f"the distances have no metric '{metric}', space '{space}', group '{group}'")
    order = list(dict.fromkeys(part["model_a"]))
    out = part.pivot(index="model_a", columns="model_b", values="distance").loc[order, order]
    out.index.name = "model_id"
    out.columns.name = None
    return out


def run(
    weights: list[str],
    model_ids: list[str],
    long_path: str | Path,
    square_dir: str | Path,
    settings: dict,
    cache_dir: str | Path | None,
    threads: int = 1,
) -> dict:
    """The distances rule: long parquet, one square CSV per metric and space (group 'all'), the cache."""
    from threadpoolctl import threadpool_limits

    metrics = list(settings.get("metrics", METRICS))
    spaces = list(settings.get("spaces", SPACES))
    with threadpool_limits(limits=threads):
        frame, info = pairwise_distances(
            model_ids, list(weights), metrics, spaces, settings.get("groups") or {}, settings.get("per_layer", False),
            settings.get("reference", "pretrained"), cache_dir, settings.get("block_mb", 256),
        )
    write_parquet(long_path, frame)
    for metric in metrics:
        for space in spaces:
            write_csv(Path(square_dir) / f"{metric}_{space}.csv", square(frame, metric, space), index=True)
    log.info("wrote %d distances (%d models) to %s", len(frame), len(model_ids), long_path)
    return info
