"""Pairwise distances between models' encoder weights: one streamed Gram matrix, cached by file
content.

Every distance reported here is a function of inner products, so one pass over the
weights gives all of them, for every parameter group at once. The pass accumulates the
Gram matrix of the weights *centred on a reference* p (the pretrained model; the first
file when there is none), C_ab = <a - p, b - p>, plus v_a = <a - p, p> and s = <p, p>:

  task vectors  C itself                  (the pretrained model is the zero vector)
  raw weights   G_ab = <a, b> = C_ab + v_a + v_b + s
  Euclidean     ||a - b||² = C_aa + C_bb - 2 C_ab   (the same on raw weights and task vectors)
  cosine        1 - G_ab / sqrt(G_aa G_bb) on raw weights, the same with C on task vectors
                (computed in a cancellation-free form, see distance_matrix)

Why centred: a squared distance taken from an uncentred Gram, G_aa + G_bb - 2 G_ab, loses
digits to cancellation in proportion to ||a||² (≈ 4.5e7 for MiniLM), which puts a floor of
~1e-4 under any distance; centred on p the loss is in proportion to ||a - p||², the scale of
the distances themselves. Float32 weights are exact in float64, the products are summed in
float64, small negative squared distances (identical models) are clamped to 0, and a
vector whose squared norm is below 1e-12 of the largest raw squared norm counts as zero
(its cosine distances are NaN: a zero vector has no direction).

Streaming: the tensors are read straight from each safetensors file in blocks of rows
(positional reads at the offsets its header gives), one block of every model at a time, so
the peak memory is the n×n matrices plus one block per model (``block_mb`` in all), whatever
the number of models, and each file's bytes are read once. Not a memory map: the pages of
a mapped file count toward the process's resident memory (and a SLURM job's memory) until
it is unmapped, which for n open files grows to n × the file size.

Cache: C_ab depends only on the contents of files a, b and p, so the Gram entries of the
last run are stored under ``cache_dir`` (``gram.npz``, no pickle) keyed by the sha256 of each
file and of the reference, and the digests themselves are remembered per (path, size,
mtime, inode) (``digests.json``) so unchanged files are not rehashed. What the cache saves:
with no new or changed file, no weights file is read at all; with m new or changed files out
of n, only the m rows of the Gram are computed (m·n block products instead of n²/2), but
every file is still read once, because the new rows need the old models' blocks. A changed
reference (another base model) invalidates the whole cache.
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

from weightspace import WeightspaceError
from weightspace.atomic import write_csv, write_json, write_npz, write_parquet
from weightspace.digest import file_digest

log = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
SPACES = ("raw", "task_vector")
ALL = "all"
CACHE_FORMAT = "weightspace-centred-gram-v1"
ZERO_VECTOR_RTOL = 1e-12
LAYER_PATTERN = re.compile(r"(?:^|\.)layer\.(\d+)\.")


# ---------------------------------------------------------------- parameter groups


def parameter_groups(
    names: list[str], groups: dict[str, str] | None, per_layer: bool = False
) -> dict[str, list[str]]:
    """Group name -> the parameter names in it. 'all' holds every parameter; groups may overlap.

    ``groups`` maps a name to a regular expression searched in each parameter name
    (config key geometry.groups); ``per_layer`` adds one group per transformer layer.
    """
    out = {ALL: list(names)}
    for name, pattern in (groups or {}).items():
        if name == ALL:
            raise WeightspaceError(
                "geometry.groups: 'all' is reserved (every parameter); pick another group name"
            )
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise WeightspaceError(
                f"geometry.groups.{name}: '{pattern}' is not a regular expression: {err}"
            ) from None
        members = [n for n in names if regex.search(n)]
        if not members:
            raise WeightspaceError(
                f"geometry.groups.{name}: '{pattern}' matches no parameter (e.g. '{names[0]}')"
            )
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
    """A short fingerprint of each group's parameter list: cached Grams are valid only for the same
    groups."""
    return {
        g: hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
        for g, members in groups.items()
    }


# ---------------------------------------------------------------- content digests


class DigestCache:
    """path -> sha256, remembered per (size, mtime, inode) so that an unchanged file is not
    rehashed."""

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


FLOAT_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
MAX_HEADER = 100 * 2**20


def read_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """name -> (dtype, shape, first byte, end byte) of every tensor, from the safetensors header
    alone.

    The format: 8 bytes (little-endian length N), N bytes of JSON, then the tensor data;
    offsets in the JSON count from the end of the header.
    """
    try:
        size_on_disk = os.path.getsize(path)
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= min(MAX_HEADER, size_on_disk - 8):
                raise ValueError(f"header length {size}")
            raw = json.loads(handle.read(size))
        base = 8 + size
        out = {}
        for name, entry in raw.items():
            if name == "__metadata__":
                continue
            start, end = (base + int(o) for o in entry["data_offsets"])
            if end > size_on_disk:
                raise ValueError(f"tensor {name} ends past the end of the file (truncated?)")
            out[name] = (entry["dtype"], tuple(int(d) for d in entry["shape"]), start, end)
        return out
    except FileNotFoundError:
        raise WeightspaceError(f"weights file {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WeightspaceError(
            f"weights file {path} is not a readable safetensors file: {err}"
        ) from None


def _float_layout_of(header: dict, path: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the floating-point tensors (the weights)."""
    layout = {}
    for name, (dtype, shape, *_) in header.items():
        if dtype in FLOAT_DTYPES:
            layout[name] = tuple(shape)
        elif dtype.startswith(("BF", "F8")):  # numpy cannot hold these: weights files are float32
            raise WeightspaceError(
                f"weights file {path}: tensor {name} is {dtype}; weights files are float32"
            )
    if not layout:
        raise WeightspaceError(f"weights file {path} holds no floating-point tensors")
    return layout


def read_layout(path: str | Path) -> dict[str, tuple[int, ...]]:
    return _float_layout_of(read_header(path), str(path))


class WeightsFile:
    """A weights file open for positional reads of whole rows of its tensors."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.tensors = read_header(path)
        self.layout = _float_layout_of(self.tensors, self.path)
        self.fd = os.open(self.path, os.O_RDONLY)

    def __enter__(self) -> WeightsFile:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    def read_rows(self, name: str, r0: int, r1: int, buffers: dict | None = None) -> np.ndarray:
        """Rows r0:r1 of a tensor, flattened.

        With ``buffers`` (dtype -> array, shared by the caller across files) the result is a
        view of a reused buffer: copy it before the next read.
        """
        dtype, shape, start, end = self.tensors[name]
        row = math.prod(shape[1:]) if len(shape) > 1 else 1
        count = (r1 - r0) * row
        buffers = {} if buffers is None else buffers
        scratch = buffers.get(dtype)
        if scratch is None or len(scratch) < count:
            scratch = buffers[dtype] = np.empty(count, dtype=FLOAT_DTYPES[dtype])
        out = scratch[:count]
        view = memoryview(out).cast("B")
        offset = start + r0 * row * out.itemsize
        got = 0
        while got < len(view):
            n = os.preadv(self.fd, [view[got:]], offset + got)
            if n <= 0:
                raise WeightspaceError(
                    f"weights file {self.path}: tensor {name} is cut short (truncated file?)"
                )
            got += n
        return out


def _open_all(stack: contextlib.ExitStack, paths: list[str]) -> list[WeightsFile]:
    return [stack.enter_context(WeightsFile(p)) for p in paths]


@dataclass
class Gram:
    """Inner products of models centred on a reference p: C (n×n), v_a = <a - p, p>, s = <p, p>."""

    C: np.ndarray
    v: np.ndarray
    s: float

    def raw(self) -> np.ndarray:
        """<a, b> = <a - p, b - p> + <a - p, p> + <b - p, p> + <p, p>."""
        return self.C + self.v[:, None] + self.v[None, :] + self.s

    def take(self, index) -> Gram:
        index = np.asarray(index)
        return Gram(self.C[np.ix_(index, index)], self.v[index], self.s)


def stream_gram(
    paths: list[str],
    groups: dict[str, list[str]],
    rows: list[int] | None = None,
    reference: int = 0,
    block_mb: float = 256,
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per group, the centred Gram rows ``rows`` × all files, v[rows] and s, in one pass over the
    files.

    Each tensor is cut into blocks of whole rows; a block of every model is stacked into a
    (n, b) float64 array X, the reference's block is subtracted, and X[rows] Xᵀ is added to
    the Gram of every group that holds the tensor. ``rows=None`` means every file.

    One function because the pass shares the open files, the one block buffer X and the per-group
    accumulators; helpers would each have to take all of them, in the hot loop.
    """
    paths = [str(p) for p in paths]
    n = len(paths)
    rows = list(range(n)) if rows is None else list(rows)
    acc = {g: (np.zeros((len(rows), n)), np.zeros(len(rows)), np.zeros(1)) for g in groups}
    if not rows:
        return {g: (C, v, 0.0) for g, (C, v, _) in acc.items()}
    member_of: dict[str, list[str]] = {}
    for g, names in groups.items():
        for name in names:
            member_of.setdefault(name, []).append(g)
    with contextlib.ExitStack() as stack:
        handles = _open_all(stack, paths)
        layout = handles[0].layout
        for p, h in zip(paths[1:], handles[1:]):
            if h.layout != layout:
                raise WeightspaceError(
                    f"weights file {p} has other parameters or shapes than {paths[0]}"
                )
        missing = set(member_of) - set(layout)
        if missing:
            raise WeightspaceError(
                f"weights file {paths[0]} lacks parameters {sorted(missing)[:3]}"
            )
        per_model = max(1024, int(block_mb * 2**20 // (8 * (n + 1))))
        widest = max((math.prod(s[1:]) for s in layout.values() if len(s) > 1), default=1)
        X = np.empty((n, max(per_model, widest)))  # one block per model: the only weights in memory
        ref = np.empty(X.shape[1])
        # one read buffer for all files: each block is copied into X at once
        buffers: dict[str, np.ndarray] = {}
        sel = np.asarray(rows)
        everything = len(rows) == n and rows == list(range(n))
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
                    X[i, :width] = h.read_rows(name, r0, r1, buffers)
                p = ref[:width]
                p[:] = X[reference, :width]
                block = X[:, :width]
                block -= p  # centred on the reference (exact: float32 differences fit in float64)
                mine = block if everything else block[sel]
                prod = mine @ block.T
                dots = mine @ p
                pp = p @ p
                for g in targets:
                    C, v, s = acc[g]
                    C += prod
                    v += dots
                    s += pp
    return {g: (C, v, float(s[0])) for g, (C, v, s) in acc.items()}


# ---------------------------------------------------------------- the cache


@dataclass
class GramCache:
    """Centred Gram entries between files known by content (sha256), one set per group."""

    digests: list[str] = field(default_factory=list)
    reference: str = ""
    grams: dict[str, Gram] = field(default_factory=dict)
    signature: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> GramCache:
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
                    reference=str(z["reference"]),
                    grams={g: Gram(z[f"C.{g}"], z[f"v.{g}"], float(z[f"s.{g}"])) for g in names},
                    signature=dict(zip(names, (str(s) for s in z["group_signatures"]))),
                )
        except (OSError, ValueError, KeyError) as err:
            log.warning("Gram cache %s is unreadable (%s): ignored", path, err)
            return cls()

    def save(self, path: Path) -> None:
        names = list(self.grams)
        arrays = {}
        for g in names:
            arrays.update(
                {
                    f"C.{g}": self.grams[g].C,
                    f"v.{g}": self.grams[g].v,
                    f"s.{g}": np.array(self.grams[g].s),
                }
            )
        write_npz(
            path,
            format=np.array(CACHE_FORMAT),
            digests=np.array(self.digests, dtype="U64"),
            reference=np.array(self.reference),
            group_names=np.array(names, dtype=str),
            group_signatures=np.array([self.signature[g] for g in names], dtype=str),
            **arrays,
        )

    def why_unusable(self, reference: str, signature: dict[str, str]) -> str | None:
        if not self.digests:
            return "empty"
        if self.reference != reference:
            return "another reference model"
        if any(self.signature.get(g) != s for g, s in signature.items()):
            return "other parameter groups"
        return None


@dataclass
class GramResult:
    """Centred Gram matrices over models (rows in model order), the reference's index, and what was
    computed."""

    grams: dict[str, Gram]
    reference: int
    digests: list[str]
    info: dict


def gram_matrices(
    paths: list[str],
    groups: dict[str, str] | None = None,
    per_layer: bool = False,
    reference: int = 0,
    cache_dir: str | Path | None = None,
    block_mb: float = 256,
) -> GramResult:
    """Gram matrices (per group) of the weights files ``paths``, centred on ``paths[reference]``,
    reusing cached pairs.

    Files with the same content share one row. With a cache, only rows of files whose
    digest the cache does not know are computed; the cache is then rewritten for exactly
    this run's files.

    Long because it reads as one sequence (digests, cache check, cached pairs, new rows, cache
    write) whose steps share the bookkeeping of which distinct files are old and which new.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise WeightspaceError("no weights files to compare")
    cache_dir = Path(cache_dir) if cache_dir else None
    digests_cache = DigestCache(cache_dir / "digests.json" if cache_dir else None)
    digests = [digests_cache.digest(p) for p in paths]
    unique = list(dict.fromkeys(digests))
    # first path of each content
    path_of = {d: p for d, p in zip(reversed(digests), reversed(paths))}
    unique_paths = [path_of[d] for d in unique]
    ref = unique.index(digests[reference])

    layout = read_layout(unique_paths[0])
    members = parameter_groups(list(layout), groups, per_layer)
    signature = group_signature(members)

    cache = GramCache.load(cache_dir / "gram.npz") if cache_dir else GramCache()
    why = cache.why_unusable(unique[ref], signature)
    if why and why != "empty":
        log.info("Gram cache holds %s: recomputing every pair", why)
    known = {} if why else {d: i for i, d in enumerate(cache.digests)}
    old = [i for i, d in enumerate(unique) if d in known]
    new = [i for i, d in enumerate(unique) if d not in known]

    u = len(unique)
    grams = {g: Gram(np.full((u, u), np.nan), np.full(u, np.nan), np.nan) for g in members}
    if old:
        src = np.array([known[unique[i]] for i in old])
        for g, gram in grams.items():
            gram.C[np.ix_(old, old)] = cache.grams[g].C[np.ix_(src, src)]
            gram.v[old] = cache.grams[g].v[src]
            gram.s = cache.grams[g].s
    if new:
        computed = stream_gram(unique_paths, members, rows=new, reference=ref, block_mb=block_mb)
        for g, gram in grams.items():
            C, v, s = computed[g]
            gram.C[new, :] = C
            gram.C[:, new] = C.T
            block = C[:, new]
            gram.C[np.ix_(new, new)] = (block + block.T) / 2  # the same pair summed in two orders
            gram.v[new] = v
            gram.s = s
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
        GramCache(unique, unique[ref], grams, signature).save(cache_dir / "gram.npz")
        digests_cache.save()
    index = [unique.index(d) for d in digests]
    return GramResult({g: gram.take(index) for g, gram in grams.items()}, reference, digests, info)


# ---------------------------------------------------------------- from Gram to distances


def distance_matrix(gram: Gram, metric: str, space: str = "raw") -> np.ndarray:
    """n×n distances: 'euclidean' or 'cosine' (1 - cos), on 'raw' weights or 'task_vector'
    (weights - reference).

    Both come from the centred Gram: ||a - b||² = C_aa + C_bb - 2 C_ab in either space, and
    1 - cos(a, b) = (||a - b||² - (|a| - |b|)²) / (2 |a| |b|), where |a| - |b| =
    (|a|² - |b|²) / (|a| + |b|) and |a|² - |b|² is itself taken from centred terms. Unlike
    1 - G_ab / (|a||b|), this keeps its digits when the models are nearly parallel, as
    fine-tuned models are to each other (1 - cos ~ 1e-7 on raw weights).
    """
    if metric not in METRICS:
        raise WeightspaceError(
            f"geometry.metrics: unknown metric '{metric}' (known: {', '.join(METRICS)})"
        )
    if space not in SPACES:
        raise WeightspaceError(
            f"geometry.spaces: unknown space '{space}' (known: {', '.join(SPACES)})"
        )
    C = gram.C
    c = np.diag(C)
    # rounding can leave -1e-12 for identical models
    d2 = np.clip(c[:, None] + c[None, :] - 2.0 * C, 0.0, None)
    np.fill_diagonal(d2, 0.0)
    if metric == "euclidean":  # translation invariant: the same in both spaces
        D = np.sqrt(d2)
        return (D + D.T) / 2
    raw_sq = c + 2.0 * gram.v + gram.s  # |a|² = |a - p|² + 2 <a - p, p> + |p|²
    scale = float(np.max(np.abs(raw_sq))) or 1.0
    if space == "task_vector":
        sq, diff = c, c[:, None] - c[None, :]
    else:
        sq, diff = raw_sq, (c[:, None] - c[None, :]) + 2.0 * (gram.v[:, None] - gram.v[None, :])
    sq = np.clip(sq, 0.0, None)
    zero = sq <= ZERO_VECTOR_RTOL * scale
    norms = np.sqrt(np.where(zero, 1.0, sq))
    gap = diff / (norms[:, None] + norms[None, :])  # |a| - |b|
    D = np.clip((d2 - gap**2) / (2.0 * np.outer(norms, norms)), 0.0, 2.0)
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
    """Long table (model_a, model_b, metric, space, group, distance): every ordered pair, diagonal
    included."""
    if len(model_ids) != len(paths):
        raise WeightspaceError(f"{len(model_ids)} model ids but {len(paths)} weights files")
    if len(set(model_ids)) != len(model_ids):
        raise WeightspaceError("model ids are not unique")
    if "task_vector" in spaces and reference not in model_ids:
        raise WeightspaceError(
            f"geometry.spaces has task_vector but no '{reference}' model is among the models"
        )
    # centred on the pretrained model (any fixed model keeps the Euclidean distances accurate)
    ref = model_ids.index(reference) if reference in model_ids else 0
    result = gram_matrices(paths, groups, per_layer, ref, cache_dir, block_mb)
    n = len(model_ids)
    a = np.repeat(np.array(model_ids, dtype=object), n)
    b = np.tile(np.array(model_ids, dtype=object), n)
    frames = []
    for group, gram in result.grams.items():
        for metric in metrics:
            for space in spaces:
                D = distance_matrix(gram, metric, space)
                frames.append(
                    pd.DataFrame(
                        {
                            "model_a": a,
                            "model_b": b,
                            "metric": metric,
                            "space": space,
                            "group": group,
                            "distance": D.reshape(-1),
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True), result.info


def square(frame: pd.DataFrame, metric: str, space: str, group: str = ALL) -> pd.DataFrame:
    """One square matrix (model ids as index and columns, in first-seen order) out of the long
    table."""
    part = frame[
        (frame["metric"] == metric) & (frame["space"] == space) & (frame["group"] == group)
    ]
    if part.empty:
        raise WeightspaceError(
            f"the distances have no metric '{metric}', space '{space}', group '{group}' "
            "(geometry.metrics, geometry.spaces, geometry.primary)"
        )
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
    """The distances rule: long parquet, one square CSV per metric and space (group 'all'), the
    cache."""
    from threadpoolctl import threadpool_limits

    metrics = list(settings.get("metrics", METRICS))
    spaces = list(settings.get("spaces", SPACES))
    with threadpool_limits(limits=threads):
        frame, info = pairwise_distances(
            model_ids,
            list(weights),
            metrics,
            spaces,
            settings.get("groups") or {},
            settings.get("per_layer", False),
            settings.get("reference", "pretrained"),
            cache_dir,
            settings.get("block_mb", 256),
        )
    write_parquet(long_path, frame)
    for metric in metrics:
        for space in spaces:
            write_csv(
                Path(square_dir) / f"{metric}_{space}.csv", square(frame, metric, space), index=True
            )
    log.info("wrote %d distances (%d models) to %s", len(frame), len(model_ids), long_path)
    return info
