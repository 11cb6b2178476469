# Shared by every stage: config validation, model ids, and the input functions.
import os
import sys
from pathlib import Path

from snakemake.utils import validate

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
# rule scripts (local, conda or SLURM jobs) import the library from the same checkout
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p))
CONDA_ENV = "../envs/weightspace.yaml"

from weightspace import fusion, study, traversal  # noqa: E402


validate(config, schema="../schemas/config.schema.yaml")

RESULTS = "results"
DATASETS = study.datasets(config)
SEEDS = study.seeds(config)
FINETUNED = study.finetuned_ids(config)
FUSED = {f.model_id: f for f in fusion.fused_bases(config)}
MIXES = traversal.mix_recipes(config)


wildcard_constraints:
    dataset=study.DATASET_PATTERN,
    seed=study.SEED_PATTERN,
    model_id=study.MODEL_ID_PATTERN,


def study_models():
    """Every stored model: it joins the geometry and the probe matrix."""
    return [study.PRETRAINED] + FINETUNED + list(FUSED)


def model_recipe(model_id):
    """(weights files, coefficients) whose combination is this model's encoder.

    Stored models are one file; a mix (a point on a line, plane or region) is built in
    memory from its stored endpoints, never written.
    """
    if model_id in MIXES:
        ids, coefficients = zip(*MIXES[model_id])
        return [f"{RESULTS}/weights/{m}.safetensors" for m in ids], list(coefficients)
    return [f"{RESULTS}/weights/{model_id}.safetensors"], [1.0]


def probe_results(pairs):
    return [f"{RESULTS}/probe/{m}/{d}.json" for m, d in sorted(pairs)]


def model_weight_inputs(wildcards):
    return model_recipe(wildcards.model_id)[0]


def all_targets():
    """What a run produces: every stage's tables and figures, and the summary page."""
    targets = expand(f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/metrics.json", dataset=DATASETS, seed=SEEDS)
    targets += expand(f"{RESULTS}/weights/{{model_id}}.safetensors", model_id=study_models())
    targets += [
        f"{RESULTS}/geometry/claims.csv",
        f"{RESULTS}/geometry/cluster_stats.csv",
        f"{RESULTS}/figures/tsne.png",
        f"{RESULTS}/figures/distance_heatmap.png",
        f"{RESULTS}/probe/matrix.csv",
        f"{RESULTS}/interpolation/claims.csv",
        f"{RESULTS}/tables/datasets.csv",
        f"{RESULTS}/summary.md",
    ]
    if fusion.runs(config):
        targets.append(f"{RESULTS}/fusion/wins.csv")
    return targets


def dataset_max_length(dataset):
    return config["datasets"][dataset].get("max_length", config.get("data", {}).get("max_length", 128))


def finetune_settings(dataset):
    """The fine-tuning recipe of one dataset: the finetune section plus its max_length."""
    keys = ("epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "warmup_ratio",
            "early_stopping_patience", "checkpoint_every", "mixed_precision")
    settings = {k: config["finetune"][k] for k in keys if k in config["finetune"]}
    settings["max_length"] = dataset_max_length(dataset)
    return settings


def _finetune_resources():
    section = config["finetune"]
    resources = {
        "mem_mb": section.get("mem_mb", 4000),
        # each SLURM retry (a time-limit kill) asks for more time; the job resumes from its checkpoint
        "runtime": lambda wc, attempt: section.get("runtime", 60) * attempt,
    }
    if section.get("gpu", 0):
        resources["gpu"] = section["gpu"]
    return resources


FINETUNE_RESOURCES = _finetune_resources()


def fusion_settings(target, mode, size):
    """The target's fine-tuning recipe, in a mode (full or BitFit) and at a training-set size."""
    settings = finetune_settings(target)
    settings.update(config.get("fusion", {}).get("finetune", {}))
    if mode == "bitfit":
        settings["trainable"] = "bitfit"
        settings["learning_rate"] = config.get("fusion", {}).get("bitfit_learning_rate", 1e-3)
    settings["train_size"] = None if size == "all" else int(size)
    return settings


def fusion_run_metrics(run):
    """A run's metrics.json. Full fine-tuning of the pretrained start on all the data with the
    study's own recipe is exactly the main fine-tune of that dataset and seed: reuse it."""
    same_recipe = fusion_settings(run.target, run.mode, run.size) == dict(finetune_settings(run.target), train_size=None)
    if run.base == study.PRETRAINED and run.mode == "full" and run.size == "all" and same_recipe and run.seed in SEEDS:
        return f"{RESULTS}/finetune/{run.target}/seed{run.seed}/metrics.json"
    return f"{RESULTS}/{run.path}/metrics.json"


# ---------------------------------------------------------------- geometry (rules/geometry.smk)

GEOMETRY = config["geometry"]
GEOMETRY_SQUARES = expand(
    f"{RESULTS}/geometry/square/{{metric}}_{{space}}.csv", metric=GEOMETRY["metrics"], space=GEOMETRY["spaces"]
)


def geometry_weights():
    return [f"{RESULTS}/weights/{model_id}.safetensors" for model_id in study_models()]


def geometry_table():
    return study.model_table(config, study_models())


def geometry_settings():
    return {key: GEOMETRY[key] for key in ("primary", "bootstrap", "tsne", "seed")}


def distances_mem_mb(wildcards, attempt):
    """n×n float64 matrices per group, the long table (~150 bytes a row), the block of every model (X, its
    float32 read buffer and the reference: < 2 × block_mb), the interpreter with numpy and pandas."""
    n = len(study_models())
    groups = 1 + len(GEOMETRY["groups"]) + (12 if GEOMETRY["per_layer"] else 0)
    rows = n * n * groups * len(GEOMETRY["metrics"]) * len(GEOMETRY["spaces"])
    return int((600 + 2 * GEOMETRY["block_mb"] + (n * n * groups * 8 * 4 + rows * 150) / 2**20) * attempt)
