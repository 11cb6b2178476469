"""`python -m weightspace claims` on a matrix and labels from elsewhere: similarities, and bad input
named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from weightspace import WeightspaceError
from weightspace.geometry import matrix_claims


def vectors(rng):
    """6 datasets in 3 tasks, 3 seeds, unit vectors: tight datasets."""
    ids, rows, X = [], [], []
    for d in range(6):
        centre = rng.normal(size=32)
        for s in range(3):
            ids.append(f"d{d}.seed{s}")
            rows.append({"model_id": ids[-1], "dataset": f"d{d}", "task": f"t{d // 2}"})
            v = centre + 0.1 * rng.normal(size=32)
            X.append(v / np.linalg.norm(v))
    return ids, pd.DataFrame(rows), np.array(X)


def test_a_similarity_matrix_gives_the_claims_of_its_distances(tmp_path):
    ids, labels, X = vectors(np.random.default_rng(0))
    S = X @ X.T
    pd.DataFrame(S, index=ids, columns=ids).to_csv(tmp_path / "similarity.csv")
    pd.DataFrame(1 - S, index=ids, columns=ids).to_csv(tmp_path / "distance.csv")
    labels.to_csv(tmp_path / "labels.csv", index=False)
    a = matrix_claims.run(
        tmp_path / "similarity.csv",
        tmp_path / "labels.csv",
        tmp_path / "a",
        similarity=True,
        bootstrap=50,
    )
    b = matrix_claims.run(
        tmp_path / "distance.csv", tmp_path / "labels.csv", tmp_path / "b", bootstrap=50
    )
    numeric = ["effect", "ci_low", "ci_high", "p_value", "p_floor"]
    np.testing.assert_allclose(
        a[numeric].to_numpy(float), b[numeric].to_numpy(float), atol=1e-9, equal_nan=True
    )
    assert a.set_index("claim_id").loc["nn1_dataset", "verdict"] == "holds"
    assert (tmp_path / "a" / "tsne.csv").exists() and (tmp_path / "a" / "claims.csv").exists()


def test_bad_matrices_and_labels_are_named(tmp_path):
    ids, labels, X = vectors(np.random.default_rng(1))
    D = pd.DataFrame(np.linalg.norm(X[:, None] - X[None], axis=2), index=ids, columns=ids)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    D.iloc[:, ::-1].to_csv(tmp_path / "order.csv")
    with pytest.raises(WeightspaceError, match="same models in the same order"):
        matrix_claims.read_matrix(tmp_path / "order.csv")
    broken = D.copy()
    broken.iloc[0, 1] = np.nan
    broken.to_csv(tmp_path / "nan.csv")
    with pytest.raises(
        WeightspaceError, match=r"cell \(d0.seed0, d0.seed1\) is not a finite number"
    ):
        matrix_claims.read_matrix(tmp_path / "nan.csv")
    skew = D.copy()
    skew.iloc[0, 1] += 1
    skew.to_csv(tmp_path / "skew.csv")
    with pytest.raises(WeightspaceError, match="not symmetric at"):
        matrix_claims.read_matrix(tmp_path / "skew.csv")
    (1 - D).to_csv(tmp_path / "similar.csv")
    with pytest.raises(WeightspaceError, match="--similarity"):
        matrix_claims.read_matrix(tmp_path / "similar.csv")
    labels.drop(columns="task").to_csv(tmp_path / "notask.csv", index=False)
    with pytest.raises(WeightspaceError, match="no column 'task'"):
        matrix_claims.read_labels(tmp_path / "notask.csv", ids)
    labels.iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(WeightspaceError, match="no row for model 'd0.seed0'"):
        matrix_claims.read_labels(tmp_path / "short.csv", ids)
    with pytest.raises(WeightspaceError, match="does not exist"):
        matrix_claims.read_matrix(tmp_path / "absent.csv")
