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

from weightspace import claim_design, evaluation, fusion, study, traversal  # noqa: E402


# fills every key the config leaves out with the schema's default, then the checks a schema cannot make
validate(config, schema="../schemas/config.schema.yaml")
study.check(config)
# a headline claim the design can never decide is said now, not after the compute (once: not in every job)
if workflow.is_main_process:
    for warning in claim_design.warnings(config):
        logger.warning(f"weightspace: {warning}")

RESULTS = "results"
DATASETS = study.datasets(config)
SEEDS = study.seeds(config)
FINETUNED = study.finetuned_ids(config)
FUSED = {f.model_id: f for f in fusion.fused_bases(config)}
MIXES = traversal.mix_recipes(config)
TRAVERSAL_POINTS = traversal.all_points(config)


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


# ---------------------------------------------------------------- probe evaluation (rules/probe.smk)


def _traversal_groups():
    """group name -> the traversal points evaluated in that job (a line, a plane, a region group)."""
    groups = {}
    for point in TRAVERSAL_POINTS:
        groups.setdefault(evaluation.group_name(point.as_row()), []).append(point)
    return groups


TRAVERSAL_GROUPS = _traversal_groups()


def _group_mix_points(group):
    return [p for p in TRAVERSAL_GROUPS[group] if p.model_id in MIXES]


def group_pairs(group):
    """(mix id, dataset) pairs of a group; its stored models are evaluated by their own jobs."""
    return sorted({(p.model_id, d) for p in _group_mix_points(group) for d in p.eval_datasets})


def group_recipes(group):
    return {p.model_id: model_recipe(p.model_id) for p in _group_mix_points(group)}


def group_datasets(group):
    return sorted({d for _, d in group_pairs(group)})


def group_weight_inputs(group):
    return sorted({path for paths, _ in group_recipes(group).values() for path in paths})


def evaluation_dataset(dataset):
    return {"name": dataset, "data_dir": f"{RESULTS}/data/{dataset}", "max_length": dataset_max_length(dataset)}


PROBED = study.probed_datasets(config)  # planned once: input functions run for every job


def probed_datasets(model_id):
    """The datasets a stored model's evaluation job probes it on (study.probed_datasets says which)."""
    return PROBED[model_id]


def probe_data_files(datasets):
    """The prepared files a probe reads: the probe split it trains on, the test split and meta.json."""
    return [f"{RESULTS}/data/{d}/{name}" for d in datasets for name in ("probe.parquet", "test.parquet", "meta.json")]


def model_results(model_ids):
    """The results files of stored models' evaluation jobs (each: the model on every dataset)."""
    return [f"{RESULTS}/probe/models/{m}.json" for m in model_ids]


def traversal_results():
    """Every results file the traversal studies read: their groups' and their stored models'."""
    stored = sorted({p.model_id for p in TRAVERSAL_POINTS if p.model_id not in MIXES})
    return [f"{RESULTS}/probe/groups/{g}.json" for g in TRAVERSAL_GROUPS] + model_results(stored)


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
        f"{RESULTS}/summary.html",
    ]
    if fusion.runs(config):
        targets.append(f"{RESULTS}/fusion/wins.csv")
    targets += list(rules.report_pages.output)  # the report's pages (rules/report.smk, included after this file)
    targets += [f"{RESULTS}/tables/stage_times.csv", f"{RESULTS}/tables/stage_times.html"]  # rules/stage_times.smk
    return targets


def dataset_max_length(dataset):
    return study.dataset_max_length(config, dataset)


def finetune_settings(dataset):
    """The fine-tuning recipe of one dataset (study.finetune_settings). How often a job checkpoints or
    validates is not the recipe: the scripts read it from the config, so changing it reruns nothing."""
    return study.finetune_settings(config, dataset)


def _finetune_resources(runs=1):
    """A fine-tuning job's resources; ``runs``: fine-tunes it runs in turn (its time limit covers them all)."""
    section = config["finetune"]
    resources = {
        # each SLURM retry (a time limit, preemption, out of memory) asks for more memory and time; the job
        # resumes from its checkpoint
        "mem_mb": lambda wc, attempt: section.get("mem_mb", 4000) * attempt,
        "runtime": lambda wc, attempt: section.get("runtime", 60) * attempt * runs,
    }
    if section.get("gpu", 0):
        resources["gpu"] = section["gpu"]
    return resources


FINETUNE_RESOURCES = _finetune_resources()


def fusion_settings(target, mode, size):
    return study.fusion_settings(config, target, mode, size)


FUSION_SEEDS = fusion.seeds(config)
FUSION_RESOURCES = _finetune_resources(runs=len(FUSION_SEEDS))  # a finetune_from job runs every fusion seed


def fusion_run_metrics(run):
    """A run's metrics.json; a fusion run that is the main fine-tune itself (study.reused) reads the main one's."""
    if study.reused(config, run):
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
    return {key: GEOMETRY[key] for key in ("primary", "bootstrap", "permutations", "tsne", "seed") if key in GEOMETRY}


def distances_mem_mb(wildcards, attempt):
    """n×n float64 matrices per group, the long table (~150 bytes a row), the block of every model (X, its
    float32 read buffer and the reference: < 2 × block_mb), the interpreter with numpy and pandas."""
    n = len(study_models())
    groups = 1 + len(GEOMETRY["groups"]) + (12 if GEOMETRY["per_layer"] else 0)
    rows = n * n * groups * len(GEOMETRY["metrics"]) * len(GEOMETRY["spaces"])
    return int((600 + 2 * GEOMETRY["block_mb"] + (n * n * groups * 8 * 4 + rows * 150) / 2**20) * attempt)
