"""What a study costs on this machine: its base model's training and encoding throughput, measured
here on a packaged dataset prepared as the config prepares it, then ``plan.cost.estimate`` over the
config's jobs.

    .venv/bin/python benchmarks/study_cost.py configs/workstation.yaml [--threads 2] [--steps 12]
        [--dataset rotten_tomatoes]

Prints the CPU, the precision, the throughput (examples per second of one job with --threads
threads, the training loop and the encoder passes only), and the study's hours of such jobs:
fine-tunes, fusion fine-tunes and probe encoding, with core-hours (hours × threads) and the wall
time on 2 and 16 cores if the jobs kept every core busy. Counted as ``plan.cost.estimate`` counts:
every epoch, a validation pass per epoch, one encoder pass per (model, dataset) pair over the probe
and test examples. Process starts, probes (milliseconds each on cached features), distances and
figures are left out: on the default study they were ~7 % of the job time
(results/tables/stage_times.csv). Builtin datasets only (their source sizes are read from the
packages).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import yaml  # noqa: E402

from weightspace import hardware, study  # noqa: E402
from weightspace.data import prepare  # noqa: E402
from weightspace.model import base_model  # noqa: E402
from weightspace.plan import cost as cost_model  # noqa: E402
from weightspace.plan import study_plan  # noqa: E402
from weightspace.probe import evaluation, linear  # noqa: E402
from weightspace.train import finetune  # noqa: E402


def filled(path: Path) -> dict:
    """The config as the workflow sees it: validated, every left-out key given its schema
    default."""
    from snakemake.utils import validate

    config = copy.deepcopy(yaml.safe_load(path.read_text()))
    validate(config, str(REPO / "schemas" / "config.schema.yaml"), set_default=True)
    study.check(config)
    return config


def measure(config: dict, dataset: str, threads: int, steps: int, work: Path) -> dict:
    base_dir = work / "base"
    base_model.materialise(config["base_model"], base_dir)
    spec = {**config["data"], **config["datasets"][dataset]}
    data_dir = work / "data" / dataset
    prepare.prepare_dataset(dataset, spec, None, data_dir)
    max_length = spec.get("max_length", 128)

    ft = config["finetune"]
    settings = finetune.Settings.from_config(
        {
            k: ft[k]
            for k in (
                "batch_size",
                "learning_rate",
                "weight_decay",
                "warmup_ratio",
                "mixed_precision",
            )
        },
        epochs=1000,
        max_steps=steps,
        max_length=max_length,
        seed=0,
        checkpoint_minutes=None,
        checkpoint_every=None,
    )
    weights_path = work / "weights.safetensors"
    metrics = finetune.finetune(
        base_dir,
        data_dir,
        work / "finetune",
        settings,
        threads=threads,
        model_id="bench",
        save_model=False,
        weights_path=weights_path,
    )

    pc = config["probe"]
    evaluator = evaluation.Evaluator(
        base_dir,
        work / "cache",
        linear.Protocol(),
        pooling=pc["pooling"],
        batch_size=pc["batch_size"],
        mixed_precision=pc["mixed_precision"],
        threads=threads,
        keep_features=False,
    )
    started = time.perf_counter()
    evaluator.features(
        "bench",
        evaluation.Recipe.of([weights_path]),
        [evaluation.Dataset(dataset, str(data_dir), max_length)],
    )
    encode_seconds = time.perf_counter() - started
    info = base_model.base_info(base_dir)
    hidden = json.loads((base_dir / "config.json").read_text())["hidden_size"]
    return {
        "train_examples_per_second": metrics["examples_per_second"],
        "encode_examples_per_second": evaluator.stats["examples_encoded"] / encode_seconds,
        "precision": metrics["precision"],
        "probe_dtype": evaluator.encoder.dtype,
        "encoder_parameters": int(info["encoder_parameters"]),
        "hidden": int(hidden),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path)
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per job (default: finetune.threads)"
    )
    parser.add_argument("--steps", type=int, default=12, help="training steps timed")
    parser.add_argument(
        "--dataset", default=None, help="the dataset timed (default: the config's first)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    config = filled(args.config)
    threads = args.threads or config["finetune"]["threads"]
    dataset = args.dataset or next(iter(config["datasets"]))
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure(config, dataset, threads, args.steps, Path(tmp))
    sizes = cost_model.builtin_source_sizes(config)
    hidden = measured["hidden"]
    cost = cost_model.estimate(
        config,
        study_plan.build(config),
        sizes,
        measured["train_examples_per_second"],
        measured["encode_examples_per_second"],
        encoder_parameters=measured["encoder_parameters"],
        head_parameters=hidden * hidden,
        hidden=hidden,
    )
    counts = study_plan.build(config).job_counts()
    hours = {k[len("gpu_hours_") :]: v for k, v in cost.items() if k.startswith("gpu_hours_")}
    total = sum(hours.values())
    print(
        f"config: {args.config}  "
        f"({len(config['datasets'])} datasets × {len(config['seeds'])} seeds; "
        f"{counts['finetune']} fine-tunes, {counts['finetune_from']} fusion fine-tunes, "
        f"{cost['models_stored']} stored models, {cost['mixes']} mixes, "
        f"{cost['probe_pairs']} probe pairs)"
    )
    print("machine:", hardware.describe())
    print(
        f"measured on {dataset}, {threads} threads per job, fine-tune {measured['precision']}, "
        f"probe {measured['probe_dtype']}: "
        f"training {measured['train_examples_per_second']:.2f} examples/s, "
        f"encoding {measured['encode_examples_per_second']:.2f} examples/s"
    )
    for name, value in hours.items():
        print(f"  {name:16s} {value:8.1f} job-hours")
    print(
        f"  {'total':16s} {total:8.1f} job-hours = {total * threads:.0f} core-hours; "
        f"wall with every core busy: {total * threads / 2:.1f} h on 2 cores, "
        f"{total * threads / 16:.1f} h on 16"
    )
    print(
        f"  disk: {cost['disk_weights_gb'] + cost['disk_models_gb']:.1f} GB of weights and models"
    )


if __name__ == "__main__":
    main()
