"""The real workflow on a tiny study: the default config plans, the tiny one runs end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors import safe_open

from conftest import REPO
from tiny_study import planned_jobs, snakemake, tiny_config, write_config
from weightspace.stats.verdicts import CLAIM_COLUMNS, DESCRIPTION, VERDICTS

pytestmark = pytest.mark.workflow


def test_default_config_plans_one_finetune_per_dataset_and_seed(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    jobs = planned_jobs(tmp_path)
    assert jobs["finetune"] == len(config["datasets"]) * len(config["seeds"])
    assert jobs["prepare_dataset"] == len(config["datasets"])
    # a fine-tune writes its encoder weights: no extraction job per model
    assert "extract_weights" not in jobs
    assert jobs["extract_pretrained_weights"] == 1
    assert len(config["datasets"]) >= 6
    assert len({d["task"] for d in config["datasets"].values()}) >= 3


def test_workflow_passes_snakemakes_lint(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = snakemake(tmp_path, "--lint", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output[-4000:]


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        # a left-out key takes its default
        (lambda c: c["finetune"].update(batch_size=0), "batch_size"),
        (lambda c: c["datasets"]["alpha"].pop("task"), "task"),
        (lambda c: c["finetune"].update(learning_rate="fast"), "learning_rate"),
        (lambda c: c["datasets"]["alpha"].update(tsk="x"), "tsk"),
    ],
)
def test_bad_config_stops_with_the_key_named(tmp_path, mutate, key):
    config = tiny_config(tmp_path)
    mutate(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_config(root, tiny_config(root))
    snakemake(root, "--cores", "2")
    return root


def test_tiny_study_produces_every_output(finished_study):
    root = finished_study
    results = root / "results"
    for dataset in ("alpha", "beta", "gamma_pairs"):
        meta = json.loads((results / "data" / dataset / "meta.json").read_text())
        assert meta["num_labels"] == 2 and meta["label_names"] == ["neg", "pos"]
        for split in ("train", "validation", "test"):
            frame = pd.read_parquet(results / "data" / dataset / f"{split}.parquet")
            assert len(frame) > 0
            assert ("text_pair" in frame.columns) == dataset.endswith("_pairs")
        for seed in (0, 1):
            run = results / "finetune" / dataset / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["steps"] == 6 and 0 <= metrics["test"]["accuracy"] <= 1
            assert (run / "train_log.csv").exists() and (run / "model.safetensors").exists()
            with safe_open(
                str(results / "weights" / f"{dataset}.seed{seed}.safetensors"), "pt"
            ) as f:
                assert not any(k.startswith("classifier") for k in f.keys())
            assert (results / "benchmarks" / "finetune" / dataset / f"seed{seed}.tsv").exists()
            assert (
                "train" in (results / "logs" / "finetune" / dataset / f"seed{seed}.log").read_text()
            )
    assert (results / "weights" / "pretrained.safetensors").exists()


def test_finished_study_has_nothing_left_to_do(finished_study):
    assert planned_jobs(finished_study) == {}


def test_geometry_outputs(finished_study):
    results = finished_study / "results"
    distances = pd.read_parquet(results / "geometry" / "distances.parquet")
    assert {"model_a", "model_b", "metric", "space", "group", "distance"} <= set(distances.columns)
    models = set(distances["model_a"]) | set(distances["model_b"])
    assert {"pretrained", "alpha.seed0", "gamma_pairs.seed1", "fused.alpha.all"} <= models
    assert {"euclidean", "cosine"} <= set(distances["metric"])
    for name in ("cluster_stats.csv", "claims.csv", "tsne.csv", "pca.csv"):
        assert len(pd.read_csv(results / "geometry" / name)) > 0, name
    claims = pd.read_csv(results / "geometry" / "claims.csv")
    assert list(claims.columns) == ["metric", "space", "group", "primary", *CLAIM_COLUMNS]
    assert_verdicts(claims)
    assert {
        "dataset_closer_than_task",
        "task_closer_than_across",
        "nn1_dataset",
        "ari_dataset",
        "task_vectors_align_by_dataset",
    } <= set(claims["claim_id"])
    for figure in ("tsne.png", "distance_heatmap.png"):
        assert (results / "figures" / figure).stat().st_size > 10_000


def test_probe_matrix_covers_every_model_and_fused_bases_on_their_target(finished_study):
    results = finished_study / "results"
    matrix = pd.read_csv(results / "probe" / "matrix.csv")
    probed = {"pretrained"} | {
        f"{d}.seed{s}" for d in ("alpha", "beta", "gamma_pairs") for s in (0, 1)
    }
    assert set(matrix["model"]) == probed | {"fused.alpha.all"}
    # every dataset for the pretrained and fine-tuned models; a fused base on its target only
    assert len(matrix) == len(probed) * 3 + 1
    assert list(matrix.loc[matrix["model"] == "fused.alpha.all", "target_dataset"]) == ["alpha"]
    assert matrix["loss"].notna().all() and matrix["accuracy"].between(0, 1).all()
    for figure in ("probe_loss_heatmap.png", "probe_vs_distance.png"):
        assert (results / "figures" / figure).stat().st_size > 10_000


def test_interpolation_and_fusion_outputs(finished_study):
    results = finished_study / "results"
    lines = pd.read_csv(results / "interpolation" / "lines.csv")
    assert set(lines["relation"]) == {"same_dataset", "same_task", "cross_task", "pretrained"}
    assert sorted(lines["alpha"].unique()) == [-0.5, 0.0, 0.5, 1.0, 1.5]
    # α=0 and α=1 are the endpoints: the same probe result as the model itself
    matrix = pd.read_csv(results / "probe" / "matrix.csv").set_index(["model", "target_dataset"])
    for _, row in lines[lines["alpha"].isin([0.0, 1.0])].iterrows():
        end = row["model_a"] if row["alpha"] == 0.0 else row["model_b"]
        assert row["loss"] == pytest.approx(
            matrix.loc[(end, row["eval_dataset"]), "loss"], rel=1e-12
        )
    assert len(pd.read_csv(results / "interpolation" / "planes.csv")) == 9 * 2
    region = pd.read_csv(results / "interpolation" / "region.csv")
    assert {"centroid", "sample", "member"} <= set(region["kind"])
    claims = pd.read_csv(results / "interpolation" / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert_verdicts(claims)
    assert {
        "interior_same_dataset",
        "extrapolation_raises_loss",
        "centroid_beats_own_members",
        "centroid_beats_pretrained",
        "interior_as_good_as_members",
    } <= set(claims["claim_id"])
    fused = pd.read_csv(results / "fusion" / "claims.csv")
    assert list(fused.columns) == [*CLAIM_COLUMNS, "scope", "mode", "size"]
    assert_verdicts(fused)
    # full and bitfit, few-shot size 8
    assert set(fused["size"].astype(str)) == {"8"} and len(fused) == 2
    summary = pd.read_csv(results / "fusion" / "summary.csv")
    assert set(summary["base"]) == {"pretrained", "fused.alpha.all"}
    assert set(summary["mode"]) == {"full", "bitfit"}
    assert len(summary) == 2 * 2 * 2 and set(summary["seed"]) == {0, 1}  # start × mode × seed
    # one job per (target, start, mode, size) ran both seeds: one log and one benchmark each
    logs = sorted((results / "logs" / "finetune_from").rglob("*.log"))
    assert len(logs) == 2 * 2 and all(p.name == "n8.log" for p in logs), logs
    assert all("seed0" in p.read_text() and "seed1" in p.read_text() for p in logs)
    assert len(list((results / "benchmarks" / "finetune_from").rglob("*.tsv"))) == 2 * 2
    wins = pd.read_csv(results / "fusion" / "wins.csv")
    assert len(wins) == 2  # alpha × {full, bitfit} at size 8
    assert set(wins["outcome"]) <= {"win", "tie", "loss"}
    for figure in ("interpolation.png", "planes.png", "region.png", "fusion.png"):
        assert (results / "figures" / figure).stat().st_size > 10_000


def assert_verdicts(claims: pd.DataFrame) -> None:
    """Every headline verdict is one of the four, every other row a description, and every row says
    what it measured and on how many units; a headline row carries its family, floor and Holm
    threshold."""
    assert claims["verdict"].isin((*VERDICTS, DESCRIPTION)).all(), claims["verdict"].tolist()
    assert (
        claims["claim"].notna().all() and claims["unit"].notna().all() and claims["n"].notna().all()
    )
    # these rest on an interval and a test
    judged = claims[claims["verdict"].isin(("holds", "does not hold"))]
    assert (judged["ci_low"] <= judged["ci_high"]).all()
    p = judged["p_value"].where(judged["verdict"] == "holds", judged["p_opposite"])
    assert (p <= judged["threshold"]).all()
    headline = claims[claims["headline"].astype(bool)]
    assert (claims["verdict"] == DESCRIPTION).sum() == (~claims["headline"].astype(bool)).sum()
    assert headline["family"].notna().all() and headline["threshold"].notna().all()


def as_shown(value) -> str:
    """How the summary shows a table's value: numbers to 4 significant digits, text as it is."""
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return str(value)


def test_summary_numbers_come_from_the_tables(finished_study):
    results = finished_study / "results"
    page = (results / "summary.md").read_text()
    assert "all-MiniLM" not in page and "tiny_source" in page  # the run's own base
    assert "How a verdict is decided" in page
    geometry = pd.read_csv(results / "geometry" / "claims.csv")
    for path, claims in (
        (results / "interpolation" / "claims.csv", None),
        (results / "fusion" / "claims.csv", None),
        (None, geometry[geometry["primary"].astype(bool)]),
    ):
        claims = pd.read_csv(path) if claims is None else claims
        for claim in claims.itertuples():
            assert claim.claim in page and claim.verdict in page
            if pd.notna(claim.effect):
                assert as_shown(claim.effect) in page
            if pd.notna(claim.ci_low):
                assert f"[{claim.ci_low:.4g}, {claim.ci_high:.4g}]" in page
            assert f"{claim.n} {claim.unit}" in page
    tables = pd.read_csv(results / "tables" / "finetune_metrics.csv")
    alpha = tables[tables["dataset"] == "alpha"]["test_accuracy"].mean()
    assert f"{alpha:.4g}" in page
    for figure in ("figures/tsne.png", "figures/interpolation.png", "figures/fusion.png"):
        assert f"({figure})" in page
    html = (results / "summary.html").read_text()
    assert (
        "<table>" in html
        and "data:image/png;base64," in html
        and "How a verdict is decided" in html
    )


def test_snakemake_report_holds_every_figure(finished_study):
    snakemake(finished_study, "--report", "results/report.html")
    html = (finished_study / "results" / "report.html").read_text(errors="replace")
    # every figure and table of the study, the datasets, the fine-tuning metrics and the run's
    # config tables and the summary are HTML pages shown inline, not download buttons
    for name in (
        "tsne.png",
        "distance_heatmap.png",
        "cluster_stats.html",
        "geometry_claims.html",
        "interpolation_claims.html",
        "fusion_claims.html",
        "probe_matrix.html",
        "probe_loss_heatmap.png",
        "probe_vs_distance.png",
        "interpolation.png",
        "planes.png",
        "region.png",
        "lines.html",
        "fusion.png",
        "fusion_wins.html",
        "summary.html",
        "datasets.html",
        "finetune_metrics.html",
        "config.html",
    ):
        assert name in html, name
