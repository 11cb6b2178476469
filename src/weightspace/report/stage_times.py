"""Where a study's time goes: CPU and wall time by stage, from the jobs' Snakemake benchmark files.

Every heavy rule writes ``results/benchmarks/{stage}/...tsv`` (or ``{stage}.tsv``), one row per run
of its job: wall seconds ``s``, ``cpu_time`` (user + system seconds of the job's processes, as
Snakemake samples them: a lower bound), ``max_rss`` (MiB) and more. A stage is the benchmark
file's first folder under the benchmarks directory, which is the rule's name (the pretrained
extraction files under ``extract_weights``). Light only: pandas, no torch.

Compute is the time a job spent inside its timed calls, as the job itself recorded it in its
outputs: training steps and validation/test passes of a fine-tune (metrics.json
``train_seconds`` + ``eval_seconds``), encoder passes and probe fits of an evaluation job
(``seconds_encode`` + ``seconds_probe``). Every other job (data preparation, weights, aggregates)
computes nothing by this measure; its wall time still counts. A stage's compute share is its
compute over its summed wall time: what is left is process start, imports, loading and I/O.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = [
    "stage",
    "jobs",
    "cpu_seconds",
    "cpu_share",
    "wall_seconds",
    "wall_per_job",
    "compute_seconds",
    "compute_share",
    "max_rss_mb",
]


def _finetune_compute(path: Path) -> float:
    metrics = json.loads(path.read_text())
    return float(metrics.get("train_seconds") or 0.0) + float(metrics.get("eval_seconds") or 0.0)


def _evaluation_compute(path: Path) -> float:
    from weightspace.probe.store import job_info

    info = job_info(path) or {}
    return float(info.get("seconds_encode") or 0.0) + float(info.get("seconds_probe") or 0.0)


# stage -> (its jobs' outputs under results/, the compute one of them records)
COMPUTE_SOURCES = {
    "finetune": ("finetune/*/seed*/metrics.json", _finetune_compute),
    "finetune_from": ("fusion/runs/**/metrics.json", _finetune_compute),
    "evaluate_model": ("probe/models/*.json", _evaluation_compute),
    "evaluate_group": ("probe/groups/*.json", _evaluation_compute),
}


def read_compute(results_dir: str | Path) -> dict[str, float]:
    """Per stage, the compute seconds its jobs recorded in their outputs (COMPUTE_SOURCES);
    unreadable files (a job being written) count nothing."""
    root = Path(results_dir)
    out = {}
    for stage, (pattern, read) in COMPUTE_SOURCES.items():
        total = 0.0
        for path in root.glob(pattern):
            try:
                total += read(path)
            except (OSError, ValueError, KeyError, TypeError):
                continue
        out[stage] = total
    return out


def read_benchmarks(benchmarks_dir: str | Path) -> pd.DataFrame:
    """One row per benchmark file: stage, job (path under the stage), wall and CPU seconds, peak
    RSS.

    A file with several rows (``repeat(...)``) counts their mean; values Snakemake could not
    collect (``NA``, a job faster than its first sample) count as 0 CPU seconds and no RSS.
    """
    root = Path(benchmarks_dir)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        try:
            frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue  # a benchmark being written, or not one of Snakemake's
        if frame.empty or "s" not in frame.columns:
            continue
        relative = path.relative_to(root)
        stage = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        rows.append(
            {
                "stage": stage,
                "job": str(relative.with_suffix("")),
                "wall_seconds": float(pd.to_numeric(frame["s"], errors="coerce").mean()),
                "cpu_seconds": _mean(frame, "cpu_time", missing=0.0),
                "max_rss_mb": float(pd.to_numeric(frame["max_rss"], errors="coerce").max())
                if "max_rss" in frame
                else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "job", "wall_seconds", "cpu_seconds", "max_rss_mb"])


def _mean(frame: pd.DataFrame, column: str, missing: float) -> float:
    if column not in frame.columns:
        return missing
    return float(pd.to_numeric(frame[column], errors="coerce").fillna(missing).mean())


def by_stage(jobs: pd.DataFrame, compute: dict[str, float] | None = None) -> pd.DataFrame:
    """Per stage: jobs, summed CPU and wall seconds, the stage's share of all jobs' CPU (%), mean
    wall seconds per job, compute seconds and their share of the wall time (%), peak RSS; the
    heaviest stage first, and a last row ``total``."""
    compute = compute or {}
    if jobs.empty:
        return pd.DataFrame(columns=COLUMNS)
    table = jobs.groupby("stage").agg(
        jobs=("job", "size"),
        cpu_seconds=("cpu_seconds", "sum"),
        wall_seconds=("wall_seconds", "sum"),
        max_rss_mb=("max_rss_mb", "max"),
    )
    table = table.reset_index()
    total_cpu = table["cpu_seconds"].sum()
    table["cpu_share"] = 100 * table["cpu_seconds"] / total_cpu if total_cpu > 0 else 0.0
    table["wall_per_job"] = table["wall_seconds"] / table["jobs"]
    table["compute_seconds"] = [float(compute.get(stage, 0.0)) for stage in table["stage"]]
    table = table.sort_values(["cpu_seconds", "wall_seconds"], ascending=False, kind="stable")
    total = {
        "stage": "total",
        "jobs": int(table["jobs"].sum()),
        "cpu_seconds": total_cpu,
        "cpu_share": 100.0 if total_cpu > 0 else 0.0,
        "wall_seconds": table["wall_seconds"].sum(),
        "wall_per_job": table["wall_seconds"].sum() / max(int(table["jobs"].sum()), 1),
        "compute_seconds": table["compute_seconds"].sum(),
        "max_rss_mb": table["max_rss_mb"].max(),
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    wall = table["wall_seconds"].where(table["wall_seconds"] > 0)
    table["compute_share"] = (100 * table["compute_seconds"] / wall).fillna(0.0)
    return table[COLUMNS].round(
        {
            "cpu_seconds": 1,
            "cpu_share": 1,
            "wall_seconds": 1,
            "wall_per_job": 2,
            "compute_seconds": 1,
            "compute_share": 1,
            "max_rss_mb": 0,
        }
    )


def stage_times(benchmarks_dir: str | Path, results_dir: str | Path | None = None) -> pd.DataFrame:
    """The table of CPU, wall and compute time by stage of the benchmark files under
    ``benchmarks_dir`` and the jobs' outputs under ``results_dir`` (default: the benchmarks folder's
    parent, as the workflow lays it out)."""
    results_dir = Path(benchmarks_dir).parent if results_dir is None else results_dir
    return by_stage(read_benchmarks(benchmarks_dir), read_compute(results_dir))


def write(
    benchmarks_dir: str | Path, csv_path: str | Path, html_path: str | Path | None = None
) -> pd.DataFrame:
    """Write the stage table as CSV (and as an HTML page for the report); returns it."""
    from weightspace.atomic import write_csv

    table = stage_times(benchmarks_dir)
    write_csv(csv_path, table)
    if html_path is not None:
        from weightspace.report import html

        html.write_table(
            html_path, table, "Where the time goes: CPU, wall and compute time by stage", CAPTION
        )
    return table


CAPTION = (
    "CPU seconds (user + system of each job's processes, as Snakemake's benchmarks sample them) "
    "and wall seconds summed over each stage's jobs, the stage's share of all jobs' CPU, and its "
    "largest resident memory. Wall seconds add up jobs that ran side by side; Snakemake's own "
    "process is not a job and not counted. The sampling misses much of a short job's CPU: a fusion "
    "fine-tune of the default shows ~15 CPU-s in ~37 s of wall time, yet run alone it kept its "
    "core busy throughout (26 s wall, 26 CPU-s); for one-thread jobs, wall (summed) is the better "
    "measure of the core time a stage held. Compute: the time the jobs spent in training steps, "
    "validation/test passes, encoder passes and probe fits, as they recorded it; its share of the "
    "wall time is what the work took, the rest is start-up, loading and I/O."
)


def markdown(table: pd.DataFrame | str | Path, top: int | None = None) -> str:
    """The stage table as a Markdown section for summary.md: a heading, a sentence naming the
    heaviest stage, and the table. ``table`` is a by_stage() frame, or the path of stage_times.csv;
    ``top`` keeps that many stages (the rest summed as 'other'; the total row always last).

    Long because it writes the section top to bottom: heading, the 'other' row, the sentence and
    the table rows, each a few lines that read in order."""
    if not isinstance(table, pd.DataFrame):
        table = pd.read_csv(table)
    stages, total = table[table["stage"] != "total"], table[table["stage"] == "total"]
    lines = ["## Where the time goes", ""]
    if stages.empty:
        return "\n".join(
            lines + ["No benchmark files yet: the jobs' times appear after a run.", ""]
        )
    if top is not None and len(stages) > top:
        rest = stages.iloc[top:]
        other = {
            "stage": f"other ({len(rest)} stages)",
            "jobs": rest["jobs"].sum(),
            "cpu_seconds": rest["cpu_seconds"].sum(),
            "cpu_share": rest["cpu_share"].sum(),
            "wall_seconds": rest["wall_seconds"].sum(),
            "wall_per_job": rest["wall_seconds"].sum() / max(rest["jobs"].sum(), 1),
            "compute_seconds": rest["compute_seconds"].sum(),
            "compute_share": 100
            * rest["compute_seconds"].sum()
            / max(rest["wall_seconds"].sum(), 1e-9),
            "max_rss_mb": rest["max_rss_mb"].max(),
        }
        stages = pd.concat([stages.iloc[:top], pd.DataFrame([other])], ignore_index=True)
    heaviest = stages.iloc[0]
    cpu_total = (
        float(total["cpu_seconds"].iloc[0])
        if not total.empty
        else float(stages["cpu_seconds"].sum())
    )
    share = ""
    if not total.empty and "compute_share" in total.columns:
        row = total.iloc[0]
        share = (
            " Compute (training, evaluation and encoder passes, probe fits) was "
            f"{_duration(row['compute_seconds'])}, {row['compute_share']:.0f} % of the jobs' "
            f"summed wall time ({_cpu_named()})."
        )
    lines += [
        f"The jobs used {_duration(cpu_total)} of CPU; the heaviest stage is "
        f"**{heaviest['stage']}** ({heaviest['cpu_share']:.0f} % of it, {int(heaviest['jobs'])} "
        f"jobs).{share}",
        "",
        "| stage | jobs | CPU | CPU share | wall (summed) | wall per job | compute | compute share "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in pd.concat([stages, total], ignore_index=True).itertuples(index=False):
        name = f"**{row.stage}**" if row.stage == "total" else row.stage
        rss = "" if pd.isna(row.max_rss_mb) else f"{row.max_rss_mb:.0f} MiB"
        compute = row.compute_seconds if "compute_seconds" in table.columns else 0.0
        share = row.compute_share if "compute_share" in table.columns else 0.0
        lines.append(
            f"| {name} | {int(row.jobs)} | {_duration(row.cpu_seconds)} | {row.cpu_share:.1f} % | "
            f"{_duration(row.wall_seconds)} | {row.wall_per_job:.1f} s | {_duration(compute)} | "
            f"{share:.0f} % | {rss} |"
        )
    lines += ["", CAPTION, ""]
    return "\n".join(lines)


def _cpu_named() -> str:
    """The machine the summary is written on, as a timing should name it (the jobs ran there, or on
    a cluster)."""
    from weightspace import hardware

    return (
        f"{hardware.cpu_name()}, {'native' if hardware.cpu_has_native_bf16() else 'no native'} bf16"
    )


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
