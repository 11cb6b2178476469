"""What a job pays before it computes: a fresh Python process up to a loaded encoder, phase by
phase.

Every heavy job of the workflow is a new process (Snakemake's `script:`) that imports torch and
transformers and loads the base. This runs that start --repeats times in fresh processes, on the
packaged base (all-MiniLM-L6-v2) materialised as the workflow does, and prints the median of each
phase:

  python       the interpreter and our package (weightspace, no torch)
  torch        import torch
  transformers from transformers import AutoModel, AutoTokenizer
  model code   the model family's module (transformers imports it on first use: BERT here)
  load         AutoModel.from_pretrained of the base (config, construction, safetensors)
  tokenizer    AutoTokenizer.from_pretrained

With --results (a finished study's results/ folder) it also prints the start's share of the study's
summed job time: start x heavy jobs / the jobs' benchmarked seconds. Names the CPU.

    .venv/bin/python benchmarks/job_start.py [--repeats 5] [--results results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

WORKER = """
import json, sys, time
t = {"start": float(sys.argv[2])}
import weightspace.logs
t["python"] = time.time()
import torch
t["torch"] = time.time()
from transformers import AutoModel, AutoTokenizer
t["transformers"] = time.time()
from transformers.utils import logging
logging.disable_progress_bar()
config = __import__("transformers").AutoConfig.from_pretrained(sys.argv[1])
getattr(__import__("transformers"), \
config.architectures[0] if config.architectures else "BertModel")
t["model code"] = time.time()
AutoModel.from_pretrained(sys.argv[1])
t["load"] = time.time()
AutoTokenizer.from_pretrained(sys.argv[1])
t["tokenizer"] = time.time()
print(json.dumps(t))
"""
PHASES = ("python", "torch", "transformers", "model code", "load", "tokenizer")
# rules whose jobs import torch and load a model (the others read tables or weights files only)
HEAVY_RULES = ("finetune", "finetune_from", "evaluate_model", "evaluate_group")


def one_start(base: Path) -> dict[str, float]:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(base), repr(started)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
    )
    stamps = json.loads(out.stdout.strip().splitlines()[-1])
    previous, phases = stamps["start"], {}
    for phase in PHASES:
        phases[phase] = stamps[phase] - previous
        previous = stamps[phase]
    return phases


def study_share(results: Path, start_seconds: float) -> str:
    from weightspace.report import stage_times

    jobs = stage_times.read_benchmarks(results / "benchmarks")
    heavy, total = int(jobs["stage"].isin(HEAVY_RULES).sum()), float(jobs["wall_seconds"].sum())
    return (
        f"{results}: {heavy} heavy jobs x {start_seconds:.1f} s = "
        f"{heavy * start_seconds:,.0f} s of {total:,.0f} s summed job time "
        f"({heavy * start_seconds / total:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", help="a finished study's results/ folder")
    args = parser.parse_args()

    from weightspace import hardware
    from weightspace.model import base_model

    cpu = hardware.describe()
    print(f"CPU: {cpu['cpu']} ({cpu['cores']} cores, torch {cpu['torch_capability']})")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, base)
        one_start(base)  # the first start also warms the page cache; not counted
        runs = [one_start(base) for _ in range(args.repeats)]
    medians = {p: statistics.median(r[p] for r in runs) for p in PHASES}
    total = statistics.median(sum(r.values()) for r in runs)
    for phase in PHASES:
        print(f"  {phase:13s} {medians[phase]:5.2f} s")
    print(f"  {'in all':13s} {total:5.2f} s (median of {args.repeats} fresh processes)")
    if args.results:
        print(study_share(Path(args.results), total))


if __name__ == "__main__":
    main()
