"""What a heavy job pays before it computes: the rules' real scripts, run in fresh processes up to
their first computation, phase by phase, before and after a change, in one run on one machine.

Every heavy job of the workflow (finetune, finetune_from, evaluate_model, evaluate_group) is a new
Python process: Snakemake writes the script with its preamble (a pickled `snakemake` object) and
runs it. This benchmark makes a tiny real study once, untimed (the packaged base all-MiniLM-L6-v2
materialised by the base_model rule, two generated two-label datasets, one fine-tune per dataset, a
fused start, a line from the pretrained model): the real `snakemake` runs one job of each heavy rule
with --skip-script-cleanup, and the preambles it wrote are kept. Each timed run then starts a fresh
`python`, executes that job's real preamble (unpickling its real `snakemake` object: input, output,
params, log, threads, wildcards, resources, config), and runs the rule's real script with
runpy.run_path(script, init_globals={"snakemake": ...}) in the job's working directory, with the
environment Snakemake gives a job (OMP_NUM_THREADS and the like set to its threads). An evaluation
job gets an empty cache folder each run (the kept study's cache would spare it every computation).

The run stops at the job's first computation: the first TrainingRun.step of a fine-tune (its first
optimizer step) and the first features.encode of an evaluation (its first encoder batch): a wrapper
notes the time and raises an exception the harness catches. The phases are the times between
events, each named for what ended at the event (the order is the scripts'; a name met twice sums):

  interpreter          process start to the first line (python and site, .pth files)
  harness              this benchmark's own imports and hooks (a few ms: not counted in the job's
                       seconds)
  preamble             Snakemake's preamble: unpickling the job's object, snakemake.logging
  imports to torch     the script's imports until torch is imported (a fine-tune's weightspace
                       modules import numpy and pandas first)
  imports after torch  the rest of the script's imports, to its logs.to_file (weightspace)
  job setup            to base_model.load_tokenizer (settings; an evaluation: its cache keys, the
                       weights' digests, the cache lookups)
  import transformers  `import transformers` done (its first scan of the model files)
  transformers.models  `transformers.models` done (the second scan: scan_transformers_once)
  tokenizer            the rest of load_tokenizer (the Auto classes, the tokenizer's files)
  data                 a fine-tune: the splits read, subsampled (few-shot) and tokenized, to
                       load_classifier; an evaluation: the splits read and tokenized, to the encoder
  init weights         finetune_from: its start's encoder weights read (model.weights.load)
  weights              an evaluation: its recipe's weights read and mixed, to load_encoder
  model                load_classifier / load_encoder (the family's code, from_pretrained)
  training setup       skipping padding, AdamW, the scheduler, the resume check, to the first step

Events are noted by wrapping those functions once their modules are imported (an import hook that
looks at module names only) and when the `torch`, `transformers` and `transformers.models` packages
finish executing. Every run also reports its CPU seconds (user + system of the job's process,
getrusage at the stop: steadier than wall time where other work shares the machine) and peak RSS.

Before and after: --before COMMIT (default 660d600: the GC pause in, scan_transformers_once and the
numpy few-shot subsample not yet) is checked out as a detached git worktree under /tmp (removed at
the end) and its scripts run with PYTHONPATH at its src/ (the child reports which weightspace it
imported), against this working tree's scripts and src/. Both get the same kept job objects: the
scripts read the same snakemake attributes at that commit. Runs are interleaved: one uncounted
warm-up of every (rule, tree) first (page cache, .pyc files), then --repeats rounds, each running
every rule before and after, rules in a rotated order and the tree that goes first alternating.

Prints the CPU, its native bf16 support and what `auto` precision resolves to; per rule the min and
median seconds from process start to the first computation before and after, the saving and the
ratio, the median CPU seconds; then each rule's phase medians, before and after. With --results (a
finished study's results/ folder) it also prints the start's share of the study's summed job time:
the after-start per heavy rule x that rule's jobs / the jobs' benchmarked seconds, and what the
before-start would have added.

    .venv/bin/python benchmarks/job_start.py [--repeats 5] [--before 660d600] [--study DIR]
        [--rules finetune,evaluate_model] [--results results]

--study DIR keeps the tiny study (and its kept jobs) in DIR and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# rules whose jobs import torch and load a model (the others read tables or weights files only)
HEAVY_RULES = ("finetune", "finetune_from", "evaluate_model", "evaluate_group")
SCRIPTS = {
    "finetune": "workflow/scripts/finetune.py",
    "finetune_from": "workflow/scripts/finetune_from.py",
    "evaluate_model": "workflow/scripts/evaluate.py",
    "evaluate_group": "workflow/scripts/evaluate.py",
}
# the tiny study's job of each heavy rule (one of its outputs)
TARGETS = {
    "finetune": "results/finetune/alpha/seed0/metrics.json",
    "finetune_from": "results/fusion/runs/alpha/fused.alpha.all/full/n64/seed0/metrics.json",
    "evaluate_model": "results/probe/models/alpha.seed0.json",
    "evaluate_group": "results/probe/groups/line.pretrained.alpha.json",
}
DEFAULT_BEFORE = "660d600"

# (module, attribute path, event): functions whose call (enter) and return (exit) are noted; the
# stop events raise at their first call
FINETUNE_WRAPS = [
    ("weightspace.logs", "to_file", "log"),
    ("weightspace.model.base_model", "load_tokenizer", "tokenizer"),
    ("weightspace.model.weights", "load", "init weights"),
    ("weightspace.model.base_model", "load_classifier", "model"),
    ("weightspace.train.finetune", "TrainingRun.step", "stop"),
]
EVALUATE_WRAPS = [
    ("weightspace.logs", "to_file", "log"),
    ("weightspace.model.base_model", "load_tokenizer", "tokenizer"),
    ("weightspace.model.base_model", "load_encoder", "model"),
    ("weightspace.probe.features", "encode", "stop"),
]
WRAPS = {
    "finetune": FINETUNE_WRAPS,
    "finetune_from": FINETUNE_WRAPS,
    "evaluate_model": EVALUATE_WRAPS,
    "evaluate_group": EVALUATE_WRAPS,
}
# event -> the phase that ends there
FINETUNE_PHASES = {
    "interpreter": "interpreter",
    "harness": "harness",
    "preamble": "preamble",
    "imported torch": "imports to torch",
    "enter log": "imports after torch",
    "exit log": "job setup",
    "enter tokenizer": "job setup",
    "imported transformers": "import transformers",
    "imported transformers.models": "transformers.models",
    "exit tokenizer": "tokenizer",
    "enter init weights": "data",
    "exit init weights": "init weights",
    "enter model": "data",
    "exit model": "model",
    "enter stop": "training setup",
}
EVALUATE_PHASES = dict(
    FINETUNE_PHASES,
    **{"enter model": "weights", "exit model": "model", "enter stop": "data"},
)
PHASES = {
    "finetune": FINETUNE_PHASES,
    "finetune_from": FINETUNE_PHASES,
    "evaluate_model": EVALUATE_PHASES,
    "evaluate_group": EVALUATE_PHASES,
}

# The job's process: notes its events, runs Snakemake's preamble and the rule's script.
CHILD = r"""
import sys, time
_interpreter = time.time()
import builtins, functools, importlib.abc, importlib.machinery, json, os, resource, runpy

spec = json.loads(open(sys.argv[1]).read())
events = {"start": float(sys.argv[2]), "interpreter": _interpreter}


def mark(event):
    events.setdefault(event, time.time())  # the first time only


class FirstComputation(BaseException):
    pass


def wrap(owner, path, event):
    *parents, attr = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        mark("enter " + event)
        if event == "stop":
            raise FirstComputation
        try:
            return original(*args, **kwargs)
        finally:
            mark("exit " + event)

    setattr(owner, attr, wrapper)


MARKED = {"torch", "transformers", "transformers.models"}
WATCHED = set(MARKED)
for module, _, _ in spec["wraps"]:
    WATCHED.add(module)


class Hook(importlib.abc.MetaPathFinder):
    # notes a watched module's import when it has run, and wraps its functions
    def find_spec(self, name, path=None, target=None):
        if name not in WATCHED:
            return None
        WATCHED.discard(name)
        found = importlib.machinery.PathFinder.find_spec(name, path)
        if found is None or not hasattr(found.loader, "exec_module"):
            return found
        run = found.loader.exec_module

        def exec_module(module):
            run(module)
            if name in MARKED:
                mark("imported " + name)
            for owner, attr, event in spec["wraps"]:
                if owner == name:
                    wrap(module, attr, event)

        found.loader.exec_module = exec_module
        return found


sys.meta_path.insert(0, Hook())
os.chdir(spec["workdir"])
mark("harness")
namespace = {"__name__": "__main__", "__file__": spec["kept"], "__builtins__": builtins}
exec(compile(spec["preamble"], spec["kept"], "exec"), namespace)  # Snakemake's preamble
snakemake = namespace["snakemake"]
if spec["cache_dir"]:  # `params` is built from this store at each access
    store = snakemake._params_store
    store[store._names["cache_dir"][0]] = spec["cache_dir"]
mark("preamble")
try:
    runpy.run_path(spec["script"], init_globals={"snakemake": snakemake}, run_name="__main__")
except FirstComputation:
    pass
else:
    raise SystemExit("the job ended before its first computation")
usage = resource.getrusage(resource.RUSAGE_SELF)
import weightspace
print(json.dumps({
    "events": events,
    "cpu": usage.ru_utime + usage.ru_stime,
    "max_rss_mb": usage.ru_maxrss / 1024,
    "weightspace": weightspace.__file__,
}))
"""


# ---------------------------------------------------------------- the tiny study (untimed)

WORDS = {0: ("dull", "bad", "awful", "boring", "weak"), 1: ("great", "fine", "lovely", "superb")}


def write_inputs(root: Path) -> dict:
    """Two generated two-label datasets (train/test CSV; the default's caps cut them to 256 train,
    64 validation, 256 test rows) and the study's config: config.yaml's, with these datasets."""
    # the default study's settings (caps, recipes, threads, probe) with a fine-tune of two steps
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(seeds=[0], datasets={})
    config["finetune"]["max_steps"] = 2
    config["fusion"]["targets"] = ["alpha"]
    config["interpolation"].update(
        relations=["pretrained"], extrapolate=[], pairs_per_relation=1, fraction={"pretrained": 1.0}
    )
    for k, name in enumerate(("alpha", "beta")):
        folder = root / "inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(k)
        for split, n in (("train", 360), ("test", 300)):
            with open(folder / f"{split}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["text", "label"])
                for i in range(n):
                    label = i % 2
                    words = " and ".join(rng.choice(WORDS[label]) for _ in range(2))
                    writer.writerow([f"the {name} film {i} was {words}", ("neg", "pos")[label]])
        config["datasets"][name] = {
            "task": "sentiment",
            "files": {s: str(folder / f"{s}.csv") for s in ("train", "test")},
            "columns": {"text": "text", "label": "label"},
        }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def kept_jobs(root: Path) -> dict[str, dict]:
    """rule -> the kept script of its target job: {kept, preamble, threads}."""
    jobs = {}
    for kept in sorted((root / ".snakemake" / "scripts").glob("tmp*.py")):
        lines = kept.read_text().splitlines()
        if len(lines) < 3 or not lines[0].startswith("######## snakemake preamble start"):
            continue
        preamble = lines[1]
        data = next(
            node.value
            for node in ast.walk(ast.parse(preamble))
            if isinstance(node, ast.Constant) and isinstance(node.value, bytes)
        )
        job = pickle.loads(data)
        rule = job.rule
        if rule in TARGETS and TARGETS[rule] in list(job.output):
            jobs[rule] = {
                "kept": str(kept),
                "preamble": preamble,
                "threads": int(job.threads),
                "job": ", ".join(f"{k}={v}" for k, v in job.wildcards.items()),
            }
    return jobs


def prepare_study(root: Path) -> dict[str, dict]:
    """The tiny study's kept jobs, made by the real workflow once (reused where root has them)."""
    index = root / "kept_jobs.json"
    if index.exists():
        return json.loads(index.read_text())
    root.mkdir(parents=True, exist_ok=True)
    write_inputs(root)
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(root), "--configfile", str(root / "config.yaml"), "--cores", "2"]
    cmd += ["--skip-script-cleanup", *TARGETS.values()]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    started = time.time()
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the tiny study failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    jobs = kept_jobs(root)
    missing = set(TARGETS) - set(jobs)
    if missing:
        raise SystemExit(f"no kept script of {sorted(missing)} in {root}/.snakemake/scripts")
    index.write_text(json.dumps(jobs, indent=1))
    print(f"tiny study made in {time.time() - started:.0f} s (untimed): {root}")
    return jobs


# ---------------------------------------------------------------- trees and runs


def worktree(commit: str, folder: Path) -> str:
    """A detached worktree of ``commit`` in ``folder``; its one-line description."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(folder), commit],
        check=True,
    )
    return subject(folder)


def subject(folder: Path) -> str:
    """The commit checked out in ``folder``: its short hash and the start of its subject."""
    line = subprocess.run(
        ["git", "-C", str(folder), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    return line if len(line) <= 90 else line[:89] + "…"


def this_tree() -> str:
    head = subject(REPO)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "workflow/scripts"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    changed = " (src/ or workflow/scripts/ changed since)" if dirty else ""
    return f"this working tree, at {head}{changed}"


def one_run(rule: str, tree: Path, job: dict, study: Path, tmp: Path) -> dict:
    """A fresh process runs ``rule``'s script of ``tree`` to its first computation; its phases,
    seconds in all, CPU seconds and peak RSS."""
    if not (tree / SCRIPTS[rule]).exists():
        raise SystemExit(f"{tree} has no {SCRIPTS[rule]}")
    cache_dir = tempfile.mkdtemp(dir=tmp) if rule.startswith("evaluate") else None
    spec = {
        "workdir": str(study),
        "kept": job["kept"],
        "preamble": job["preamble"],
        "script": str(tree / SCRIPTS[rule]),
        "cache_dir": cache_dir,
        "wraps": WRAPS[rule],
    }
    spec_file = tmp / f"{rule}.json"
    spec_file.write_text(json.dumps(spec))
    threads = str(job["threads"])
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), HF_HUB_OFFLINE="1")
    for var in ("OMP", "GOTO", "OPENBLAS", "MKL", "NUMEXPR"):
        env[f"{var}_NUM_THREADS"] = threads
    env["VECLIB_MAXIMUM_THREADS"] = threads
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(spec_file), repr(started)],
        capture_output=True,
        text=True,
        env=env,
    )
    if cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"{rule} ({tree}) failed:\n{out.stdout[-2000:]}\n{out.stderr[-6000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["weightspace"]).is_relative_to(tree / "src"):
        raise SystemExit(f"{rule}: the job imported {result['weightspace']}, not {tree}'s")
    events = sorted(result["events"].items(), key=lambda item: item[1])
    if events[-1][0] != "enter stop":
        raise SystemExit(f"{rule}: events after the first computation: {events}")
    phases: dict[str, float] = {}
    for (_, previous), (event, at) in zip(events, events[1:], strict=False):
        label = PHASES[rule].get(event, event)
        phases[label] = phases.get(label, 0.0) + at - previous
    return {
        "phases": phases,
        # the job's seconds: the harness's own are not counted
        "total": events[-1][1] - events[0][1] - phases.get("harness", 0.0),
        "cpu": result["cpu"],
        "rss": result["max_rss_mb"],
    }


def measure(rules, trees: dict[str, Path], jobs, study: Path, repeats: int) -> dict:
    """(rule, tree name) -> its counted runs: an uncounted warm-up of each, then ``repeats``
    interleaved rounds."""
    runs: dict[tuple[str, str], list[dict]] = {(r, t): [] for r in rules for t in trees}
    with tempfile.TemporaryDirectory(prefix="job_start_") as tmp:
        for round_ in range(repeats + 1):
            shift = round_ % len(rules)
            order = list(rules[shift:]) + list(rules[:shift])
            names = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for rule in order:
                for name in names:
                    run = one_run(rule, trees[name], jobs[rule], study, Path(tmp))
                    if round_:  # round 0 warms up
                        runs[(rule, name)].append(run)
    return runs


# ---------------------------------------------------------------- printing


def machine() -> str:
    import torch

    from weightspace import hardware
    from weightspace.model import precision

    cpu = hardware.describe()
    auto = precision.resolve(torch.device("cpu"), "auto")
    bf16 = "native bf16 (AMX / AVX512-BF16)" if cpu["native_bf16"] else "no native bf16"
    return (
        f"CPU: {cpu['cpu']} ({cpu['cores']} cores, torch {cpu['torch_capability']}), {bf16}: "
        f"precision auto = {auto} on this CPU (fine-tunes and encoders); torch {torch.__version__}"
    )


def table(runs: dict, rules, trees: dict[str, Path]) -> dict[str, float]:
    """Prints the seconds to first computation; returns rule -> after's median."""
    before, after = list(trees)
    print(
        f"\n{'to 1st computation, s':22s} {'before min / med':>16s} {'after min / med':>16s}"
        f" {'saving':>7s} {'ratio':>6s}  {'CPU s before / after':>20s} {'saving':>7s}"
    )
    medians = {}
    for rule in rules:
        b, a = runs[(rule, before)], runs[(rule, after)]
        bt, at = [r["total"] for r in b], [r["total"] for r in a]
        bm, am = statistics.median(bt), statistics.median(at)
        bc = statistics.median(r["cpu"] for r in b)
        ac = statistics.median(r["cpu"] for r in a)
        medians[rule] = am
        print(
            f"{rule:22s} {min(bt):7.2f} / {bm:6.2f} {min(at):7.2f} / {am:6.2f} {bm - am:7.2f}"
            f" {bm / am:5.2f}x  {bc:11.2f} / {ac:6.2f} {bc - ac:7.2f}"
        )
    return medians


def phase_table(runs: dict, rules, trees: dict[str, Path]) -> None:
    before, after = list(trees)
    print("\nphases (median s): before -> after")
    for rule in rules:
        b, a = runs[(rule, before)], runs[(rule, after)]
        labels = list(dict.fromkeys(p for r in b + a for p in r["phases"]))
        print(f"  {rule} (peak RSS {statistics.median(r['rss'] for r in a):.0f} MB after)")
        for label in labels:
            bm = statistics.median(r["phases"].get(label, 0.0) for r in b)
            am = statistics.median(r["phases"].get(label, 0.0) for r in a)
            note = "  not counted" if label == "harness" else ""
            print(f"    {label:20s} {bm:6.3f} -> {am:6.3f}  ({am - bm:+.3f}){note}")
        bt = statistics.median(r["total"] for r in b)
        at = statistics.median(r["total"] for r in a)
        print(f"    {'in all':20s} {bt:6.3f} -> {at:6.3f}  ({at - bt:+.3f})")


def study_share(results: Path, after: dict[str, float], before: dict[str, float]) -> str:
    """The start's share of a finished study's summed job time, per heavy rule's measured start."""
    from weightspace.report import stage_times

    jobs = stage_times.read_benchmarks(results / "benchmarks")
    total = float(jobs["wall_seconds"].sum())
    counts = {rule: int((jobs["stage"] == rule).sum()) for rule in HEAVY_RULES}
    start = sum(counts[r] * after[r] for r in after)
    saved = sum(counts[r] * (before[r] - after[r]) for r in after)
    jobs_text = ", ".join(f"{counts[r]} {r} x {after[r]:.1f} s" for r in after)
    return (
        f"{results}: {jobs_text} = {start:,.0f} s of {total:,.0f} s summed job time "
        f"({start / total:.0%}); the before-start would add {saved:,.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="the commit to compare against")
    parser.add_argument("--study", help="keep (and reuse) the tiny study in this folder")
    parser.add_argument("--rules", default=",".join(HEAVY_RULES))
    parser.add_argument("--results", help="a finished study's results/ folder")
    args = parser.parse_args()
    rules = [r for r in args.rules.split(",") if r]
    if unknown := set(rules) - set(HEAVY_RULES):
        raise SystemExit(f"--rules: not heavy rules: {sorted(unknown)}")

    print(machine())
    with tempfile.TemporaryDirectory(prefix="job_start_study_") as tmp:
        study = Path(args.study).resolve() if args.study else Path(tmp) / "study"
        jobs = prepare_study(study)
        old = Path(tempfile.mkdtemp(prefix="job_start_before_")) / "tree"
        try:
            described = worktree(args.before, old)
            print(f"before: {described}\nafter:  {this_tree()}")
            print(
                f"{args.repeats} interleaved rounds after one uncounted warm-up; the tiny study's "
                f"jobs ({study}):"
            )
            for rule in rules:
                print(f"  {rule:15s} {jobs[rule]['job']}, {jobs[rule]['threads']} thread(s)")
            trees = {"before": old, "after": REPO}
            runs = measure(rules, trees, jobs, study, args.repeats)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                capture_output=True,
            )
            shutil.rmtree(old.parent, ignore_errors=True)
    after = table(runs, rules, trees)
    phase_table(runs, rules, trees)
    if args.results:
        before = {r: statistics.median(x["total"] for x in runs[(r, "before")]) for r in rules}
        print("\n" + study_share(Path(args.results), after, before))


if __name__ == "__main__":
    main()
