"""Brought models (config key models): the encoder check and its message, export and import
through real studies (the distances come back exactly), adding one reruns only its own work, and
the where-to-start stage through snakemake on a tiny config."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, make_family_source, make_tiny_source
from tiny_study import dry_run_jobs, snakemake, tiny_config, write_config
from weightspace import WeightspaceError
from weightspace.model import brought, weights


def test_first_mismatch_names_the_first_differing_tensor():
    base = {"a.weight": (4, 4), "b.weight": (4,), "c.weight": (2,)}
    assert brought.first_mismatch(dict(base), base) is None
    assert "'b.weight' has shape (5,)" in brought.first_mismatch({**base, "b.weight": (5,)}, base)
    missing = {k: v for k, v in base.items() if k != "a.weight"}
    assert "'a.weight' is missing" in brought.first_mismatch(missing, base)
    assert "'a.extra' (shape (1,)) is not in" in brought.first_mismatch(
        {**base, "a.extra": (1,)}, base
    )


def test_a_model_of_another_size_or_family_is_rejected_by_name(tmp_path):
    base = make_tiny_source(tmp_path / "base")
    layout = weights.encoder_layout(base)
    # the same family, other width: BERT's first tensor in name order differs first
    from transformers import BertForSequenceClassification

    wide = make_tiny_source(tmp_path / "wide", hidden_size=48)  # the same family, wider
    with pytest.raises(WeightspaceError) as err:
        brought.check_folder("wide_one", wide, layout, "tiny (path)")
    message = str(err.value)
    assert "brought model 'wide_one'" in message and str(wide) in message
    assert "'embeddings.LayerNorm.bias' has shape (48,), the base's (32,)" in message
    # another family: tensor names differ
    other = make_family_source(tmp_path / "electra", "electra")
    with pytest.raises(WeightspaceError, match="brought model 'electra_one'.*encoder tensor"):
        brought.check_folder("electra_one", other, layout, "tiny (path)")
    # a classifier of the base itself (prefix bert., a head) passes: the head is not the encoder
    same = tmp_path / "same"
    model = BertForSequenceClassification.from_pretrained(base, num_labels=3)
    model.save_pretrained(same, safe_serialization=True)
    brought.check_folder("same_one", same, layout, "tiny (path)")


def _tiny(root, seeds=(0,)):
    config = tiny_config(root, {"alpha": "sentiment", "beta": "sentiment", "gamma": "topic"}, seeds)
    config["interpolation"]["enabled"] = False
    config["region"] = {"enabled": False}
    config["fusion"] = {"enabled": False}
    return config


@pytest.mark.workflow
def test_exported_finetunes_brought_back_give_the_same_distances_and_only_their_work(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    config = _tiny(first)
    write_config(first, config)
    snakemake(
        first, "--cores", "2", "results/geometry/distances.parquet", "results/probe/matrix.csv"
    )
    exported = subprocess.run(
        [sys.executable, "-m", "weightspace", "export", "results", str(tmp_path / "zoo")],
        cwd=first,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert exported.returncode == 0, exported.stderr
    folders = sorted(p.name for p in (tmp_path / "zoo").iterdir())
    assert folders == ["alpha_seed0", "beta_seed0", "gamma_seed0"]
    assert json.loads((tmp_path / "zoo/alpha_seed0/config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"
    ]

    # the second study brings them in (the base is the same folder), labelled and not
    second.mkdir()
    config2 = copy.deepcopy(config)
    config2["models"] = {
        "a0": {"path": str(tmp_path / "zoo/alpha_seed0"), "dataset": "alpha"},
        "b0": {"path": str(tmp_path / "zoo/beta_seed0"), "dataset": "beta", "task": "sentiment"},
        "g0": {"path": str(tmp_path / "zoo/gamma_seed0")},
    }
    # a line you choose from an unlabelled brought model to a fine-tune: its own panel, no claim
    config2["interpolation"] = dict(
        config2["interpolation"], enabled=True, relations=[], chosen=[["brought.g0", "alpha.seed0"]]
    )
    write_config(second, config2)
    snakemake(
        second,
        "--cores",
        "2",
        "results/geometry/distances.parquet",
        "results/interpolation/claims.csv",
    )
    lines = pd.read_csv(second / "results/interpolation/lines.csv")
    assert set(lines["relation"]) == {"chosen"} and set(lines["eval_dataset"]) == {"alpha"}
    assert (second / "results/figures/interpolation.png").stat().st_size > 0
    d1 = pd.read_csv(first / "results/geometry/square/euclidean_raw.csv", index_col=0)
    d2 = pd.read_csv(second / "results/geometry/square/euclidean_raw.csv", index_col=0)
    names = {"a0": "alpha.seed0", "b0": "beta.seed0", "g0": "gamma.seed0"}
    for x, x_id in names.items():
        assert d2.loc[f"brought.{x}", "pretrained"] == d1.loc[x_id, "pretrained"]
        for y, y_id in names.items():
            assert d2.loc[f"brought.{x}", f"brought.{y}"] == d1.loc[x_id, y_id]
    # the labels: a0 and b0 join the claims, g0 is drawn and named only
    table = {row["model_id"]: row for row in _model_table(second)}
    assert table["brought.a0"]["task"] == "sentiment" and table["brought.g0"]["dataset"] is None

    # adding one more brought model to the first study plans only its own work
    config3 = copy.deepcopy(config)
    config3["models"] = {"extra": {"path": str(tmp_path / "zoo/alpha_seed0")}}
    write_config(first, config3)
    jobs = dry_run_jobs(first, "results/geometry/distances.parquet", "results/probe/matrix.csv")
    rules = sorted(job["rule"] for job in jobs)
    assert "finetune" not in rules and "prepare_dataset" not in rules
    assert rules.count("import_model") == 1 and rules.count("evaluate_model") == 1
    evaluated = [job["output"][0] for job in jobs if job["rule"] == "evaluate_model"]
    assert evaluated == ["results/probe/models/brought.extra.json"]


def _model_table(root):
    sys.path.insert(0, str(REPO / "src"))
    import yaml

    from weightspace import study

    config = yaml.safe_load((root / "config.yaml").read_text())
    ids = ["pretrained", *study.finetuned_ids(config), *study.brought_ids(config)]
    return study.model_table(config, ids)


@pytest.mark.workflow
def test_a_mismatched_brought_model_stops_the_study_before_any_job(tmp_path):
    config = _tiny(tmp_path)
    wide = tmp_path / "other_family"
    make_family_source(wide, "electra")
    config["models"] = {"odd": {"path": str(wide)}}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "brought model 'odd'" in output and "encoder tensor" in output
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_where_to_start_ranks_and_fine_tunes_through_snakemake(tmp_path):
    config = _tiny(tmp_path)
    config["fusion"] = {
        "scopes": ["all"],
        "train_sizes": [8],
        "seeds": [0, 1],
        "targets": ["alpha"],
        "merges": {"methods": ["ties"], "density": 0.5},
    }
    config["where_to_start"] = {"enabled": True, "targets": ["alpha"], "top_k": 1}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "results/starts/outcomes.csv")
    ranking = pd.read_csv(tmp_path / "results/starts/alpha/ranking.csv")
    # the target's own fine-tune is never a candidate; the fused and merged bases that leave it
    # out are
    assert set(ranking["candidate"]) == {
        "pretrained",
        "beta.seed0",
        "gamma.seed0",
        "fused.alpha.all",
        "merged.alpha.all.ties",
    }
    assert sorted(ranking["rank"]) == list(range(1, 6))
    runs = pd.read_csv(tmp_path / "results/starts/runs.csv")
    top = ranking.sort_values("rank")["candidate"].iloc[0]
    assert set(runs["start"]) == {top, "pretrained"}
    assert len(runs) == (4 if top != "pretrained" else 2)  # two seeds per start
    targets = pd.read_csv(tmp_path / "results/starts/targets.csv")
    assert targets["chosen"].tolist() == [top] and targets["regret_top1"].isna().all()

    # evaluation mode: every candidate fine-tuned; the runs already made are reused
    config["where_to_start"]["mode"] = "evaluate"
    write_config(tmp_path, config)
    planned = dry_run_jobs(tmp_path, "results/starts/outcomes.csv")
    starts = {j["output"][0].split("/")[4] for j in planned if j["rule"] == "finetune_from"}
    assert starts == set(ranking["candidate"]) - {top, "pretrained"}
    snakemake(tmp_path, "--cores", "2", "results/summary.md")
    targets = pd.read_csv(tmp_path / "results/starts/targets.csv")
    assert targets["regret_top1"].notna().all() and targets["n_finetuned"].tolist() == [5]
    # the merge against the mean of the same members, paired over the target's two seeds
    merges = pd.read_csv(tmp_path / "results/fusion/merges.csv")
    runs = pd.read_csv(tmp_path / "results/starts/runs.csv").set_index(["start", "seed"])
    expected = 100 * (
        runs.loc["merged.alpha.all.ties", "accuracy"] - runs.loc["fused.alpha.all", "accuracy"]
    )
    assert merges[["method", "targets"]].values.tolist() == [["ties", 1]]
    assert merges["gain"].iloc[0] == pytest.approx(expected.mean())
    page = (tmp_path / "results/summary.md").read_text()
    assert "## Merges against the mean of the same members" in page
    assert "## Where to start" in page and "figures/where_to_start.png" in page


def test_brought_models_in_the_claims_only_where_labelled_and_all_in_the_maps():
    from weightspace import study
    from weightspace.geometry import clusters, projection

    config = {
        "datasets": {"a": {"task": "x"}, "b": {"task": "x"}, "c": {"task": "y"}},
        "seeds": [0, 1],
        "models": {"mine": {"path": "/m", "dataset": "a"}, "hub_one": {"hub": "org/m"}},
    }
    ids = ["pretrained", *study.finetuned_ids(config), *study.brought_ids(config)]
    table = study.model_table(config, ids)
    rows = {r["model_id"]: r for r in table}
    assert (rows["brought.mine"]["dataset"], rows["brought.mine"]["task"]) == ("a", "x")
    assert rows["brought.hub_one"]["dataset"] is None
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(ids), 4))
    d = pd.DataFrame(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)), index=ids, columns=ids)
    labelled_ids = clusters._labelled(d, table)[0]
    assert "brought.mine" in labelled_ids and "brought.hub_one" not in labelled_ids
    tsne, pca = projection.projections(d, table, {"tsne": {"perplexity": 2}})
    assert {"brought.mine", "brought.hub_one"} <= set(tsne["model_id"])
    assert set(pca["model_id"]) == set(ids)


def test_a_chosen_line_joins_a_brought_model_to_the_study():
    from weightspace.plan import study_plan, traversal

    config = {
        "datasets": {"a": {"task": "x"}, "b": {"task": "y"}},
        "seeds": [0, 1],
        "models": {"mine": {"path": "/m", "dataset": "a"}, "other": {"path": "/o"}},
        "interpolation": {
            "alphas": [-0.5, 0.0, 0.5, 1.0],
            "relations": [],
            "chosen": [["brought.mine", "b.seed0"], ["brought.other", "pretrained"]],
        },
        "region": {"enabled": False},
        "fusion": {"enabled": False},
    }
    points = traversal.lines(config)
    rows = [p.as_row() for p in points]
    assert {r["relation"] for r in rows} == {"chosen"}
    # inside [0, 1] only ('chosen' is not in extrapolate): 3 alphas per line
    assert len(rows) == 6 and {traversal.group_name(r) for r in rows} == {"line.chosen.all"}
    evals = {(r["model_a"], r["model_b"]): p.eval_datasets for r, p in zip(rows, points)}
    assert evals[("brought.mine", "b.seed0")] == ("a", "b")  # the ends' datasets, labels included
    assert evals[("brought.other", "pretrained")] == ("a", "b")  # no dataset at either end: all
    plan = study_plan.build(config)
    assert "brought.mine" in plan.group_members("line.chosen.all")
    config["interpolation"]["chosen"] = [["brought.nobody", "a.seed0"]]
    with pytest.raises(WeightspaceError, match="interpolation.chosen.*brought.nobody"):
        traversal.lines(config)
