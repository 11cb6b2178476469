"""A tiny study on disk: generated datasets, a tiny random encoder, a config; and a way to run
it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, generated_frame, make_tiny_source

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def write_files_dataset(folder: Path, seed: int, pairs: bool = False, n_train: int = 64) -> dict:
    """CSV train/test files (no validation: the prep step makes one)."""
    folder.mkdir(parents=True, exist_ok=True)
    generated_frame(n_train, seed=seed, pairs=pairs, string_labels=True).to_csv(
        folder / "train.csv", index=False
    )
    generated_frame(32, seed=seed + 100, pairs=pairs, string_labels=True).to_csv(
        folder / "test.csv", index=False
    )
    columns = {"text": "text", "label": "label"}
    if pairs:
        columns["text_pair"] = "text_pair"
    return {
        "files": {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")},
        "columns": columns,
    }


def tiny_config(root: Path, datasets: dict[str, str] | None = None, seeds=(0, 1)) -> dict:
    """datasets: name -> task. The first dataset of a task named *_pairs uses sentence pairs."""
    datasets = datasets or {"alpha": "sentiment", "beta": "sentiment", "gamma_pairs": "nli"}
    source = root / "tiny_source"
    if not (source / "config.json").exists():
        make_tiny_source(source)
    config = {
        "base_model": {"path": str(source), "pooling": "mean"},
        "seeds": list(seeds),
        "data": {"max_examples": {"train": 64, "validation": 16, "test": 32}, "max_length": 24},
        "datasets": {},
        "finetune": {
            "epochs": 1,
            "max_steps": 6,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "checkpoint_every": 3,
            "threads": 1,
            "mem_mb": 1000,
            "runtime": 10,
        },
        "interpolation": {
            "alphas": [-0.5, 0.0, 0.5, 1.0, 1.5],
            "pairs_per_relation": 1,
            "planes": {"kinds": ["same_task"], "grid": [0.0, 0.5, 1.0]},
        },
        "region": {"groups": ["task"], "samples": 1},
        "fusion": {
            "scopes": ["all"],
            "modes": ["full", "bitfit"],
            "train_sizes": [8],
            "seeds": [0, 1],
            "targets": ["alpha"],
        },
    }
    for i, (name, task) in enumerate(datasets.items()):
        entry = write_files_dataset(root / "inputs" / name, seed=i, pairs=name.endswith("_pairs"))
        config["datasets"][name] = {"task": task, **entry}
    return config


def write_config(root: Path, config: dict) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    root: Path, *args: str, timeout: int = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the real workflow on root/config.yaml with root as the working directory."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(root),
        "--configfile",
        str(root / "config.yaml"),
        *args,
    ]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def planned_jobs(root: Path, *targets: str) -> dict[str, int]:
    """rule -> job count of a dry run (what would run now)."""
    # --quiet=rules: the spaced form takes a list and would swallow the targets
    out = snakemake(root, "-n", "--quiet=rules", *targets).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def core_targets(config: dict) -> list[str]:
    """The per-dataset artifacts of every study: prepared data, fine-tunes and encoder weights
    (later stages' aggregates left out, so a run of these stays small)."""
    datasets, seeds = list(config["datasets"]), config["seeds"]
    targets = [f"results/data/{d}/meta.json" for d in datasets]
    targets += [f"results/finetune/{d}/seed{s}/metrics.json" for d in datasets for s in seeds]
    targets += [f"results/weights/{d}.seed{s}.safetensors" for d in datasets for s in seeds]
    return targets + ["results/weights/pretrained.safetensors"]


def dry_run_jobs(root: Path, *targets: str) -> list[dict]:
    """The jobs a dry run plans (what would run now), each {"rule", "input": [...], "output":
    [...]}."""
    out = snakemake(root, "-n", *targets).stdout
    jobs, job = [], None
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            job = {"rule": words[1][:-1], "input": [], "output": []}
            jobs.append(job)
        elif job and line.startswith(("    input: ", "    output: ")):
            key, files = line.strip().split(": ", 1)
            job[key] = files.split(", ")
        elif not line.startswith(" "):
            job = None
    return jobs
