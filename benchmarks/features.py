"""Features and probes at the speed of the hardware: one evaluation job per model against one job
per pair.

Same base model (the packaged all-MiniLM-L6-v2), the default study's datasets and caps,
the same probe protocol and L2, on the same threads, in one run:

  today    the one-job-per-pair implementation (--baseline, default commit 61b04ba, the last
           before evaluation jobs; git archive of its src/):
           per (model, dataset) pair a features process (start Python, load torch and
           the model, tokenize, encode, write the .npz) and a probe process;
  now      one process per model (weightspace.probe.evaluation, as the evaluate_model job):
           tokenize each dataset once, load the model once, one encoder pass over train
           and test per dataset, probes on the cached features; then the same job again
           (every pair a cache hit: what a rerun costs).

Prints examples/s end to end (process starts included) and of the encoder pass alone,
the encoder's FLOP/s (2 x non-embedding parameters x tokens + attention) and its
fraction of the matmul peak of the dtype used, measured in this run at the same thread
count (a 2048^3 matmul, best of before and after). The dtype is fp32 unless the CPU
computes bf16 natively (weightspace.hardware); where bf16 is used, the probe losses of
bf16 and fp32 features are compared and must agree within --tolerance nats. Names the CPU.

    .venv/bin/python benchmarks/features.py [--threads 1] [--models 2]
        [--datasets rotten_tomatoes trec_coarse]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from weightspace import hardware  # noqa: E402
from weightspace.data import prepare  # noqa: E402
from weightspace.model import base_model, weights  # noqa: E402
from weightspace.model import precision as numerics  # noqa: E402
from weightspace.probe import evaluation, features, linear  # noqa: E402

DEFAULTS = {
    "max_examples": {"train": 256, "validation": 64, "test": 128},
    "validation_fraction": 0.1,
    "test_fraction": 0.2,
    "split_seed": 0,
    "max_length": 48,
}

TODAY_FEATURES = """
import sys, time
from weightspace.probe import features
features.extract(base_dir=sys.argv[1], weight_paths=[sys.argv[2]], coefficients=[1.0], \
data_dir=sys.argv[3],
                 out_path=sys.argv[4], batch_size=64, max_length=48, threads=int(sys.argv[5]))
"""
TODAY_PROBE = """
import sys, json
from weightspace.probe import linear
linear.run(sys.argv[1], sys.argv[2], linear.Protocol.from_config(json.loads(sys.argv[3])), \
threads=int(sys.argv[4]))
"""
NOW_JOB = """
import sys, json
from weightspace.probe import evaluation
a = json.loads(sys.argv[1])
print(json.dumps(evaluation.run(**a)))
"""


def matmul_peak(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n matmul in ``dtype`` at ``threads`` threads (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def non_embedding_params(encoder) -> int:
    """The parameters every token passes through in a Linear (the embeddings are a lookup)."""
    return sum(p.numel() for name, p in encoder.named_parameters() if "embeddings" not in name)


def encoder_flops(encoder, token_lengths: list[int]) -> float:
    """Forward FLOPs: 2 x non-embedding parameters per token, plus attention's QK^T and AV (4 L n^2
    d per sequence)."""
    params = non_embedding_params(encoder)
    config = encoder.config
    layers, hidden = config.num_hidden_layers, config.hidden_size
    return float(sum(2 * params * n + 4 * layers * n * n * hidden for n in token_lengths))


# the Linears (attention runs in its own fused kernel)
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm")


def op_profile(
    encoder, examples: list[dict], pad_id: int, batch_size: int, threads: int, peak: float
) -> str:
    """Where an encoder pass's time goes, by op: the Linears' GEMMs against the matmul peak, and the
    rest.

    One pass over ``examples`` as the evaluation job runs it (features.encode), under
    torch.profiler. The GEMMs' FLOPs are the non-embedding parameters' over real tokens (2 x params
    x tokens; the few padded tokens of a length-sorted batch are not counted, so this errs low): the
    share they could still gain is bounded by their distance to the peak; the other ops' share is
    what no GEMM tuning removes.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    # warm
    features.encode(
        encoder, examples[:batch_size], "mean", pad_id, batch_size, torch.device("cpu"), "no"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        features.encode(encoder, examples, "mean", pad_id, batch_size, torch.device("cpu"), "no")
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    gemm = sum(self_us.get(k, 0) for k in MATMUL_OPS)
    gemm_gflops = (
        2
        * non_embedding_params(encoder)
        * sum(len(e["input_ids"]) for e in examples)
        / (gemm / 1e6)
        / 1e9
    )
    others = sorted(((us, k) for k, us in self_us.items() if k not in MATMUL_OPS), reverse=True)[:4]
    return (
        f"       by op (one pass, fp32): GEMMs {100 * gemm / total:.0f}% of the time at "
        f"{gemm_gflops:.1f} GFLOP/s = {100 * gemm_gflops / peak:.0f}% of the peak; "
        + ", ".join(f"{k.removeprefix('aten::')} {100 * us / total:.0f}%" for us, k in others)
        + f". At the peak with nothing else the pass would take "
        f"{100 * (gemm * gemm_gflops / peak) / total:.0f}% of its time"
    )


BASELINE = (
    "61b04ba"  # the last commit with a features job and a probe job per (model, dataset) pair
)


def head_tree(folder: Path, revision: str = BASELINE) -> Path:
    """The baseline commit's src/ (today's implementation), unpacked into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "head.tar"
    with open(archive, "wb") as handle:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", revision, "src"], stdout=handle, check=True
        )
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def python(code: str, args: list[str], pythonpath: Path) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"a benchmark process failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="the job's threads (probe.threads; default 1)"
    )
    parser.add_argument(
        "--models", type=int, default=2, help="models evaluated (pretrained + perturbed copies)"
    )
    parser.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "trec_coarse"])
    parser.add_argument(
        "--batch-size", type=int, default=16, help="encoder batch (config.yaml's probe.batch_size)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.01, help="nats: bf16 vs fp32 probe loss"
    )
    parser.add_argument(
        "--force-bf16", action="store_true", help="run the bf16 loss check even without native bf16"
    )
    parser.add_argument("--skip-today", action="store_true")
    parser.add_argument(
        "--baseline", default=BASELINE, help="git revision of today's implementation"
    )
    args = parser.parse_args()
    threads = args.threads
    info = hardware.describe()
    print(
        f"CPU: {info['cpu']} ({info['cores']} cores, torch {info['torch_capability']}, "
        f"native bf16: {info['native_bf16']}); torch {torch.__version__}; {threads} thread(s)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, base)
        encoder = base_model.load_encoder(base).eval()
        from safetensors.torch import save_file

        # today's files hold every encoder tensor (the pooler too), as HEAD expects
        paths, today_paths = [], []
        # model 0: the pretrained encoder; others: a fine-tune's stand-in
        for i in range(args.models):
            generator = torch.Generator().manual_seed(i)
            state = {
                k: v.clone() + (0.01 * torch.randn(v.shape, generator=generator) if i else 0)
                for k, v in encoder.state_dict().items()
                if v.is_floating_point()
            }
            paths.append(tmp / f"model{i}.safetensors")
            weights.save(
                paths[-1], {k: state[k] for k in weights.encoder_weights(encoder)}, f"model{i}"
            )
            today_paths.append(tmp / f"today_model{i}.safetensors")
            save_file({k: v.contiguous() for k, v in state.items()}, str(today_paths[-1]))
        datasets = {}
        for name in args.datasets:
            prepare.prepare_dataset(
                name, {"task": "x", "builtin": name}, DEFAULTS, tmp / "data" / name
            )
            datasets[name] = {
                "data_dir": str(tmp / "data" / name),
                "max_length": DEFAULTS["max_length"],
            }
        # each probe still chooses its own L2 by cross-validation, as the workflow's do
        protocol = {"l2": 1.0}

        # tokens and FLOPs of one pass of one model over every dataset's train + test
        tokenizer = base_model.load_tokenizer(base)
        all_examples = []
        for _name, spec in datasets.items():
            for split in features.SPLITS:
                frame = features.read_split(
                    spec["data_dir"],
                    split,
                    json.loads((Path(spec["data_dir"]) / "meta.json").read_text())["num_labels"],
                )
                pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
                all_examples += features.tokenize(
                    tokenizer, frame["text"].tolist(), pairs, spec["max_length"]
                )
        lengths, n_examples = [len(e["input_ids"]) for e in all_examples], len(all_examples)
        flops_per_model = encoder_flops(encoder, lengths)
        dtype_name = features.precision("cpu", "auto")
        dtype = numerics.torch_dtype(dtype_name)
        peak_before = matmul_peak(dtype, threads)
        print(
            f"work: {args.models} models x {len(datasets)} datasets ({', '.join(datasets)}), "
            f"{n_examples} examples ({sum(lengths)} tokens, mean {np.mean(lengths):.1f}) "
            f"per model; encoder dtype {dtype_name}"
        )

        # today: two processes per pair
        total = args.models * n_examples
        if not args.skip_today:
            src = head_tree(tmp / "head", args.baseline)
            started = time.perf_counter()
            for i, path in enumerate(today_paths):
                for name, spec in datasets.items():
                    out = tmp / "today" / f"{i}_{name}.npz"
                    python(
                        TODAY_FEATURES,
                        [str(base), str(path), spec["data_dir"], str(out), str(threads)],
                        src,
                    )
                    python(
                        TODAY_PROBE,
                        [
                            str(out),
                            str(out.with_suffix(".json")),
                            json.dumps(protocol),
                            str(threads),
                        ],
                        src,
                    )
            today = time.perf_counter() - started
            print(
                f"today  (2 processes per pair, {2 * len(paths) * len(datasets)} processes): "
                f"{today:7.1f} s, {total / today:7.1f} examples/s end to end"
            )

        # now: one process per model, a fresh cache; then the same jobs again (all cached)
        settings = {"batch_size": args.batch_size, "protocol": protocol, "mixed_precision": "auto"}
        summaries, started = [], time.perf_counter()
        for i, path in enumerate(paths):
            job = dict(
                base_dir=str(base),
                cache_dir=str(tmp / "cache"),
                out_path=str(tmp / "now" / f"{i}.json"),
                pairs=[(f"m{i}", name) for name in datasets],
                recipes={f"m{i}": ([str(path)], [1.0])},
                datasets=datasets,
                settings=settings,
                threads=threads,
            )
            summaries.append(
                json.loads(python(NOW_JOB, [json.dumps(job)], SRC)[1].strip().splitlines()[-1])
            )
        now = time.perf_counter() - started
        encode = sum(s.get("seconds_encode", 0.0) for s in summaries)
        peak = max(peak_before, matmul_peak(dtype, threads))
        gflops = args.models * flops_per_model / encode / 1e9
        print(
            f"now    (1 process per model, {len(paths)} processes):        {now:7.1f} s, "
            f"{total / now:7.1f} examples/s end to end"
            + (f"  ({today / now:.1f}x today)" if not args.skip_today else "")
        )
        print(
            f"       encoder pass alone: {total / encode:7.1f} examples/s, {gflops:.1f} GFLOP/s = "
            f"{100 * gflops / peak:.0f}% of the measured {dtype_name} matmul peak "
            f"({peak:.1f} GFLOP/s, {threads} thread(s)); goal >= 50%"
        )
        print(
            op_profile(
                encoder,
                all_examples,
                base_model.pad_id(tokenizer),
                settings["batch_size"],
                threads,
                peak,
            )
        )
        print(
            "       in a job: "
            f"load model {sum(s.get('seconds_load_model', 0) for s in summaries):.2f} s, "
            f"tokenize {sum(s.get('seconds_tokenize', 0) for s in summaries):.2f} s, "
            f"encode {encode:.2f} s, "
            f"probes {sum(s.get('seconds_probe', 0) for s in summaries):.2f} s"
        )
        started = time.perf_counter()
        for i, path in enumerate(paths):
            job = dict(
                base_dir=str(base),
                cache_dir=str(tmp / "cache"),
                out_path=str(tmp / "again" / f"{i}.json"),
                pairs=[(f"m{i}", name) for name in datasets],
                recipes={f"m{i}": ([str(path)], [1.0])},
                datasets=datasets,
                settings=settings,
                threads=threads,
            )
            summary = json.loads(
                python(NOW_JOB, [json.dumps(job)], SRC)[1].strip().splitlines()[-1]
            )
            assert (
                summary.get("features_computed", 0) == 0 and summary.get("probes_computed", 0) == 0
            ), summary
        print(
            f"rerun  (every pair cached): {time.perf_counter() - started:7.1f} s "
            f"for {len(paths)} jobs, no encoder pass, no probe fit"
        )

        # bf16: where it is used (or forced), the probe loss must not move
        if dtype_name == "bf16" or args.force_bf16:
            protocol_obj = linear.Protocol(l2=protocol["l2"])
            for name, spec in datasets.items():
                losses = {}
                for mode in ("no", "bf16"):
                    ev = evaluation.Evaluator(
                        base,
                        tmp / f"cache_{mode}",
                        protocol_obj,
                        mixed_precision=mode,
                        threads=threads,
                    )
                    dataset = evaluation.Dataset(name, spec["data_dir"], spec["max_length"])
                    losses[mode] = ev.evaluate(
                        [("pretrained", name)],
                        {"pretrained": evaluation.Recipe.of(paths[:1])},
                        {name: dataset},
                        {name: protocol["l2"]},
                    )[0]["loss"]
                delta = abs(losses["bf16"] - losses["no"])
                print(
                    f"bf16 check on {name}: probe loss fp32 {losses['no']:.4f}, "
                    f"bf16 {losses['bf16']:.4f}, |diff| {delta:.4f} nats "
                    f"({'within' if delta <= args.tolerance else 'OUTSIDE'} "
                    f"{args.tolerance})"
                )
                assert delta <= args.tolerance, (
                    f"bf16 features change the probe loss on {name} by {delta:.4f}"
                )
        else:
            print(
                "bf16: not used on this CPU (no native bf16: AVX2 emulates it ~100x slower); "
                "fp32 features, no loss check needed (--force-bf16 runs it anyway)"
            )


if __name__ == "__main__":
    main()
