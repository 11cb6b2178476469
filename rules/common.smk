# Shared by every stage: config validation, model ids, and the input functions.
import os
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
# rule scripts (local, conda or SLURM jobs) import the library from the same checkout
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
)
CONDA_ENV = "../envs/weightspace.yaml"

from weightspace import study  # noqa: E402
from weightspace.plan import claim_design, study_plan, traversal  # noqa: E402

# fills every key the config leaves out with the schema's default, then the checks a schema cannot make
validate(config, schema="../schemas/config.schema.yaml")
study.check(config)
# a headline claim the design can never decide is said now, not after the compute (once: not in every job);
# a brought model whose encoder is not the base's is named now, from its safetensors headers alone
if workflow.is_main_process:
    for warning in claim_design.warnings(config):
        logger.warning(f"weightspace: {warning}")
    if config["models"]:
        from weightspace.model import base_model, brought

        brought.check(
            config,
            base_model.local_folder(config["base_model"]),
            base_model.describe(config["base_model"]),
        )

RESULTS = "results"
# what this config makes: models, fusion runs, traversal points and groups, probed datasets (built once)
PLAN = study_plan.build(config)


wildcard_constraints:
    dataset=study.DATASET_PATTERN,
    seed=study.SEED_PATTERN,
    model_id=study.MODEL_ID_PATTERN,


def weights_file(model_id):
    return f"{RESULTS}/weights/{model_id}.safetensors"


def model_recipe(model_id):
    """(weights files, coefficients) whose combination is this model's encoder: a stored model is one file; a
    mix (a point on a line, plane or region) is built in memory from its stored endpoints, never written.
    """
    ids, coefficients = zip(*PLAN.recipe(model_id))
    return [weights_file(m) for m in ids], list(coefficients)


# ---------------------------------------------------------------- probe evaluation (rules/probe.smk)


def group_recipes(group):
    return {m: model_recipe(m) for m in PLAN.group_recipes(group)}


def evaluation_dataset(dataset):
    return {
        "name": dataset,
        "data_dir": f"{RESULTS}/data/{dataset}",
        "max_length": dataset_max_length(dataset),
    }


def probe_data_files(datasets):
    """The prepared files a probe reads: the probe split it trains on, the test split and meta.json."""
    return [
        f"{RESULTS}/data/{d}/{name}"
        for d in datasets
        for name in ("probe.parquet", "test.parquet", "meta.json")
    ]


def model_results(model_ids):
    """The results files of stored models' evaluation jobs (each: the model on its probed datasets)."""
    return [f"{RESULTS}/probe/models/{m}.json" for m in model_ids]


def traversal_results():
    """Every results file the traversal studies read: their groups' and their stored models'."""
    groups = [f"{RESULTS}/probe/groups/{g}.json" for g in PLAN.groups]
    return groups + model_results(PLAN.traversal_stored_models())


# figure output -> (the traversal study it draws, file, report caption); a study that is off draws none
TRAVERSAL_FIGURES = {
    "line_figure": ("line", "interpolation.png", "interpolation.rst"),
    "plane_figure": ("plane", "planes.png", "planes_figure.rst"),
    "region_figure": ("region", "region.png", "region_figure.rst"),
}


def traversal_figures():
    return {
        name: report(
            f"{RESULTS}/figures/{file}", caption=f"../report/{caption}", category="Interpolation"
        )
        for name, (study_name, file, caption) in TRAVERSAL_FIGURES.items()
        if study_name in PLAN.traversal_studies
    }


def traversal_figure(name):
    """A traversal figure's path where its study has points, else no input."""
    study_name, file, _ = TRAVERSAL_FIGURES[name]
    return f"{RESULTS}/figures/{file}" if study_name in PLAN.traversal_studies else []


def all_targets():
    """What a run produces: every stage's tables and figures, and the summary page."""
    targets = expand(
        f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/metrics.json",
        dataset=PLAN.datasets,
        seed=PLAN.seeds,
    )
    targets += [weights_file(m) for m in PLAN.stored_models]
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
    if PLAN.fusion_runs:
        targets.append(f"{RESULTS}/fusion/wins.csv")
    if PLAN.merge_runs:
        targets.append(f"{RESULTS}/fusion/merges.csv")
    if PLAN.start_targets:
        targets.append(f"{RESULTS}/starts/outcomes.csv")
    targets += list(
        rules.report_pages.output
    )  # the report's pages (rules/report.smk, included after this file)
    targets += [
        f"{RESULTS}/tables/stage_times.csv",
        f"{RESULTS}/tables/stage_times.html",
    ]  # rules/stage_times.smk
    return targets


# ---------------------------------------------------------------- fine-tuning (rules/finetune.smk, fusion.smk)


def dataset_max_length(dataset):
    return study.dataset_max_length(config, dataset)


def finetune_settings(dataset):
    """The fine-tuning recipe of one dataset (study.finetune_settings). How often a job checkpoints or
    validates is not the recipe: the scripts read it from the config, so changing it reruns nothing.
    """
    return study.finetune_settings(config, dataset)


def fusion_settings(target, mode, size):
    return study.fusion_settings(config, target, mode, size)


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
FUSION_RESOURCES = _finetune_resources(
    runs=len(PLAN.fusion_seeds)
)  # a finetune_from job runs every fusion seed


# the merged bases' runs and their means' twins (the runs of the fused bases they are paired with)
MERGE_TWINS = [*PLAN.merge_runs, *(r for r in PLAN.fusion_runs if r.base in PLAN.fused)]


def fusion_run_metrics(run):
    """A run's metrics.json; a fusion run that is the main fine-tune itself (the plan's reused runs) reads the
    main one's."""
    if PLAN.reused(run):
        return f"{RESULTS}/finetune/{run.target}/seed{run.seed}/metrics.json"
    return f"{RESULTS}/{run.path}/metrics.json"


def start_runs():
    """The fine-tunes the where-to-start summary reads: every candidate's in evaluation mode; in use mode the top
    k and the pretrained start of each target's ranking (a checkpoint: the ranking decides which jobs run).
    """
    runs = []
    for target in PLAN.start_targets:
        chosen = list(PLAN.start_candidates[target])
        if PLAN.start_mode == "use":
            from weightspace.train import start_outcomes

            ranking = checkpoints.rank_starts.get(target=target).output[0]
            chosen = start_outcomes.chosen_starts(pd.read_csv(ranking), PLAN.start_top_k)
        runs += PLAN.start_runs(target, chosen)
    return runs


def start_run_metrics(wildcards):
    return [fusion_run_metrics(run) for run in start_runs()]


# ---------------------------------------------------------------- geometry (rules/geometry.smk)

GEOMETRY = config["geometry"]
GEOMETRY_SQUARES = expand(
    f"{RESULTS}/geometry/square/{{metric}}_{{space}}.csv",
    metric=GEOMETRY["metrics"],
    space=GEOMETRY["spaces"],
)


def geometry_table():
    return study.model_table(config, PLAN.stored_models)


def geometry_settings():
    return {
        key: GEOMETRY[key]
        for key in ("primary", "bootstrap", "permutations", "tsne", "seed")
        if key in GEOMETRY
    }


def distances_mem_mb(wildcards, attempt):
    """n×n float64 matrices per group, the long table (~150 bytes a row), the block of every model (X, its
    float32 read buffer and the reference: < 2 × block_mb), the interpreter with numpy and pandas.
    """
    n = len(PLAN.stored_models)
    groups = 1 + len(GEOMETRY["groups"]) + (12 if GEOMETRY["per_layer"] else 0)
    rows = n * n * groups * len(GEOMETRY["metrics"]) * len(GEOMETRY["spaces"])
    return int(
        (600 + 2 * GEOMETRY["block_mb"] + (n * n * groups * 8 * 4 + rows * 150) / 2**20) * attempt
    )
