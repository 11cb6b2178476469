"""results/summary.md: the study's setup and its answers to the paper's questions, on one page.

Every number on the page is read from the CSV or JSON it cites, so the page and the
tables cannot disagree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace.atomic import write_text

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
        rows.append(
            {
                "dataset": meta["name"],
                "task": meta.get("task"),
                "labels": meta.get("num_labels"),
                "train": counts.get("train"),
                "validation": counts.get("validation"),
                "test": counts.get("test"),
            }
        )
    frame = pd.DataFrame(rows).sort_values(["task", "dataset"]) if rows else pd.DataFrame()
    ft = config.get("finetune", {})
    return (
        "## Setup\n\n"
        f"- Base model: {base_description}\n"
        f"- Seeds: {', '.join(str(s) for s in config['seeds'])}\n"
        f"- Fine-tuning: batch {ft.get('batch_size')}, learning rate {ft.get('learning_rate')}, "
        f"up to {ft.get('epochs')} epochs / {ft.get('max_steps')} steps\n"
        f"- Datasets by task: {len(rows)} datasets in "
        f"{frame['task'].nunique() if rows else 0} tasks\n\n" + markdown_table(frame)
    )


def finetune_section(metrics: list[dict]) -> str:
    frame = pd.DataFrame(
        [
            {
                "dataset": m["dataset"],
                "seed": m["seed"],
                "val_acc": m["validation"]["accuracy"],
                "test_acc": m["test"]["accuracy"],
                "test_loss": m["test"]["loss"],
            }
            for m in metrics
        ]
    )
    if frame.empty:
        return ""
    per = frame.groupby("dataset").agg(
        seeds=("seed", "count"),
        test_accuracy_mean=("test_acc", "mean"),
        test_accuracy_std=("test_acc", "std"),
        test_loss_mean=("test_loss", "mean"),
    )
    return "## Fine-tuned models\n\n" + markdown_table(per.reset_index())


VERDICT_RULE = (
    "Each family of claims (dataset geometry, task geometry, lines and regions, fusion) names a "
    "few **headline** claims, the paper's own on the primary measure; only they get a verdict, and "
    "every other row is a **description** (effect, interval, p; no verdict). A headline claim's "
    "**effect** is signed so that the claim predicts a positive value, and its **p** comes from a "
    "one-sided test at the unit where its labels or treatments were assigned (models reassigned to "
    "datasets within tasks, datasets to tasks, signs of target means or group means flipped; exact "
    "where the reassignments are few). It **holds** when its 95% interval excludes 0 on the "
    "positive side and p is at or below its **Holm threshold** within the family (alpha 0.05), "
    "**does not hold** when the same is true in the opposite direction, is **not testable** when "
    "the design's smallest reachable p (**floor**) exceeds 0.05 / the family's headline count, and "
    'is **inconclusive** otherwise. The rule\'s false-"holds" rate per family is measured by '
    "simulation in the tests (tests/test_calibration.py)."
)


def _interval(low, high, digits: str = ".4g") -> str:
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        return ""
    if not (pd.notna(low) and pd.notna(high)):
        return "—"
    return f"[{low:{digits}}, {high:{digits}}]"


def _value_range(values: pd.Series) -> str:
    """'a–b' over the values, one value where they agree, '—' where there are none."""
    if values.empty:
        return "—"
    low, high = f"{values.min():.3g}", f"{values.max():.3g}"
    return low if low == high else f"{low}–{high}"


def _p(value) -> str:
    return "—" if pd.isna(value) else f"{float(value):.3g}"


def claims_view(claims: pd.DataFrame, headline: bool = True) -> pd.DataFrame:
    """The columns a reader needs on one screen: claim, effect, interval, n with its unit, p, and
    for headline claims the family, the smallest reachable p, the Holm threshold and the verdict."""
    if claims.empty:
        return claims
    view = pd.DataFrame(
        {
            "claim": claims["claim"],
            "effect": [("—" if pd.isna(v) else float(v)) for v in claims["effect"]],
            "95% interval": [
                _interval(lo, hi) for lo, hi in zip(claims["ci_low"], claims["ci_high"])
            ],
            "n": [
                f"{'' if pd.isna(n) else int(n)} {u if isinstance(u, str) else ''}".strip()
                for n, u in zip(claims["n"], claims["unit"])
            ],
            "p": [_p(v) for v in claims["p_value"]] if "p_value" in claims.columns else "—",
        }
    )
    if headline:
        view.insert(0, "family", claims["family"].fillna("").to_numpy())
        view["floor"] = [_p(v) for v in claims["p_floor"]]
        view["Holm threshold"] = [_p(v) for v in claims["threshold"]]
        view["verdict"] = claims["verdict"].to_numpy()
        view["paper"] = claims["paper"].to_numpy() if "paper" in claims.columns else ""
    if "metric" in claims.columns:  # geometry: say which measure a row uses
        view.insert(
            2 if headline else 1,
            "measure",
            [f"{m}, {s}" for m, s in zip(claims["metric"], claims["space"])],
        )
    return view


def notes(claims: pd.DataFrame) -> str:
    if claims.empty or "note" not in claims.columns:
        return ""
    lines = [
        f"- *{row.claim_id}*: {row.note}"
        for row in claims.itertuples()
        if isinstance(row.note, str) and row.note
    ]
    return ("Notes:\n\n" + "\n".join(lines) + "\n") if lines else ""


def claims_section(
    title: str,
    claims: pd.DataFrame,
    figures: list[tuple[str, str]],
    root: Path,
    intro: str = "",
    after_table: str = "",
) -> str:
    text = f"## {title}\n\n" + (intro + "\n\n" if intro else "")
    is_headline = (
        claims["headline"].fillna(False).astype(bool)
        if "headline" in claims.columns
        else pd.Series(True, index=claims.index)
    )
    if is_headline.any():
        text += "Headline claims:\n\n" + markdown_table(claims_view(claims[is_headline])) + "\n"
    if (~is_headline).any():
        text += (
            "\nDescriptions (effect, interval and p at the same unit; no verdict):\n\n"
            + markdown_table(claims_view(claims[~is_headline], headline=False))
            + "\n"
        )
    text += notes(claims) + (f"\n{after_table}" if after_table else "")
    for caption, path in figures:
        if path and Path(path).exists():
            text += f"\n![{caption}]({os.path.relpath(path, root)})\n"
    return text + "\n"


def projection_note(tsne_path) -> str:
    """What the t-SNE figure shows, in one number: how often a model's nearest neighbour in the
    plane is a model of its own dataset (the weights' own figure is the claim nn1_dataset)."""
    frame = pd.read_csv(tsne_path)
    if "nn1_dataset_plane" not in frame.columns or frame.empty:
        return ""
    value = float(frame["nn1_dataset_plane"].iloc[0])
    if not np.isfinite(value):
        return ""
    return (
        f"In the t-SNE plane ({len(frame)} fine-tuned models, perplexity "
        f"{frame['perplexity'].iloc[0]:.3g}), the nearest neighbour of {value:.0%} of the models "
        "is a model of the same dataset: the figure's own 1-NN accuracy, to read next to "
        "nn1_dataset above (the same figure in weight space).\n"
    )


# the figures of the first screen, in the paper's order (figure key -> caption)
FIRST_SCREEN_FIGURES = (
    ("tsne", "t-SNE of the fine-tuned weights"),
    ("interpolation", "Lines between models, with extrapolation beyond their ends"),
    ("probe", "Probe loss minus the pretrained model's, every model on every dataset"),
    ("fusion", "Fusion: the fused start against the pretrained start, per target"),
)

# stages a config can leave out: (what, whether this config has it, the key that turns it on)
STAGES = (
    (
        "lines and extrapolation",
        lambda c: c.get("interpolation", {}).get("enabled", True),
        "`interpolation.enabled: true`",
    ),
    (
        "planes",
        lambda c: (
            c.get("interpolation", {}).get("enabled", True)
            and c.get("interpolation", {}).get("planes", {}).get("enabled", True)
        ),
        "`interpolation.enabled: true` and `interpolation.planes.enabled: true`",
    ),
    (
        "regions (Dirichlet samples and centroids)",
        lambda c: c.get("region", {}).get("enabled", True),
        "`region.enabled: true`",
    ),
    (
        "the full probe matrix (every model on every dataset)",
        lambda c: c.get("probe", {}).get("scope", "all") == "all",
        "`probe.scope: all`",
    ),
    ("fusion", lambda c: c.get("fusion", {}).get("enabled", True), "`fusion.enabled: true`"),
)


def stages_off(config: dict) -> str:
    """A line per stage this config leaves out, with the key that turns it on; '' when none."""
    off = [(what, key) for what, is_on, key in STAGES if not is_on(config)]
    if not off:
        return ""
    return (
        "**Not in this study:** "
        + "; ".join(f"{what} (off: {key} turns it on)" for what, key in off)
        + ". A stage that is off draws no figure and makes no claim.\n\n"
    )


def first_screen(frames: list[pd.DataFrame], figures: dict, root: Path) -> str:
    """The paper's claims, one row each with the paper's figure or table, this run's effect,
    interval and verdict; then the headline figures of this run."""
    found = [f for f in frames if not f.empty]
    claims = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if not claims.empty and "headline" in claims.columns:
        claims = claims[claims["headline"].fillna(False).astype(bool)]
    if not claims.empty:  # family by family, in the order their tables came
        order = {family: i for i, family in enumerate(dict.fromkeys(claims["family"]))}
        claims = claims.sort_values("family", key=lambda f: f.map(order), kind="stable")
    text = "## The paper's claims in this run\n\n"
    if claims.empty:
        text += "No headline claim in this study.\n\n"
    else:
        view = claims_view(claims)
        text += (
            markdown_table(
                view[["family", "claim", "paper", "effect", "95% interval", "p", "verdict"]]
            )
            + "\nThe sections below give each claim's unit, floor, Holm threshold and notes.\n"
        )
    for key, caption in FIRST_SCREEN_FIGURES:
        path = figures.get(key)
        if path and Path(path).exists():
            text += f"\n![{caption}]({os.path.relpath(path, root)})\n"
    return text + "\n"


def verdict_counts(frames: list[pd.DataFrame]) -> str:
    """How many headline claims hold, do not hold, are inconclusive or not testable; descriptions
    are counted apart."""
    found = [f for f in frames if not f.empty]
    verdicts = pd.concat([f["verdict"] for f in found]) if found else pd.Series(dtype=str)
    counts = verdicts.value_counts()
    judged = len(verdicts) - counts.get("description", 0)
    return (
        f"{judged} headline claims: {counts.get('holds', 0)} hold, "
        f"{counts.get('does not hold', 0)} do not hold, {counts.get('inconclusive', 0)} "
        f"inconclusive, {counts.get('not testable', 0)} not testable; "
        f"{counts.get('description', 0)} descriptions."
    )


def probe_section(matrix_path) -> str:
    """Per dataset: the chosen L2, the label-prior loss, the pretrained model's loss and the
    dataset's own models'."""
    matrix = pd.read_csv(matrix_path)
    rows = []
    for target, part in matrix.groupby("target_dataset", sort=False):
        pre = part[part["model_kind"] == "pretrained"]["loss"]
        own = part[(part["model_kind"] == "finetuned") & (part["model_dataset"] == target)]["loss"]
        prior = part["chance_loss"].iloc[0] if "chance_loss" in part.columns else np.nan
        pre_loss = float(pre.iloc[0]) if len(pre) else np.nan
        l2 = part["l2"] if "l2" in part.columns else pd.Series(dtype=float)
        own_l2 = l2[(part["model_kind"] == "finetuned") & (part["model_dataset"] == target)]
        rows.append(
            {
                "dataset": target,
                "pretrained L2": float(l2[part["model_kind"] == "pretrained"].iloc[0])
                if len(pre)
                else np.nan,
                "own models' L2": _value_range(own_l2),
                "label-prior loss": prior,
                "pretrained loss": pre_loss,
                "pretrained below prior": "yes" if pre_loss < prior else "no",
                "own models' mean loss": float(own.mean()) if len(own) else np.nan,
                "own models below pretrained": f"{int((own < pre_loss).sum())} of {len(own)}",
            }
        )
    text = (
        "## Linear-probe loss\n\nTest cross-entropy (nats) of a linear head trained on each "
        "model's frozen features, its L2 strength chosen for that model and dataset by "
        "cross-validation on the model's own training features (nested: the test split never "
        "enters; no model is tuned on another's features). The head trains on the dataset's probe "
        "split: training examples that no fine-tune saw (where a dataset has none left, on its "
        "training split; meta.json says which). Next to it, the loss of predicting the training "
        "label frequencies (the label prior) and the pretrained model's loss.\n\n"
        + markdown_table(pd.DataFrame(rows))
    )
    return text + "\n"


def write(
    config: dict,
    out_path: str | Path,
    base_description: str,
    meta_files: list,
    metrics_files: list,
    geometry_claims: str | None = None,
    interpolation_claims: str | None = None,
    fusion_claims: str | None = None,
    fusion_overview: str | None = None,
    probe_matrix: str | None = None,
    figures: dict | None = None,
    html_path: str | Path | None = None,
    stage_times: str | Path | None = None,
    tsne_table: str | Path | None = None,
    start_outcomes: str | Path | None = None,
    start_targets: str | Path | None = None,
    merges: str | Path | None = None,
) -> str:
    # Long because it assembles summary.md in page order; each section is a function of its own,
    # and this one only reads the inputs and decides which sections appear.
    root = Path(out_path).parent
    figures = figures or {}
    metas = [json.loads(Path(p).read_text()) for p in meta_files]
    metrics = [json.loads(Path(p).read_text()) for p in metrics_files]
    geometry = pd.read_csv(geometry_claims) if geometry_claims else pd.DataFrame()
    if "primary" in geometry.columns:
        geometry = geometry[geometry["primary"].astype(bool)]
    traversal_on = any(config.get(k, {}).get("enabled", True) for k in ("interpolation", "region"))
    # a study without lines or regions has no such claims to count (their table only says 'not
    # computable')
    lines = (
        pd.read_csv(interpolation_claims)
        if interpolation_claims and traversal_on
        else pd.DataFrame()
    )
    fused = pd.read_csv(fusion_claims) if fusion_claims else pd.DataFrame()
    page = f"# weightspace summary\n\nWhat this run found, claim by claim, next to {PAPER}.\n\n"
    page += "**This run:** " + verdict_counts([geometry, lines, fused]) + "\n\n"
    page += stages_off(config)
    page += first_screen([geometry, lines, fused], figures, root)
    page += "**How a verdict is decided.** " + VERDICT_RULE + "\n\n"
    page += setup_section(config, metas, base_description) + "\n"
    page += finetune_section(metrics) + "\n"
    if not geometry.empty:
        page += claims_section(
            "Weight geometry: clusters by dataset and task",
            geometry,
            [("Pairwise distances", figures.get("heatmap", ""))],  # the t-SNE: first screen
            root,
            "Dataset claims: models reassigned to datasets within their task (the unit where a "
            "dataset label was assigned; a task structure alone cannot make them hold). Task "
            "claims: datasets reassigned to tasks. Intervals: tasks, then datasets, then models "
            "resampled.",
            after_table=projection_note(tsne_table) if tsne_table else "",
        )
    if probe_matrix:
        page += probe_section(probe_matrix)
    if interpolation_claims and not traversal_on:
        page += (
            "## Lines, the edge of the region, and its centre\n\nNot in this study: "
            "`interpolation.enabled` and `region.enabled` are false (set them to true in the "
            "config to add the lines, planes and regions).\n\n"
        )
    elif interpolation_claims:
        page += claims_section(
            "Lines, the edge of the region, and its centre",
            lines,
            [
                ("A plane through three models", figures.get("planes", "")),
                ("Inside the regions: samples and centroids", figures.get("region", "")),
            ],  # the lines' figure: first screen
            root,
            "Paired over the same test examples (per-example probe losses).",
        )
    if fusion_claims:
        page += claims_section(
            "Fusion: the fused start against the pretrained start",
            fused,
            [],  # its figure: first screen
            root,
            "Paired over targets × seeds; few-shot sizes are rows of their own; ties are not wins.",
        )
    if fusion_overview:
        page += (
            "### Fusion per training size: targets won, tied, lost\n\n"
            + markdown_table(pd.read_csv(fusion_overview))
            + "\n"
        )
    if merges:
        page += merges_section(merges)
    if start_outcomes:
        page += starts_section(start_outcomes, start_targets, figures.get("where_to_start"), root)
    if stage_times:
        from weightspace.report import stage_times as stage_table

        page += "\n" + stage_table.markdown(stage_times, top=8) + "\n"
    write_text(out_path, page)
    if html_path:
        from weightspace.report.html import write_markdown_page

        write_markdown_page(out_path, html_path, "weightspace summary")
    return page


def merges_section(merges_path) -> str:
    """Each PEFT merge against the plain mean of the same members (fusion.merges)."""
    frame = pd.read_csv(merges_path)
    view = pd.DataFrame(
        {
            "method": frame["method"],
            "scope": frame["scope"],
            "size": frame["size"],
            "targets": frame["targets"],
            "merged − mean (points)": frame["gain"].round(2),
            "95% interval": [
                _interval(a, b, ".2f") for a, b in zip(frame["ci_low"], frame["ci_high"])
            ],
            "p (merge better)": frame["p_merge_better"].map(_p),
            "p (mean better)": frame["p_mean_better"].map(_p),
            "targets won / lost": [
                f"{w} / {lost}" for w, lost in zip(frame["targets_won"], frame["targets_lost"])
            ],
        }
    )
    return (
        "## Merges against the mean of the same members\n\n"
        "Each fused base's members merged by PEFT (`fusion.merges`) and fine-tuned on the target "
        "like the mean, paired by target, size and seed; the unit is the target (interval over "
        "targets then seeds, sign flips over targets).\n\n" + markdown_table(view) + "\n"
    )


def starts_section(outcomes_path, targets_path, figure, root: Path) -> str:
    """Where to start: the ranking's outcomes next to the published figures, per target, figure."""
    from weightspace.report.start_figures import start_table_markdown

    targets = pd.read_csv(targets_path) if targets_path else pd.DataFrame()
    names = list(dict.fromkeys(targets["target"])) if not targets.empty else []
    text = "## Where to start: candidate starts ranked by their probe loss on the target\n\n"
    text += start_table_markdown(pd.read_csv(outcomes_path), names) + "\n"
    if not targets.empty:
        view = pd.DataFrame(
            {
                "target": targets["target"],
                "size": targets["size"],
                "top-ranked start": targets["chosen"],
                "its gain (points)": targets["gain"].round(1),
                "95% interval (seeds)": [
                    _interval(a, b, ".1f")
                    for a, b in zip(targets["gain_low"], targets["gain_high"])
                ],
                "best candidate": targets["best"].fillna("—"),
                "regret top 1": targets["regret_top1"].map(lambda v: f"{v:.1f}"),
                f"regret top {int(targets['top_k'].iloc[0])}": targets["regret_topk"].map(
                    lambda v: f"{v:.1f}"
                ),
                "Spearman ρ": [
                    f"{r:.2f} {_interval(a, b, '.2f')}"
                    for r, a, b in zip(
                        targets["spearman"], targets["spearman_low"], targets["spearman_high"]
                    )
                ],
                "candidates (fine-tuned)": [
                    f"{c} ({f})" for c, f in zip(targets["n_candidates"], targets["n_finetuned"])
                ],
            }
        )
        text += "Per target (regret: the best candidate's accuracy minus the top one's):\n\n"
        text += markdown_table(view) + "\n"
    if figure and Path(figure).exists():
        text += f"![Where to start]({os.path.relpath(figure, root)})\n\n"
    return text


def study_tables(
    meta_files: list, metrics_files: list, config: dict, datasets_path, finetune_path, config_path
):
    """The datasets table, the fine-tuning metrics table and the run's config, for the report."""
    import yaml

    from weightspace.atomic import write_csv

    rows = []
    for path in meta_files:
        meta = json.loads(Path(path).read_text())
        counts = meta.get("counts", {})
        rows.append(
            {
                "dataset": meta["name"],
                "task": meta.get("task"),
                "num_labels": meta.get("num_labels"),
                "labels": ", ".join(map(str, meta.get("label_names", []))),
                "train": counts.get("train"),
                "validation": counts.get("validation"),
                "test": counts.get("test"),
                "source": json.dumps(meta.get("source"))[:200],
            }
        )
    write_csv(datasets_path, pd.DataFrame(rows))
    rows = []
    for path in metrics_files:
        m = json.loads(Path(path).read_text())
        rows.append(
            {
                "model_id": m["model_id"],
                "dataset": m["dataset"],
                "task": m.get("task"),
                "seed": m["seed"],
                "steps": m["steps"],
                "validation_accuracy": m["validation"]["accuracy"],
                "validation_loss": m["validation"]["loss"],
                "test_accuracy": m["test"]["accuracy"],
                "test_loss": m["test"]["loss"],
                "train_seconds": m["train_seconds"],
                "examples_per_second": m["examples_per_second"],
            }
        )
    write_csv(finetune_path, pd.DataFrame(rows))
    write_text(config_path, yaml.safe_dump(config, sort_keys=False))
