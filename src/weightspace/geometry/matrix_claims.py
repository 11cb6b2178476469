"""Claims on any matrix: the workflow's clustering claims and t-SNE for a distance (or similarity)
matrix a researcher already has, from weights elsewhere or from a paper.

    python -m weightspace claims --matrix M.csv --labels L.csv [--similarity] [--out DIR]

M.csv: a square matrix, model ids as the first column and as the header, in the same order. L.csv:
one row per model with columns model_id, dataset, task, and optionally kind (finetuned, the default,
or pretrained: the reference of the task-vector descriptions). Writes DIR/claims.csv (the columns of
results/geometry/claims.csv), DIR/tsne.csv and DIR/tsne.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from weightspace import WeightspaceError


def read_matrix(path: str | Path, similarity: bool = False) -> pd.DataFrame:
    """The square distance matrix of a CSV; a similarity s becomes the distance
    (s_ii + s_jj) / 2 - s_ij (1 - s for cosine similarities)."""
    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"matrix file {path} does not exist")
    try:
        frame = pd.read_csv(path, index_col=0)
    except (ValueError, pd.errors.ParserError) as err:
        raise WeightspaceError(f"matrix file {path} is not a CSV table: {err}") from None
    frame.index, frame.columns = frame.index.astype(str), frame.columns.astype(str)
    if frame.shape[0] != frame.shape[1] or list(frame.index) != list(frame.columns):
        raise WeightspaceError(
            f"matrix file {path}: the row ids (first column) and the column ids (header) must "
            f"be the same models in the same order ({frame.shape[0]} rows, {frame.shape[1]} "
            "columns)"
        )
    if frame.index.duplicated().any():
        raise WeightspaceError(
            f"matrix file {path}: model id {frame.index[frame.index.duplicated()][0]!r} appears "
            "twice"
        )
    try:
        values = frame.to_numpy(dtype=float)
    except ValueError:
        raise WeightspaceError(f"matrix file {path}: every cell must be a number") from None
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise WeightspaceError(
            f"matrix file {path}: the cell ({frame.index[row]}, {frame.columns[col]}) is not a "
            "finite number"
        )
    if not np.allclose(values, values.T, rtol=1e-6, atol=1e-9):
        row, col = np.argwhere(~np.isclose(values, values.T, rtol=1e-6, atol=1e-9))[0]
        raise WeightspaceError(
            f"matrix file {path}: not symmetric at ({frame.index[row]}, {frame.columns[col]})"
        )
    if similarity:
        diagonal = np.diag(values)
        values = (diagonal[:, None] + diagonal[None, :]) / 2 - values
    elif np.abs(np.diag(values)).max() > 1e-9 or (values < -1e-12).any():
        raise WeightspaceError(
            f"matrix file {path}: a distance matrix has zeros on its diagonal and no negative "
            "cell; pass --similarity for a similarity matrix"
        )
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)


def read_labels(path: str | Path, model_ids: list[str]) -> pd.DataFrame:
    """The model table: model_id, kind, dataset, task, seed for every model of the matrix."""
    path = Path(path)
    if not path.exists():
        raise WeightspaceError(f"labels file {path} does not exist")
    table = pd.read_csv(path, dtype={"model_id": str, "dataset": str, "task": str})
    missing = [c for c in ("model_id", "dataset", "task") if c not in table.columns]
    if missing:
        raise WeightspaceError(
            f"labels file {path} has no column {missing[0]!r} (needs model_id, dataset, task)"
        )
    if "kind" not in table.columns:
        table["kind"] = "finetuned"
    bad = sorted(set(table["kind"]) - {"finetuned", "pretrained"})
    if bad:
        raise WeightspaceError(
            f"labels file {path}: column 'kind' has {bad[0]!r}; use finetuned or pretrained"
        )
    unlabelled = [m for m in model_ids if m not in set(table["model_id"])]
    if unlabelled:
        raise WeightspaceError(
            f"labels file {path} has no row for model {unlabelled[0]!r} of the matrix"
        )
    ft = table[table["kind"] == "finetuned"]
    empty = ft[ft["dataset"].isna() | ft["task"].isna()]
    if len(empty):
        raise WeightspaceError(
            f"labels file {path}: model {empty['model_id'].iloc[0]!r} has no dataset or task"
        )
    table["seed"] = table["seed"] if "seed" in table.columns else None
    return table[table["model_id"].isin(model_ids)][["model_id", "kind", "dataset", "task", "seed"]]


def long_frame(D: pd.DataFrame, metric: str, space: str) -> pd.DataFrame:
    """The long distance table the workflow's distances rule writes, for one metric and space."""
    ids = list(D.index)
    n = len(ids)
    return pd.DataFrame(
        {
            "model_a": np.repeat(ids, n),
            "model_b": np.tile(ids, n),
            "metric": metric,
            "space": space,
            "group": "all",
            "distance": D.to_numpy(dtype=float).ravel(),
        }
    )


def run(
    matrix: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    similarity: bool = False,
    metric: str = "euclidean",
    space: str = "raw",
    bootstrap: int = 1000,
    permutations: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Claims, t-SNE coordinates and figure of a matrix, as the workflow's cluster_stats and
    projection rules make them from its primary matrix."""
    from weightspace.atomic import write_csv
    from weightspace.geometry import clusters, projection
    from weightspace.report import geometry_figures

    D = read_matrix(matrix, similarity)
    table = read_labels(labels, list(D.index))
    rows = table.to_dict("records")
    primary = {"metric": metric, "space": space}
    found = clusters.claims(
        long_frame(D, metric, space),
        rows,
        primary,
        bootstrap,
        seed,
        n_perm=permutations if permutations is not None else bootstrap,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "claims.csv", found)
    t, p = projection.projections(D, rows, {"seed": seed, "primary": primary})
    write_csv(out_dir / "tsne.csv", t)
    geometry_figures.projection_figure(t, p, out_dir / "tsne.png")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weightspace claims", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--matrix", required=True, help="square CSV: model ids as first column and header"
    )
    parser.add_argument("--labels", required=True, help="CSV with model_id, dataset, task [, kind]")
    parser.add_argument(
        "--similarity",
        action="store_true",
        help="the matrix holds similarities (cosine, Gram), not distances",
    )
    parser.add_argument("--out", default="claims", help="output folder (default: ./claims)")
    parser.add_argument(
        "--metric", default="euclidean", help="what the matrix measures, for the table"
    )
    parser.add_argument(
        "--space", default="raw", help="which weights it measured (raw, task_vector)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000)"
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=None,
        help="Monte Carlo relabelings where the exact ones are too many (default: --bootstrap)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    found = run(
        args.matrix,
        args.labels,
        args.out,
        args.similarity,
        args.metric,
        args.space,
        args.bootstrap,
        args.permutations,
        args.seed,
    )
    headline = found[found["headline"].astype(bool)]
    for row in headline.itertuples():
        print(
            f"{row.family:17s} {row.claim_id:26s} {row.effect:+.4g} [{row.ci_low:.4g}, "
            f"{row.ci_high:.4g}] p {row.p_value:.3g} (floor {row.p_floor:.3g}, Holm "
            f"{row.threshold:.3g}): {row.verdict}"
        )
    print(f"wrote {Path(args.out) / 'claims.csv'}, tsne.csv, tsne.png")
    return 0
