"""The default study's frontier: how much structure the fine-tuned weights show, against training
budget.

Fine-tunes the default's base on the default's datasets with several seeds under a grid of
recipes (steps, learning rate, training examples, batch size, warm-up, a head shared by the seeds
or drawn per seed), each changing one thing of the default's, with the library's own
fine-tuning loop, and records per recipe:
  - mean task-vector cosine between seeds of one dataset, between datasets of one task, across tasks
    (task vector = fine-tuned encoder weights - pretrained encoder weights);
  - 1-NN accuracy by dataset (Euclidean distance of the raw encoder weights; a model's nearest other
    model is a seed of its own dataset) and by task (nearest model of *another* dataset shares the
    task);
  - mean test accuracy of the fine-tuned models, and CPU seconds of fine-tuning per model.
Runs are cached under results/frontier/ (a recipe's runs are reused by a later call), so
the grid can grow. Prints a markdown table; --out writes it with the CPU named.

    .venv/bin/python benchmarks/frontier.py --out /tmp/frontier_grid.md
        # then copy the table into docs/frontier.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from weightspace import hardware, study  # noqa: E402
from weightspace.data import prepare as data_prepare  # noqa: E402
from weightspace.model import base_model  # noqa: E402
from weightspace.model import weights as weight_files  # noqa: E402
from weightspace.train import finetune  # noqa: E402

# The default's recipe (config.yaml: 3 epochs of 256 examples = 48 steps at batch 16), and the grid
# around it: each entry changes one thing. "train" is the training split's cap
# (data.max_examples.train), the same examples for every seed as in a study; head_seed shares the
# head's initialisation across seeds.
DEFAULT_RECIPE = {
    "max_steps": 48,
    "learning_rate": 3e-4,
    "train": 256,
    "batch_size": 16,
    "warmup_ratio": 0.1,
    "head_seed": None,
    "mixed_precision": "auto",
}
RECIPES = {
    "default": {},
    "lr1e-4": {"learning_rate": 1e-4},
    "lr1e-3": {"learning_rate": 1e-3},
    "steps96": {"max_steps": 96},
    "train1024": {"train": 1024},
    "batch32": {"batch_size": 32},
    "warmup0": {"warmup_ratio": 0.0},
    "shared_head": {"head_seed": 0},
    # bf16 autocast in training and in the fine-tune's evaluation, even where the CPU emulates it
    # (slowly): what `mixed_precision: auto` would choose on a CPU with native bf16, measured
    # against fp32
    "bf16": {"mixed_precision": "bf16"},
}


def recipe_settings(name: str) -> dict:
    return dict(DEFAULT_RECIPE, **RECIPES[name])


def prepare(config: dict, root: Path, train_cap: int, test_cap: int) -> Path:
    """The base, and the datasets capped at ``train_cap`` training examples (the same for every
    seed, as in a study: the config's data.max_examples, not a per-seed subsample)."""
    if not (root / "base" / "base.json").exists():
        base_model.materialise(config["base_model"], root / "base")
    folder = root / f"data_n{train_cap}_t{test_cap}"
    defaults = dict(config.get("data", {}))
    defaults["max_examples"] = {"train": train_cap, "validation": 128, "test": test_cap}
    for name, spec in config["datasets"].items():
        if not (folder / name / "meta.json").exists():
            data_prepare.prepare_dataset(name, spec, defaults, folder / name)
    return folder


def run_recipe(
    config: dict, root: Path, recipe: str, seeds: list[int], threads: int, test_cap: int
) -> list[dict]:
    r = recipe_settings(recipe)
    data_root = prepare(config, root, r["train"], test_cap)
    rows = []
    for dataset, seed in itertools.product(config["datasets"], seeds):
        out = root / f"runs_t{test_cap}" / recipe / dataset / f"seed{seed}"
        weights_path = out / "encoder.safetensors"
        if not weights_path.exists():
            settings = finetune.Settings.from_config(
                config["finetune"],
                seed=seed,
                max_steps=r["max_steps"],
                learning_rate=r["learning_rate"],
                train_size=None,
                batch_size=r["batch_size"],
                warmup_ratio=r["warmup_ratio"],
                head_seed=r["head_seed"],
                mixed_precision=r["mixed_precision"],
                epochs=100,
                max_length=config["data"].get("max_length", 48),
                checkpoint_every=10**9,
            )
            started = time.process_time()
            finetune.finetune(
                root / "base",
                data_root / dataset,
                out,
                settings,
                threads=threads,
                model_id=f"{dataset}.seed{seed}",
            )
            cpu = time.process_time() - started
            weight_files.extract(root / "base", out, weights_path)
            (out / "cpu_seconds.txt").write_text(f"{cpu:.1f}\n")
            # the encoder file is what we measure
            (out / "model.safetensors").unlink(missing_ok=True)
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "task": study.task_of(config, dataset),
                "weights": weights_path,
                "test_accuracy": metrics["test"]["accuracy"],
                "precision": metrics.get("precision", "fp32"),
                "cpu_seconds": float((out / "cpu_seconds.txt").read_text()),
            }
        )
    return rows


def flat(path: Path, names: list[str]) -> np.ndarray:
    tensors = weight_files.load(path)
    return np.concatenate([tensors[n].numpy().ravel() for n in names]).astype(np.float64)


def structure(rows: list[dict], pretrained: Path) -> dict:
    names = sorted(
        set(weight_files.load(pretrained)).intersection(weight_files.load(rows[0]["weights"]))
    )
    pre = flat(pretrained, names)
    vectors = np.stack([flat(r["weights"], names) - pre for r in rows])
    datasets = np.array([r["dataset"] for r in rows])
    tasks = np.array([r["task"] for r in rows])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    sq = (vectors**2).sum(1)
    # raw = task-vector distance
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * vectors @ vectors.T, 0))
    m = len(rows)
    upper = np.triu(np.ones((m, m), bool), 1)
    same_d = datasets[:, None] == datasets[None, :]
    same_t = tasks[:, None] == tasks[None, :]
    np.fill_diagonal(dist, np.inf)
    nn = dist.argmin(1)
    other = np.where(same_d, np.inf, dist)  # nearest model of another dataset
    nn_other = other.argmin(1)
    return {
        "cos_same_dataset": float(cos[upper & same_d].mean()),
        "cos_same_task": float(cos[upper & same_t & ~same_d].mean()),
        "cos_cross_task": float(cos[upper & ~same_t].mean()),
        "nn1_dataset": float((datasets[nn] == datasets).mean()),
        "nn1_task_other_dataset": float((tasks[nn_other] == tasks).mean()),
        "dist_ratio_within_across": float(
            dist[upper & same_d].mean() / dist[upper & ~same_t].mean()
        ),
        "dist_ratio_task_across": float(
            dist[upper & same_t & ~same_d].mean() / dist[upper & ~same_t].mean()
        ),
        "test_accuracy": float(np.mean([r["test_accuracy"] for r in rows])),
        "min_test_accuracy": float(np.min([r["test_accuracy"] for r in rows])),
        "cpu_seconds_per_model": float(np.mean([r["cpu_seconds"] for r in rows])),
        "models": m,
    }


def paired_accuracy_change(
    rows: list[dict], baseline: list[dict], resamples: int = 10_000
) -> tuple[float, float, float]:
    """Mean test-accuracy change against the default recipe, paired by (dataset, seed), in points,
    with a 95 % percentile interval from a bootstrap over datasets (a dataset's seeds share its
    examples: they move together)."""
    base = {(r["dataset"], r["seed"]): r["test_accuracy"] for r in baseline}
    by_dataset: dict[str, list[float]] = {}
    for r in rows:
        by_dataset.setdefault(r["dataset"], []).append(
            100 * (r["test_accuracy"] - base[r["dataset"], r["seed"]])
        )
    groups = list(by_dataset.values())
    rng = np.random.default_rng(0)
    means = [
        np.mean(np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))]))
        for _ in range(resamples)
    ]
    return float(np.mean(np.concatenate(groups))), *map(float, np.percentile(means, [2.5, 97.5]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--root", default=str(REPO / "results" / "frontier"))
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-cap", type=int, default=256)
    parser.add_argument("--out", help="write the markdown table here")
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    root = Path(args.root)
    prepare(config, root, recipe_settings(args.recipes[0])["train"], args.test_cap)
    pretrained = root / "pretrained.safetensors"
    if not pretrained.exists():
        weight_files.extract(root / "base", None, pretrained)
    cpu = hardware.describe()
    header = (
        "| recipe | steps | lr | train ex. | batch | warm-up | head | cos same dataset "
        "| cos same task | cos cross task "
        "| 1-NN dataset | 1-NN task (other dataset) | d same dataset / d across "
        "| d same task / d across "
        "| precision | test acc (mean, min) | Δ test acc vs default, points [95 % CI] "
        "| CPU s / model |"
    )
    lines = [
        f"CPU: {cpu['cpu']} ({cpu['cores']} cores, torch {cpu['torch_capability']}, native bf16: "
        f"{cpu['native_bf16']}); datasets: {', '.join(config['datasets'])}; {args.seeds} seeds; "
        f"test split capped at {args.test_cap}; "
        "Δ: paired by dataset and seed, bootstrap over datasets.",
        "",
        header,
        "|" + "---|" * 18,
    ]
    baseline = run_recipe(
        config, root, "default", list(range(args.seeds)), args.threads, args.test_cap
    )
    for recipe in args.recipes:
        rows = (
            baseline
            if recipe == "default"
            else run_recipe(
                config, root, recipe, list(range(args.seeds)), args.threads, args.test_cap
            )
        )
        s = structure(rows, pretrained)
        r = recipe_settings(recipe)
        head = "per seed" if r["head_seed"] is None else "shared"
        precision = "/".join(sorted({row["precision"] for row in rows}))
        change = (
            "—"
            if recipe == "default"
            else "{:+.1f} [{:+.1f}, {:+.1f}]".format(*paired_accuracy_change(rows, baseline))
        )
        lines.append(
            f"| {recipe} | {r['max_steps']} | {r['learning_rate']:g} | {r['train']} | "
            f"{r['batch_size']} | {r['warmup_ratio']:g} | {head} | {s['cos_same_dataset']:.3f} | "
            f"{s['cos_same_task']:.3f} | {s['cos_cross_task']:.3f} | {s['nn1_dataset']:.3f} | "
            f"{s['nn1_task_other_dataset']:.3f} | {s['dist_ratio_within_across']:.3f} | "
            f"{s['dist_ratio_task_across']:.3f} | {precision} | "
            f"{s['test_accuracy']:.3f}, {s['min_test_accuracy']:.3f} | {change} | "
            f"{s['cpu_seconds_per_model']:.0f} |"
        )
        print(lines[-1], flush=True)
        if args.out:
            Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
