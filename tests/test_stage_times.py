"""Where the time goes: the stage table read from Snakemake benchmark files, and its Markdown."""

from __future__ import annotations

import pandas as pd

from weightspace.report import stage_times

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, s, cpu, rss="100.5"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:{int(s):02d}\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_cpu_and_wall_by_stage(tmp_path):
    root = tmp_path / "benchmarks"
    bench(root / "finetune" / "alpha" / "seed0.tsv", 30.0, 50.0, rss="900")
    bench(root / "finetune" / "alpha" / "seed1.tsv", 34.0, 54.0)
    bench(root / "evaluate_model" / "alpha.seed0.tsv", 10.0, 12.0)
    # a job faster than Snakemake's first sample
    bench(root / "base_model.tsv", 4.0, "NA", rss="NA")
    (root / "broken.tsv").write_text("")  # a benchmark being written
    table = stage_times.stage_times(root)
    assert list(table.columns) == stage_times.COLUMNS
    # heaviest CPU first
    assert list(table["stage"]) == ["finetune", "evaluate_model", "base_model", "total"]
    rows = table.set_index("stage")
    assert rows.loc["finetune", "jobs"] == 2
    assert (
        rows.loc["finetune", "cpu_seconds"] == 104.0
        and rows.loc["finetune", "wall_seconds"] == 64.0
    )
    assert rows.loc["finetune", "max_rss_mb"] == 900
    assert rows.loc["base_model", "cpu_seconds"] == 0.0
    assert rows.loc["total", "jobs"] == 4 and rows.loc["total", "cpu_seconds"] == 116.0
    assert abs(rows.loc["finetune", "cpu_share"] - 100 * 104 / 116) < 0.1


def test_written_and_rendered(tmp_path):
    root = tmp_path / "benchmarks"
    for i, stage in enumerate(["finetune", "evaluate_model", "distances", "fuse"]):
        bench(root / stage / "x.tsv", 10.0 + i, 100.0 - 10 * i)
    table = stage_times.write(root, tmp_path / "stage_times.csv", tmp_path / "stage_times.html")
    assert (tmp_path / "stage_times.html").read_text().count("<tr") >= 5
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "stage_times.csv"), table, check_dtype=False
    )
    text = stage_times.markdown(tmp_path / "stage_times.csv", top=2)
    assert text.startswith("## Where the time goes")
    assert "**finetune**" in text and "| finetune | 1 |" in text
    assert "other (2 stages)" in text and "| **total** | 4 |" in text


def test_no_benchmarks_yet(tmp_path):
    table = stage_times.stage_times(tmp_path / "nothing")
    assert table.empty
    assert "No benchmark files yet" in stage_times.markdown(table)


def test_compute_share_from_what_the_jobs_recorded(tmp_path):
    """Compute: the fine-tunes' training and evaluation seconds, the evaluation jobs' encoding and
    probe seconds; its share is over the stage's summed wall time. Jobs that record none (data,
    aggregates) compute nothing."""
    import json

    results = tmp_path / "results"
    bench(results / "benchmarks" / "finetune" / "alpha" / "seed0.tsv", 30.0, 50.0)
    bench(results / "benchmarks" / "finetune" / "alpha" / "seed1.tsv", 34.0, 54.0)
    bench(results / "benchmarks" / "evaluate_model" / "pretrained.tsv", 10.0, 12.0)
    bench(results / "benchmarks" / "prepare_dataset" / "alpha.tsv", 6.0, 6.0)
    for seed, (train, evaluation) in enumerate(((20.0, 4.0), (22.0, 2.0))):
        path = results / "finetune" / "alpha" / f"seed{seed}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"train_seconds": train, "eval_seconds": evaluation}))
    (results / "probe" / "models").mkdir(parents=True)
    (results / "probe" / "models" / "pretrained.json").write_text(
        json.dumps(
            {
                "results": [],
                "job": {"seconds_encode": 5.0, "seconds_probe": 1.0, "seconds_load_model": 2.0},
            }
        )
    )
    rows = stage_times.stage_times(results / "benchmarks").set_index("stage")
    assert (
        rows.loc["finetune", "compute_seconds"] == 48.0
        and rows.loc["finetune", "compute_share"] == 75.0
    )
    assert rows.loc["evaluate_model", "compute_seconds"] == 6.0  # loading the model is not compute
    assert rows.loc["prepare_dataset", "compute_seconds"] == 0.0
    # of 80 s
    assert (
        rows.loc["total", "compute_seconds"] == 54.0 and rows.loc["total", "compute_share"] == 67.5
    )
    text = stage_times.markdown(stage_times.stage_times(results / "benchmarks"))
    assert "| compute | compute share |" in text and "| 75 % |" in text
