"""Planning at scale: how long a large study takes to plan, in-process and as a `snakemake -n`.

Writes a large study's config: config.yaml with its datasets (its packaged builtins) repeated under
new names (rotten_tomatoes_017: same builtin, same task) up to --datasets, and --seeds seeds; the
originals keep their names. Its stages are config.yaml's (since 2026-12-07 every stage: lines,
planes, regions, the full probe matrix, fusion on every target; before, the 106 x 5 figures of
README/issue 24 were taken with a `--full` overlay that turned them on). --source registry repeats
every builtin of weightspace.data.registry (with its default task) instead of config.yaml's
datasets. Then it times:

  in-process    the start-up work of rules/common.smk on the config, each step alone: the schema
                validation (Snakemake's validate), study.check, claim_design.warnings and
                study_plan.build (the one plan the rules read, built once)
  snakemake -l  the whole process up to a parsed workflow (interpreter, imports, Snakefile,
                validation, plan, every rule's definition): what a `snakemake -n` pays before
                its DAG
  snakemake -n  `snakemake -n --quiet rules --configfile <it> --directory <an empty folder>`, the
                whole process

each --repeats times (min and median), and the same for the baseline, config.yaml itself (the 8 x 2
default), in the same run: the ratio says what a study of this size costs over the default. -n
minus -l is the DAG: Snakemake's job graph, the input functions of rules/*.smk, the dry-run
listing. Names the CPU. Not a timed test: run by hand.

    .venv/bin/python benchmarks/plan_scale.py [--datasets 106] [--seeds 5] [--repeats 3]
        [--source config|registry] [--write PATH]   (--write: only write the config)

To check that a change to the planning leaves every job as it was, dump the jobs of a dry run (one
sorted line per job: rule, wildcards, inputs, outputs, params, log, benchmark, threads, resources)
before and after it, and compare the files:

    .venv/bin/python benchmarks/plan_scale.py --dump before.jsonl --configfile config.yaml [...]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

import yaml  # noqa: E402

from weightspace import hardware, study  # noqa: E402


def study_config(datasets: int, seeds: int, source: str = "config") -> dict:
    """config.yaml with `datasets` datasets (its builtins repeated, renamed) and `seeds` seeds."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if source == "registry":
        from weightspace.data import registry

        originals = {
            name: {"task": registry.get(name).task, "builtin": name} for name in registry.names()
        }
    else:
        originals = dict(config["datasets"])
    names = dict(originals)
    copy_number = 0
    while len(names) < datasets:
        copy_number += 1
        for name, entry in originals.items():
            if len(names) < datasets:
                names[f"{name}_{copy_number:03d}"] = dict(entry)
    config["datasets"] = dict(list(names.items())[:datasets])
    config["seeds"] = list(range(seeds))
    return config


def filled(config: dict) -> dict:
    """The config as rules/common.smk sees it: validated, every left-out key given its default."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"), set_default=True)
    study.check(config)
    return config


def timed(call, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls, each as in a fresh process (id parse cache emptied)."""
    seconds = []
    for _ in range(repeats):
        getattr(study.parse, "cache_clear", lambda: None)()
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def in_process(config: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of the start-up work of rules/common.smk, each step on its own."""
    from snakemake.utils import validate

    from weightspace.plan import claim_design, study_plan

    ready = filled(config)
    schema = str(REPO / "schemas" / "config.schema.yaml")
    return {
        "validate": timed(
            lambda: validate(copy.deepcopy(config), schema, set_default=True), repeats
        ),
        "study.check": timed(lambda: study.check(ready), repeats),
        "claim_design.warnings": timed(lambda: claim_design.warnings(ready), repeats),
        "study_plan.build": timed(lambda: study_plan.build(ready), repeats),
    }


def snakemake_seconds(configfile: Path, flag: str, repeats: int) -> tuple[list[float], str]:
    """Wall seconds of whole `snakemake <flag>` processes, each in a fresh empty folder, and the
    job count the last one printed."""
    seconds, jobs = [], "?"
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as work:
            command = [
                SNAKEMAKE,
                "-s",
                str(REPO / "Snakefile"),
                *flag.split(),
                "--configfile",
                str(configfile),
                "--directory",
                work,
            ]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
        if done.returncode:
            sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        for line in (done.stdout + done.stderr).splitlines():
            if line.startswith("total"):
                jobs = line.split()[-1]
    return seconds, jobs


def summary(seconds: list[float], digits: int = 2) -> str:
    return f"min {min(seconds):6.{digits}f} s  median {statistics.median(seconds):6.{digits}f} s"


# ---------------------------------------------------------------- the jobs of a dry run, to compare


def dump(out: Path, snakemake_args: list[str]) -> None:
    """Runs `snakemake -n <args>` in this process; writes a sorted JSON line per job it runs."""
    from snakemake.cli import main as snakemake_main
    from snakemake.executors import dryrun

    records = []
    printjob = dryrun.Executor.printjob

    def named(namedlist) -> dict:
        return {
            "items": [str(f) for f in namedlist],
            "names": {name: list(span) for name, span in sorted(namedlist._names.items())},
        }

    def record(self, job):
        records.append(
            json.dumps(
                {  # in this order, and dicts in theirs: a changed order shows
                    "rule": job.rule.name,
                    "wildcards": dict(job.wildcards_dict),
                    "input": named(job.input),
                    "output": named(job.output),
                    "params": {
                        name: getattr(job.params, name) for name in sorted(job.params._names)
                    },
                    "params_unnamed": [
                        p
                        for i, p in enumerate(job.params)
                        if not any(s <= i < (e or s + 1) for s, e in job.params._names.values())
                    ],
                    "log": [str(f) for f in job.log],
                    "benchmark": str(job.benchmark) if job.benchmark else None,
                    "threads": job.threads,
                    "resources": {
                        k: v
                        for k, v in job.resources.items()
                        if k not in ("tmpdir", "_cores", "_nodes")
                    },
                },
                default=repr,
            )
        )
        return printjob(self, job)

    dryrun.Executor.printjob = record
    with tempfile.TemporaryDirectory() as work:
        try:
            snakemake_main(
                [
                    "-s",
                    str(REPO / "Snakefile"),
                    "-n",
                    "--quiet",
                    "all",
                    "--directory",
                    work,
                    *snakemake_args,
                ]
            )
        except SystemExit as stop:
            if stop.code:
                raise
    out.write_text("".join(f"{line}\n" for line in sorted(records)))
    print(f"{len(records)} jobs -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=106)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--source", choices=("config", "registry"), default="config")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, help="only write the config to this file")
    parser.add_argument(
        "--dump", type=Path, help="only write the jobs of a dry run (see above) to this file"
    )
    args, rest = parser.parse_known_args()
    if args.dump:
        dump(args.dump, rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    config = study_config(args.datasets, args.seeds, args.source)
    if args.write:
        args.write.write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"wrote {args.write}: {args.datasets} datasets x {args.seeds} seeds")
        return

    print(f"CPU: {hardware.cpu_name()} ({os.cpu_count()} cores)")
    stages = "config.yaml"
    baseline = yaml.safe_load((REPO / "config.yaml").read_text())
    print(
        f"study: {args.datasets} datasets x {args.seeds} seeds, the stages of {stages}; "
        f"baseline: config.yaml ({len(baseline['datasets'])} datasets x {len(baseline['seeds'])} "
        f"seeds); {args.repeats} runs each"
    )
    with tempfile.TemporaryDirectory() as tmp:
        large_file = Path(tmp) / "large.yaml"
        large_file.write_text(yaml.safe_dump(config, sort_keys=False))

        print(f"\n{'in-process':28s} {'large study':>30s}   {'baseline median':>17s}  ratio")
        large, base = in_process(config, args.repeats), in_process(baseline, args.repeats)
        for step in large:
            base_median = statistics.median(base[step])
            ratio = statistics.median(large[step]) / max(base_median, 1e-9)
            print(f"  {step:26s} {summary(large[step], 3)}   {base_median:15.3f} s {ratio:6.1f}x")

        print(f"\n{'whole processes':28s} {'large study':>30s}   {'baseline median':>17s}  ratio")
        for flag in ("-l", "-n --quiet rules"):
            large_s, jobs = snakemake_seconds(large_file, flag, args.repeats)
            base_s, base_jobs = snakemake_seconds(REPO / "config.yaml", flag, args.repeats)
            base_median = statistics.median(base_s)
            ratio = statistics.median(large_s) / base_median
            counts = f"  ({jobs} jobs; baseline {base_jobs})" if flag.startswith("-n") else ""
            line = f"  snakemake {flag:16s} {summary(large_s)}   {base_median:15.2f} s"
            print(f"{line} {ratio:6.1f}x{counts}")


if __name__ == "__main__":
    main()
