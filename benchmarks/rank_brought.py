"""Where to start, at scale: rank N brought models on one target from a clean cache, then again.

The issue's criterion: rank 100 brought MiniLM-sized models on one target from a clean cache,
print the examples/s of the encoder passes against the matmul peak of the dtype they run in
(measured in this run, at the same threads) and the time per model; features and probes are cached
by content, so a second ranking takes seconds.

  zoo      N Hugging Face folders (config.json + model.safetensors), each a
           BertForSequenceClassification of the base's shape: its encoder under the `bert.`
           prefix, a random pooler and head (the import strips both). Model i is the pretrained
           encoder plus a random combination of the task vectors of a finished study's
           fine-tunes, theta_pre + sum_j c_j tau_j (1 to 3 of them, c_j ~ U(0.2, 1)), plus noise
           of 1e-3 of each tensor's std (so every model is distinct); seeded by i, so the same N
           give the same zoo. Without task vectors (no --task-vectors files) the noise alone, at
           2e-2 of the std. Each folder is written (not timed), imported with
           brought.materialise (timed: the import job's work: the check against the base, the
           encoder written as results/weights/brought.{name}.safetensors) and deleted; the
           imported encoder weights are kept for both rankings and deleted at the end.
  peak     torch.matmul of two n x n matrices (n = 2048) at --threads, best of 5, in fp32 and, where
           the CPU computes bf16 natively (weightspace.hardware), bf16; measured before and after
           the cold ranking, the best kept.
  cold     one probe.evaluation.Evaluator (the evaluate_model job's: config.yaml's probe settings,
           as rules/probe.smk's PROBE_SETTINGS pass them) over the pretrained model and the N
           imported ones on the target, one model at a time, from an empty cache, in this process.
           Per model: weights read and loaded, the encoder pass over the target's probe-train and
           test splits, the probe (its L2 cross-validated), the rest (the weights file's digest,
           the cache). The workflow runs one evaluate_model job per model: each also pays a process
           start, added as a separate line (measured here: a fresh Python up to evaluation.run, the
           warm run's own imports; and README's job_start.py figure for the real job, 4.86 s,
           which includes Snakemake's preamble and loading transformers' model code).
           Then start_outcomes.rank_candidates ranks all N + 1 by probe loss.
  warm     the rule entry evaluation.run over the same pairs and cache in a fresh process (a
           second ranking: every weights file re-hashed, every pair a cache hit, no model loaded),
           then the same ranking, which must be identical.

Encoder FLOPs per example (stated with the result): 2 x P x n + 4 x L x n^2 x d, with P the
non-embedding encoder parameters (the Linears and LayerNorms every token passes through; the
embeddings are a lookup, the pooler runs once per sequence and is left out), n the example's real
tokens (the padding of length-sorted batches is not counted, so the figure errs low), L layers and
d the hidden size (attention's QK^T and AV).

    .venv/bin/python benchmarks/rank_brought.py [--models 100] [--threads 1]
        [--target rotten_tomatoes] [--workdir /tmp/rank_bench] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

import torch  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402

from weightspace import hardware, study  # noqa: E402
from weightspace.data import prepare  # noqa: E402
from weightspace.model import base_model, brought, weights  # noqa: E402
from weightspace.probe import evaluation, features, linear, store  # noqa: E402
from weightspace.train import start_outcomes  # noqa: E402

# rules/probe.smk: the probe keys PROBE_SETTINGS passes as the protocol
PROTOCOL_KEYS = (
    "optimizer",
    "max_iter",
    "tolerance",
    "l2",
    "l2_grid",
    "cv_folds",
    "seed",
    "standardize",
)
TASK_VECTORS = "/tmp/study26/results/weights/*.seed*.safetensors"
JOB_START_README = 4.86  # s: README, job_start.py, evaluate_model's median start (before 5.03)
WARM_JOB = """
import json, sys, time
started = time.perf_counter()
from weightspace.probe import evaluation
imported = time.perf_counter()
summary = evaluation.run(**json.loads(open(sys.argv[1]).read()))
print(json.dumps(dict(summary, seconds_imports=imported - started)))
"""


# ---------------------------------------------------------------- the matmul peak and the FLOPs


def matmul_peak(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n matmul in ``dtype`` at ``threads`` threads (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def encoder_flops(params: int, layers: int, hidden: int, lengths: list[int]) -> float:
    """Forward FLOPs of one pass: 2 x P x n + 4 x L x n^2 x d per example of n real tokens."""
    return float(sum(2 * params * n + 4 * layers * n * n * hidden for n in lengths))


# ---------------------------------------------------------------- the zoo


class Zoo:
    """Brought models of the base's shape: theta_pre + sum_j c_j tau_j + noise, seeded by index."""

    def __init__(self, base: Path, pretrained: dict, task_vector_files: list[Path]):
        self.base = base
        self.config = json.loads((base / "config.json").read_text())
        self.prefix = weights.base_prefix(self.config)
        self.pretrained = pretrained
        self.std = {k: float(v.std()) if v.numel() > 1 else 0.0 for k, v in pretrained.items()}
        self.names = [p.name.removesuffix(".safetensors") for p in task_vector_files]
        self.taus = []
        for path in task_vector_files:
            tuned = weights.load(path)
            self.taus.append({k: tuned[k] - v for k, v in pretrained.items()})
        self.noise = 1e-3 if self.taus else 2e-2

    def recipe(self, i: int, generator: torch.Generator) -> list[tuple[int, float]]:
        if not self.taus:
            return []
        k = 1 + int(torch.randint(0, 3, (1,), generator=generator))
        chosen = torch.randperm(len(self.taus), generator=generator)[: min(k, len(self.taus))]
        coefficients = 0.2 + 0.8 * torch.rand(len(chosen), generator=generator)
        return [(int(j), round(float(c), 3)) for j, c in zip(chosen, coefficients)]

    def describe(self, mix: list[tuple[int, float]]) -> str:
        terms = " + ".join(f"{c:.2f} tau[{self.names[j]}]" for j, c in mix)
        return f"theta_pre + {terms} + noise" if terms else "theta_pre + noise"

    def write(self, i: int, folder: Path) -> list[tuple[int, float]]:
        """Model i as a Hugging Face folder (task model: encoder under the prefix, pooler, head)."""
        from safetensors.torch import save_file

        generator = torch.Generator().manual_seed(1_000_003 * (i + 1))
        mix = self.recipe(i, generator)
        hidden, labels = self.config["hidden_size"], 2
        tensors = {}
        for name, theta in self.pretrained.items():
            t = theta.clone()
            for j, c in mix:
                t.add_(self.taus[j][name], alpha=c)
            t.add_(torch.randn(t.shape, generator=generator), alpha=self.noise * self.std[name])
            tensors[f"{self.prefix}.{name}"] = t
        head = {
            f"{self.prefix}.pooler.dense.weight": 0.02 * torch.randn(hidden, hidden),
            f"{self.prefix}.pooler.dense.bias": torch.zeros(hidden),
            "classifier.weight": 0.02 * torch.randn(labels, hidden, generator=generator),
            "classifier.bias": torch.zeros(labels),
        }
        tensors.update(head)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        config = dict(
            self.config,
            architectures=["BertForSequenceClassification"],
            id2label={str(k): f"LABEL_{k}" for k in range(labels)},
            label2id={f"LABEL_{k}": k for k in range(labels)},
        )
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return mix


# ---------------------------------------------------------------- helpers


def stages(times: list[float]) -> str:
    return (
        f"mean {statistics.mean(times):6.3f}  median {statistics.median(times):6.3f}  "
        f"max {max(times):6.3f}  total {sum(times):8.1f}"
    )


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=100, help="brought models in the zoo")
    parser.add_argument(
        "--threads", type=int, default=None, help="the job's threads (default: probe.threads)"
    )
    parser.add_argument("--target", default="rotten_tomatoes", help="a dataset of --config")
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument(
        "--data-dir",
        default=None,
        help="a prepared folder of the target to copy (default: prepare)",
    )
    parser.add_argument("--task-vectors", default=TASK_VECTORS, help="glob of fine-tunes' weights")
    parser.add_argument("--workdir", default="/tmp/rank_bench", help="created, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep --workdir")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    probe = config["probe"]
    threads = int(args.threads or probe.get("threads", 1))
    work = Path(args.workdir)
    if work.exists() and any(work.iterdir()):
        sys.exit(f"{work} exists and is not empty: give another --workdir or remove it")
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args, config, probe, threads, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, config: dict, probe: dict, threads: int, work: Path) -> None:
    transformers.utils.logging.disable_progress_bar()
    info = hardware.describe()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = (
        f"{info['cpu']} ({info['cores']} cores, torch {info['torch_capability']}, "
        f"native bf16: {info['native_bf16']})"
    )
    print(f"CPU: {cpu}; torch {torch.__version__}; {threads} thread(s); {stamp}; {load()}")
    loads = [os.getloadavg()]
    n = args.models
    need = (n + 1) * 0.095e9 + 2e9
    if shutil.disk_usage(work).free < need:
        sys.exit(
            f"{work}: {shutil.disk_usage(work).free / 1e9:.1f} GB free, {need / 1e9:.1f} needed"
        )

    # ------------------------------------------------ base, target, settings
    base = work / "base"
    base_model.materialise(dict(config["base_model"]), base)
    entry = config["datasets"][args.target]
    data = work / "data" / args.target
    if args.data_dir:
        shutil.copytree(args.data_dir, data)
    else:
        prepare.prepare_dataset(
            args.target, prepare.settings(entry, config.get("data", {})), None, data
        )
    max_length = int(study.dataset_max_length(config, args.target))
    settings = {
        "pooling": probe["pooling"],
        "batch_size": probe["batch_size"],
        "mixed_precision": probe["mixed_precision"],
        "protocol": {k: probe[k] for k in PROTOCOL_KEYS if k in probe},
        "keep_features": probe.get("keep_features", True),
    }
    datasets = {args.target: {"data_dir": str(data), "max_length": max_length}}

    # tokens of one pass (train = the probe split, and test) and its FLOPs
    tokenizer = base_model.load_tokenizer(base)
    num_labels = json.loads((data / "meta.json").read_text())["num_labels"]
    lengths = []
    for split in features.SPLITS:
        frame = features.read_split(data, split, num_labels)
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        examples = features.tokenize(tokenizer, frame["text"].tolist(), pairs, max_length)
        lengths += [len(e["input_ids"]) for e in examples]
    weights_dir = work / "weights"
    weights_dir.mkdir()
    pre_path = weights_dir / f"{study.PRETRAINED}.safetensors"
    weights.extract(base, None, pre_path)
    pretrained = weights.load(pre_path)
    base_config = json.loads((base / "config.json").read_text())
    layers, hidden = base_config["num_hidden_layers"], base_config["hidden_size"]
    params = sum(t.numel() for k, t in pretrained.items() if not k.startswith("embeddings."))
    flops_per_pass = encoder_flops(params, layers, hidden, lengths)
    dtype_name = features.precision("cpu", settings["mixed_precision"])
    print(
        f"target {args.target}: {len(lengths)} examples per encoder pass (probe-train + test), "
        f"{sum(lengths)} real tokens (mean {sum(lengths) / len(lengths):.1f}, max_length "
        f"{max_length}); encoder {base_config['model_type']} L={layers} d={hidden}, "
        f"P = {params / 1e6:.3f}M non-embedding parameters of "
        f"{sum(t.numel() for t in pretrained.values()) / 1e6:.3f}M; "
        f"{flops_per_pass / len(lengths) / 1e9:.3f} GFLOP per example "
        f"(2 P n + 4 L n^2 d); dtype {dtype_name}, batch {settings['batch_size']}"
    )

    # ------------------------------------------------ the matmul peak
    peaks = {"fp32": matmul_peak(torch.float32, threads)}
    if hardware.cpu_has_native_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16, threads)
    print(
        "matmul peak (2048^3, best of 5, before): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items())
        + ("" if "bf16" in peaks else " (bf16 not measured: no native bf16, auto runs fp32)")
    )

    # ------------------------------------------------ the zoo: written, imported
    files = sorted(Path(p) for p in glob.glob(args.task_vectors))
    zoo = Zoo(base, pretrained, files)
    print(
        f"zoo: {n} brought models, {len(files)} task vectors ({args.task_vectors}), "
        f"noise {zoo.noise:g} x each tensor's std"
    )
    write_s, import_s, mixes = [], [], {}
    recipes = {study.PRETRAINED: ([str(pre_path)], [1.0])}
    started_zoo = time.perf_counter()
    for i in range(n):
        name = f"zoo{i:03d}"
        folder = work / "folders" / name
        started = time.perf_counter()
        mixes[study.brought_id(name)] = zoo.describe(zoo.write(i, folder))
        written = time.perf_counter()
        out = weights_dir / f"{study.brought_id(name)}.safetensors"
        brought.materialise(name, {"path": str(folder)}, base, out)
        import_s.append(time.perf_counter() - written)
        write_s.append(written - started)
        shutil.rmtree(folder)
        recipes[study.brought_id(name)] = ([str(out)], [1.0])
        if (i + 1) % 10 == 0 and i + 1 < n:
            print(f"  {i + 1}/{n} imported, {time.perf_counter() - started_zoo:.0f} s", flush=True)
    zoo_s = time.perf_counter() - started_zoo
    del zoo
    print(
        f"zoo written and imported in {zoo_s:.1f} s ({load()}); each folder written (not timed "
        f"as ranking) {statistics.mean(write_s):.2f} s"
    )

    # ------------------------------------------------ cold: one evaluator over every model
    cache_dir = work / "cache"
    evaluator = evaluation.Evaluator(
        base,
        cache_dir,
        linear.Protocol.from_config(dict(settings["protocol"])),
        pooling=settings["pooling"],
        batch_size=settings["batch_size"],
        mixed_precision=settings["mixed_precision"],
        threads=threads,
        keep_features=settings["keep_features"],
    )
    specs = {args.target: evaluation.Dataset(args.target, str(data), max_length)}
    per_model = {k: [] for k in ("total", "load_model", "tokenize", "encode", "probe", "rest")}
    results = []
    started_cold = time.perf_counter()
    before = evaluator.job_summary(started_cold)
    for model_id, recipe in recipes.items():
        t0 = time.perf_counter()
        results += evaluator.evaluate(
            [(model_id, args.target)], {model_id: evaluation.Recipe.of(*recipe)}, specs
        )
        total = time.perf_counter() - t0
        after = evaluator.job_summary(started_cold)
        parts = {k: after.get(f"seconds_{k}", 0) - before.get(f"seconds_{k}", 0) for k in per_model}
        parts["total"], parts["rest"] = total, 0.0
        parts["rest"] = total - sum(v for k, v in parts.items() if k != "total")
        for k, v in parts.items():
            per_model[k].append(v)
        before = after
        done = len(per_model["total"])
        if done % 10 == 0 and done < len(recipes):
            print(
                f"  {done}/{len(recipes)} evaluated, {time.perf_counter() - started_cold:.0f} s "
                f"({load()})",
                flush=True,
            )
    cold_s = time.perf_counter() - started_cold
    summary = dict(job="rank_brought (cold)", pairs=len(results), **before)
    cold_out = work / "probe" / "cold.json"
    store.write(cold_out, results, summary)
    candidates = {m: "pretrained" if m == study.PRETRAINED else "brought" for m in recipes}
    ranking = start_outcomes.rank_candidates(args.target, candidates, store.read([cold_out]))
    peaks_after = {"fp32": matmul_peak(torch.float32, threads)}
    if "bf16" in peaks:
        peaks_after["bf16"] = matmul_peak(torch.bfloat16, threads)
    peaks = {k: max(v, peaks_after[k]) for k, v in peaks.items()}
    peak = peaks.get(dtype_name, peaks["fp32"])
    models = len(recipes)
    encode_s = sum(per_model["encode"])
    examples = models * len(lengths)
    gflops = models * flops_per_pass / encode_s / 1e9
    assert summary.get("features_computed") == models, summary
    loads.append(os.getloadavg())

    # ------------------------------------------------ warm: the rule entry, a fresh process
    job = dict(
        base_dir=str(base),
        cache_dir=str(cache_dir),
        out_path=str(work / "probe" / "warm.json"),
        pairs=[(m, args.target) for m in recipes],
        recipes=recipes,
        datasets=datasets,
        settings=settings,
        threads=threads,
        job="rank_brought (warm)",
    )
    (work / "warm_job.json").write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", WARM_JOB, str(work / "warm_job.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    warm_s = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"the warm ranking failed:\n{out.stderr[-3000:]}")
    warm = json.loads(out.stdout.strip().splitlines()[-1])
    assert warm.get("features_computed", 0) == 0 and warm.get("probes_computed", 0) == 0, warm
    started = time.perf_counter()
    ranking_warm = start_outcomes.rank_candidates(
        args.target, candidates, store.read([job["out_path"]])
    )
    rank_s = time.perf_counter() - started
    same = ranking_warm[["candidate", "probe_loss"]].equals(ranking[["candidate", "probe_loss"]])
    process_start = warm_s - warm["seconds"]
    loads.append(os.getloadavg())

    # ------------------------------------------------ the report
    print(f"\ntop {args.top} of {models} candidates on {args.target} (rank 1 = lowest probe loss):")
    pre_rank = int(ranking.loc[ranking["candidate"] == study.PRETRAINED, "rank"].iloc[0])
    for row in ranking.head(args.top).itertuples():
        what = f"  {mixes[row.candidate]}" if row.candidate in mixes else ""
        print(
            f"  {row.rank:3d}. {row.candidate:16s} loss {row.probe_loss:.4f}  "
            f"acc {row.probe_accuracy:.3f}{what}"
        )
    print(
        f"  pretrained: rank {pre_rank}, loss "
        f"{ranking.loc[ranking['rank'] == pre_rank, 'probe_loss'].iloc[0]:.4f}; "
        f"{pre_rank - 1} of {models - 1} brought models rank above it"
    )

    lines = [
        f"date               {stamp}",
        f"CPU                {cpu}",
        f"torch              {torch.__version__}, {threads} thread(s), encoder dtype {dtype_name}",
        f"load average       start {fmt(loads[0])}; after cold {fmt(loads[1])}; "
        f"end {fmt(loads[2])} (1, 5, 15 min; {info['cores']} cores)",
        f"models             {n} brought + pretrained = {models} candidates, target "
        f"{args.target}, {len(lengths)} examples per pass, batch {settings['batch_size']}, "
        f"max_length {max_length}",
        "matmul peak        "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items())
        + f" (2048^3, best of 5 before and after, {threads} thread(s))",
        f"import (brought.materialise, per model)    {stages(import_s)} s",
        f"cold ranking, one process, empty cache: {cold_s:.1f} s for {models} models "
        f"({cold_s / models:.2f} s per model); per model, s:",
    ]
    for k in ("total", "load_model", "tokenize", "encode", "probe", "rest"):
        label = {
            "total": "evaluate (all)",
            "load_model": "weights load",
            "tokenize": "tokenize",
            "encode": "encoder pass",
            "probe": "probe (L2 by CV)",
            "rest": "rest (digest, cache)",
        }[k]
        lines.append(f"  {label:22s} {stages(per_model[k])}")
    ranked_s = sum(import_s) + cold_s
    starts = models * JOB_START_README
    lines += [
        f"encoder passes     {examples} examples in {encode_s:.1f} s = {examples / encode_s:.1f} "
        f"examples/s; {gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f}% of the {dtype_name} "
        f"matmul peak ({peak:.1f})",
        f"import + rank      {ranked_s:.1f} s ({n} imports, {sum(import_s) / n:.2f} s each, + "
        f"{models} evaluations, {cold_s / models:.2f} s each) = {ranked_s / models:.2f} s per "
        "model",
        f"+ job start-ups    the workflow runs one evaluate_model job per model, each a new "
        f"process: {JOB_START_README:.2f} s start each by README's job_start.py (Snakemake's "
        f"preamble, imports, the model's code; not measured here) = +{starts:.0f} s, "
        f"{ranked_s + starts:.1f} s in all, {(ranked_s + starts) / models:.2f} s per model; "
        "measured here: a "
        f"fresh Python to the start of evaluation.run {process_start:.2f} s (of it imports "
        f"{warm['seconds_imports']:.2f} s; torch is imported inside run)",
        f"warm ranking       {warm_s:.2f} s (fresh process: {process_start:.2f} s start, "
        f"evaluation.run {warm['seconds']:.2f} s: {warm.get('probes_cached', 0)} probes cached, "
        f"0 computed, every weights file re-hashed; ranking {rank_s:.3f} s); "
        f"same ranking: {same}",
        f"speed-up           warm vs cold ranking {cold_s / warm_s:.0f}x; vs import + cold "
        f"{ranked_s / warm_s:.0f}x",
    ]
    print("\n" + "\n".join(lines))
    print(f"(the zoo's folders were written in {sum(write_s):.1f} s more, not counted)")
    if not same:
        raise SystemExit("the warm ranking differs from the cold one")


def fmt(values) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


if __name__ == "__main__":
    main()
