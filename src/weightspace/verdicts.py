"""How a claim is judged: an effect, its 95% interval, a null's p-value, and one of three verdicts.

Every claim of the study (geometry, lines and regions, fusion) is a row with the same
columns (CLAIM_COLUMNS). The effect is signed so that the paper's claim predicts a
positive value ('direction' says so when the natural sign is the other one), and

  holds          the 95% interval excludes zero on the claim's side,
  does not hold  the 95% interval excludes zero on the other side,
  inconclusive   the interval contains zero, or it could not be computed (the note says why).

The p-value of a null (a permutation of the labels, where one exists) is reported next to
it; the verdict is read from the interval alone. Helpers here: percentile bootstrap
intervals, paired bootstraps over test examples, permutation p-values, and the interval
obtained by inverting a permutation test (for statistics, such as 1-NN accuracy, whose
chance level is only known through the null).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
LEVEL = 0.95
CAPTION = ("Effects are signed so that the claim predicts a positive value. Verdict: 'holds' when the 95% interval "
           "excludes 0 on the positive side, 'does not hold' when it excludes 0 on the negative side, otherwise "
           "'inconclusive' (also when no interval can be computed; the note says why).")
CLAIM_COLUMNS = ["claim_id", "claim", "effect", "ci_low", "ci_high", "n", "unit", "p_value", "verdict", "paper",
                 "value", "reference", "statistic", "interval", "null", "note"]


def verdict(low: float, high: float, direction: str = "greater") -> str:
    """holds / does not hold / inconclusive from the interval [low, high] of an effect.

    direction 'greater': the claim predicts a positive effect; 'less': a negative one.
    """
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', not {direction!r}")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if direction == "less":
        low, high = -high, -low
    if low > 0:
        return HOLDS
    if high < 0:
        return FAILS
    return INCONCLUSIVE


def interval(samples, level: float = LEVEL, min_samples: int = 10) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates dropped; NaN when too few remain)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) < min_samples:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    return float(np.quantile(s, tail)), float(np.quantile(s, 1.0 - tail))


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Replicates of ``statistic(indices)`` over ``n`` units resampled with replacement."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, size=n)) for _ in range(int(n_boot))], dtype=float)


def paired_bootstrap_mean(differences, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences (one per unit), and its percentile bootstrap interval."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(int(n_boot), len(d)))].mean(axis=1) if n_boot else np.array([])
    low, high = interval(means)
    return float(d.mean()), low, high


def permutation_p(observed: float, null, direction: str = "greater") -> float:
    """One-sided permutation p-value, (1 + #null at least as extreme) / (1 + #null)."""
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) == 0:
        return float("nan")
    extreme = null >= observed - 1e-12 if direction == "greater" else null <= observed + 1e-12
    return float((1 + extreme.sum()) / (1 + len(null)))


def inverted_interval(observed: float, null, level: float = LEVEL) -> tuple[float, float, float]:
    """Effect = observed - mean(null), with the interval [observed - q_hi(null), observed - q_lo(null)].

    Inverting the permutation test under a shift model: the interval excludes zero on the
    positive side exactly when the observed value is above the null's upper quantile.
    """
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) < 10:
        return float("nan"), float("nan"), float("nan")
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(null, tail), np.quantile(null, 1.0 - tail)
    return float(observed - null.mean()), float(observed - hi), float(observed - lo)


def claim_row(claim_id: str, claim: str, effect: float, low: float, high: float, n, unit: str,
              direction: str = "greater", p_value: float = float("nan"), paper: str = "", **extra) -> dict:
    """One claims-table row; the verdict is computed here, from the interval, and nowhere else."""
    row = {"claim_id": claim_id, "claim": claim, "effect": effect, "ci_low": low, "ci_high": high,
           "n": n, "unit": unit, "p_value": p_value, "verdict": verdict(low, high, direction), "paper": paper}
    row.update(extra)
    if row["verdict"] == INCONCLUSIVE and not (np.isfinite(low) and np.isfinite(high)):
        row.setdefault("note", "")
        row["note"] = (row["note"] + "; " if row["note"] else "") + "no interval could be computed"
    return row


def not_computable(claim_id: str, claim: str, why: str, unit: str, paper: str = "", n=0, **extra) -> dict:
    """A claim this run cannot judge: 'inconclusive', with the reason in the note."""
    return {"claim_id": claim_id, "claim": claim, "effect": float("nan"), "ci_low": float("nan"),
            "ci_high": float("nan"), "n": n, "unit": unit, "p_value": float("nan"), "verdict": INCONCLUSIVE,
            "paper": paper, **extra, "note": why}
