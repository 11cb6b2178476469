"""results/summary.md: the study's setup and its answers to the paper's questions, on one page.

Every number on the page is read from the CSV or JSON it cites, so the page and the
tables cannot disagree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .atomic import write_text

PAPER = "Gueta et al. 2023, *Knowledge is a Region in Weight Space for Fine-tuned Language Models*"


def _fmt(value) -> str:
    """Numbers to 4 significant digits, also when a CSV column of mixed values read them as text."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(none in this run)_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [_fmt(row[c]).replace("|", "\\|").replace("\n", " ") for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def setup_section(config: dict, metas: list[dict], base_description: str) -> str:
    rows = []
    for meta in metas:
        counts = meta.get("counts", {})
        rows.append({"dataset": meta["name"], "task": meta.get("task"), "labels": meta.get("num_labels"),
                     "train": counts.get("train"), "validation": counts.get("validation"), "test": counts.get("test")})
    frame = pd.DataFrame(rows).sort_values(["task", "dataset"]) if rows else pd.DataFrame()
    ft = config.get("finetune", {})
    return (
        "## Setup\n\n"
        f"- Base model: {base_description}\n"
        f"- Seeds: {', '.join(str(s) for s in config['seeds'])}\n"
        f"- Fine-tuning: batch {ft.get('batch_size')}, learning rate {ft.get('learning_rate')}, "
        f"up to {ft.get('epochs')} epochs / {ft.get('max_steps')} steps\n"
        f"- Datasets by task: {len(rows)} datasets in {frame['task'].nunique() if rows else 0} tasks\n\n"
        + markdown_table(frame)
    )


def finetune_section(metrics: list[dict]) -> str:
    frame = pd.DataFrame([{"dataset": m["dataset"], "seed": m["seed"], "val_acc": m["validation"]["accuracy"],
                           "test_acc": m["test"]["accuracy"], "test_loss": m["test"]["loss"]} for m in metrics])
    if frame.empty:
        return ""
    per = frame.groupby("dataset").agg(seeds=("seed", "count"), test_accuracy_mean=("test_acc", "mean"),
                                       test_accuracy_std=("test_acc", "std"), test_loss_mean=("test_loss", "mean"))
    return "## Fine-tuned models\n\n" + markdown_table(per.reset_index())


def claims_section(title: str, claims: pd.DataFrame, paper_column: str | None, figures: list[tuple[str, str]],
                   root: Path) -> str:
    text = f"## {title}\n\n"
    if not claims.empty:
        cols = ["claim", "value", "verdict"]
        if paper_column and paper_column in claims.columns:
            cols.insert(1, paper_column)
        if "reference" in claims.columns:
            cols.insert(cols.index("value") + 1, "reference")
        if "statistic" in claims.columns:  # what the value measures
            cols.insert(cols.index("verdict"), "statistic")
        text += markdown_table(claims[[c for c in cols if c in claims.columns]])
    for caption, path in figures:
        if Path(path).exists():
            text += f"\n![{caption}]({os.path.relpath(path, root)})\n"
    return text + "\n"


def write(config: dict, out_path: str | Path, base_description: str, meta_files: list, metrics_files: list,
          geometry_claims: str | None = None, interpolation_claims: str | None = None,
          fusion_overview: str | None = None, figures: dict | None = None) -> str:
    root = Path(out_path).parent
    figures = figures or {}
    metas = [json.loads(Path(p).read_text()) for p in meta_files]
    metrics = [json.loads(Path(p).read_text()) for p in metrics_files]
    page = f"# weightspace summary\n\nWhat this run found, claim by claim, next to {PAPER}.\n\n"
    page += setup_section(config, metas, base_description) + "\n"
    page += finetune_section(metrics) + "\n"
    if geometry_claims:
        claims = pd.read_csv(geometry_claims)
        if "primary" in claims.columns:
            claims = claims[claims["primary"].astype(bool)]
        page += claims_section("Weight geometry: clusters and the region", claims, None,
                               [("t-SNE of the fine-tuned weights", figures.get("tsne", "")),
                                ("Pairwise distances", figures.get("heatmap", ""))], root)
    if interpolation_claims:
        claims = pd.read_csv(interpolation_claims)
        page += claims_section("Lines, the edge of the region, its centre, and fusion", claims, "paper",
                               [("Interpolation lines", figures.get("interpolation", "")),
                                ("Fusion gains", figures.get("fusion", ""))], root)
    if fusion_overview:
        page += "### Fusion overview\n\n" + markdown_table(pd.read_csv(fusion_overview)) + "\n"
    if figures.get("probe"):
        page += f"## Linear-probe loss\n\n![Probe loss, model × dataset]({os.path.relpath(figures['probe'], root)})\n"
    write_text(out_path, page)
    return page


def study_tables(meta_files: list, metrics_files: list, config: dict, datasets_path, finetune_path, config_path):
    """The datasets table, the fine-tuning metrics table and the run's config, for the report."""
    import yaml

    from .atomic import write_csv

    rows = []
    for path in meta_files:
        meta = json.loads(Path(path).read_text())
        counts = meta.get("counts", {})
        rows.append({"dataset": meta["name"], "task": meta.get("task"), "num_labels": meta.get("num_labels"),
                     "labels": ", ".join(map(str, meta.get("label_names", []))),
                     "train": counts.get("train"), "validation": counts.get("validation"), "test": counts.get("test"),
                     "source": json.dumps(meta.get("source"))[:200]})
    write_csv(datasets_path, pd.DataFrame(rows))
    rows = []
    for path in metrics_files:
        m = json.loads(Path(path).read_text())
        rows.append({"model_id": m["model_id"], "dataset": m["dataset"], "task": m.get("task"), "seed": m["seed"],
                     "steps": m["steps"], "validation_accuracy": m["validation"]["accuracy"],
                     "validation_loss": m["validation"]["loss"], "test_accuracy": m["test"]["accuracy"],
                     "test_loss": m["test"]["loss"], "train_seconds": m["train_seconds"],
                     "examples_per_second": m["examples_per_second"]})
    write_csv(finetune_path, pd.DataFrame(rows))
    write_text(config_path, yaml.safe_dump(config, sort_keys=False))
