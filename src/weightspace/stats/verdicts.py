"""How a claim is judged: headline claims get one of four verdicts from one inference rule; every
other row is a description (its effect and interval, no verdict).

Claims come in families (dataset geometry, task geometry, lines and regions, fusion). Each family
names a few headline claims, the paper's own on the primary metric and space; only they are judged.
A headline claim's effect is signed so that the claim predicts a positive value, and

  holds          its interval excludes 0 on the positive side AND its one-sided test, run at the
                 unit where its labels or treatments were assigned, gives p at or below its Holm
                 threshold within the family (alpha = 0.05 one-sided per family);
  does not hold  the same in the opposite direction;
  not testable   the smallest p the design can reach exceeds alpha / (the family's headline count):
                 it could never pass, however strong the data (the note says why and what the design
                 needs);
  inconclusive   otherwise (also when nothing could be computed; the note says why).

Intervals resample the nested units in order (tasks -> datasets -> models; targets -> seeds;
groups -> lines -> test examples). The tests and their floors are in inference.py;
tests/test_calibration.py measures the rule's false-"holds" rate under nulls with the design's own
random effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable"
DESCRIPTION = "description"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)
ALPHA = 0.05  # one-sided, per family
LEVEL = 0.95
CAPTION = (
    "Headline claims (the paper's, on the primary measure) get a verdict: 'holds' when the 95% "
    "interval excludes 0 on the positive side and the one-sided test at the unit of replication "
    "gives p at or below its Holm threshold within the family (alpha 0.05); 'does not hold' the "
    "same on the negative side; 'not testable' when the design's smallest reachable p exceeds "
    "alpha / #headline claims; otherwise 'inconclusive'. Other rows are descriptions: effect and "
    "interval, no verdict."
)
CLAIM_COLUMNS = [
    "family",
    "headline",
    "claim_id",
    "claim",
    "effect",
    "ci_low",
    "ci_high",
    "n",
    "unit",
    "p_value",
    "p_opposite",
    "p_floor",
    "threshold",
    "verdict",
    "paper",
    "value",
    "reference",
    "statistic",
    "interval",
    "null",
    "design",
    "note",
]


def verdict(low: float, high: float, direction: str = "greater") -> str:
    """holds / does not hold / inconclusive from the interval [low, high] of an effect alone: the
    rule before issue 23 (the calibration tests show it failing), and what a single group's interval
    says in a note.

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
    """The percentile interval of bootstrap replicates (NaN replicates dropped; NaN when too few
    remain)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) < min_samples:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    return float(np.quantile(s, tail)), float(np.quantile(s, 1.0 - tail))


def paired_bootstrap_mean(differences, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences (one per unit), and its percentile bootstrap interval (the
    calibration tests' old fusion rule: runs as units)."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = (
        d[rng.integers(0, len(d), size=(int(n_boot), len(d)))].mean(axis=1)
        if n_boot
        else np.array([])
    )
    low, high = interval(means)
    return float(d.mean()), low, high


def inverted_interval(observed: float, null, level: float = LEVEL) -> tuple[float, float, float]:
    """Effect = observed - mean(null), with the interval
    [observed - q_hi(null), observed - q_lo(null)]: the old rule's interval for label recovery, kept
    for the calibration tests (a band of the null, not of the effect).

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


def claim_row(
    claim_id: str,
    claim: str,
    effect: float,
    low: float,
    high: float,
    n,
    unit: str,
    direction: str = "greater",
    p_value: float = float("nan"),
    paper: str = "",
    *,
    family: str = "",
    headline: bool = False,
    p_opposite: float = float("nan"),
    p_floor: float = float("nan"),
    design: str = "",
    **extra,
) -> dict:
    """One claims-table row. Its verdict is set by ``decide`` over the whole family (Holm needs
    every headline p); until then a headline row reads 'inconclusive'. ``direction`` 'less' flips
    effect, interval and p's so that the claim predicts a positive value."""
    if direction == "less":
        effect, low, high = -effect, -high, -low
        p_value, p_opposite = p_opposite, p_value
    row = {
        "family": family,
        "headline": bool(headline),
        "claim_id": claim_id,
        "claim": claim,
        "effect": effect,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "unit": unit,
        "p_value": p_value,
        "p_opposite": p_opposite,
        "p_floor": p_floor,
        "threshold": float("nan"),
        "verdict": INCONCLUSIVE if headline else DESCRIPTION,
        "paper": paper,
        "design": design,
    }
    row.update(extra)
    if not (np.isfinite(low) and np.isfinite(high)):
        row.setdefault("note", "")
        row["note"] = (row["note"] + "; " if row["note"] else "") + "no interval could be computed"
    return row


def not_computable(
    claim_id: str,
    claim: str,
    why: str,
    unit: str,
    paper: str = "",
    n=0,
    *,
    family: str = "",
    headline: bool = False,
    p_floor: float = float("nan"),
    design: str = "",
    **extra,
) -> dict:
    """A claim this run cannot compute: 'inconclusive' (or 'not testable' where the design's floor
    says so), with the reason in the note."""
    return {
        "family": family,
        "headline": bool(headline),
        "claim_id": claim_id,
        "claim": claim,
        "effect": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "n": n,
        "unit": unit,
        "p_value": float("nan"),
        "p_opposite": float("nan"),
        "p_floor": p_floor,
        "threshold": float("nan"),
        "verdict": INCONCLUSIVE if headline else DESCRIPTION,
        "paper": paper,
        "design": design,
        **extra,
        "note": why,
    }


def decide(frame: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """The verdicts of a claims table: Holm within each family over its headline rows; descriptions
    get none."""
    from weightspace.stats import inference

    out = frame.copy()
    if out.empty:
        return out
    if "note" not in out.columns:
        out["note"] = ""
    out["headline"] = out["headline"].fillna(False).astype(bool)
    out.loc[~out["headline"], "verdict"] = DESCRIPTION
    out.loc[~out["headline"], "threshold"] = np.nan
    for _, part in out[out["headline"]].groupby("family", sort=False):
        m = len(part)
        bonferroni = alpha / m
        up, thresholds = inference.holm(part["p_value"].to_numpy(dtype=float), alpha)
        down, _ = inference.holm(part["p_opposite"].to_numpy(dtype=float), alpha)
        for i, index in enumerate(part.index):
            row = out.loc[index]
            low, high, floor = float(row["ci_low"]), float(row["ci_high"]), float(row["p_floor"])
            out.at[index, "threshold"] = thresholds[i]
            if np.isfinite(floor) and floor > bonferroni:
                verdict_ = NOT_TESTABLE
                why = (
                    f"{row['design']}: p >= {floor:.3g} > {bonferroni:.3g} (alpha {alpha} / {m} "
                    "headline claims), so no data could make it hold"
                )
                note = row.get("note")
                out.at[index, "note"] = f"{why}; {note}" if isinstance(note, str) and note else why
            elif up[i] and np.isfinite(low) and low > 0:
                verdict_ = HOLDS
            elif down[i] and np.isfinite(high) and high < 0:
                verdict_ = FAILS
            else:
                verdict_ = INCONCLUSIVE
            out.at[index, "verdict"] = verdict_
    return out
