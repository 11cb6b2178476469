"""Tests at the unit of replication: relabelings, sign flips, their p-values and the smallest p a
design can reach.

A claim's labels or treatments were assigned to a unit (a model to a dataset, a dataset to a task, a
fused start to a target, a line to a group); its null reassigns them at that unit and nowhere finer.
Where the distinct reassignments are few (up to MAX_EXACT) every one is enumerated and the p-value
is exact; otherwise a Monte Carlo sample of them is drawn. Either way the smallest reachable p (the
floor) is the share of reassignments that give the observed partition back, never less than a Monte
Carlo p's 1/(B+1): a design whose floor exceeds a claim's threshold can never pass it ("not
testable"), however strong the data.

Statistics are evaluated on a whole batch of reassignments at once (label arrays of shape (R, n),
signs of shape (R, k)): the calibration tests run hundreds of synthetic studies through the same
code.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np

MAX_EXACT = 20_000  # enumerate the reassignments exactly up to this many


def partitions_count(sizes) -> int:
    """Distinct ways to split sum(sizes) items into unlabelled blocks of these sizes (blocks of
    equal size are interchangeable): n! / (prod s! * prod over sizes of (#blocks of that size)!)."""
    sizes = [int(s) for s in sizes]
    count = _multinomial(sizes)
    for same in Counter(sizes).values():
        count //= math.factorial(same)
    return count


def _multiset_permutations(array: np.ndarray) -> np.ndarray:
    """Every distinct ordering of ``array`` (a multiset), shape (R, n)."""
    values = array.tolist()
    counts = Counter(values)
    keys = sorted(counts, key=str)
    n = len(values)
    out = []

    def fill(prefix, left):
        if len(prefix) == n:
            out.append(list(prefix))
            return
        for key in keys:
            if left[key]:
                left[key] -= 1
                prefix.append(key)
                fill(prefix, left)
                prefix.pop()
                left[key] += 1

    fill([], dict(counts))
    return np.array(out, dtype=array.dtype).reshape(len(out), n)


def _multinomial(counts) -> int:
    total = math.factorial(sum(counts))
    for c in counts:
        total //= math.factorial(c)
    return total


class Relabelings:
    """Reassignments of ``labels`` among the items of each block (``blocks``: the item's block, or
    None for one block): every distinct one where they are few, else ``n_mc`` random ones (the
    observed labelling first).

    ``labels``: the label array (n,) to reassign; ``.labels``: shape (R, n); ``.exact``; ``.floor``:
    the smallest p reachable (share of reassignments that keep the observed partition, at least
    1/(B+1) for Monte Carlo); ``.distinct``: the number of distinct partitions.
    """

    def __init__(
        self, labels, blocks=None, n_mc: int = 2000, seed: int = 0, max_exact: int = MAX_EXACT
    ):
        labels = np.asarray(labels)
        blocks = np.zeros(len(labels), dtype=int) if blocks is None else np.asarray(blocks)
        groups = [np.flatnonzero(blocks == b) for b in dict.fromkeys(blocks.tolist())]
        labelled = 1  # labelled reassignments (multiset permutations), and distinct partitions
        self.distinct = 1
        for where in groups:
            sizes = list(Counter(labels[where].tolist()).values())
            labelled *= _multinomial(sizes)
            self.distinct *= partitions_count(sizes)
        self.exact = labelled <= max_exact
        if self.exact:
            per_block = [_multiset_permutations(labels[where]) for where in groups]
            rows = []
            for combo in itertools.product(*[range(len(p)) for p in per_block]):
                row = labels.copy()
                for where, perms, i in zip(groups, per_block, combo):
                    row[where] = perms[i]
                rows.append(row)
            self.labels = np.array(rows)
            self.floor = 1.0 / self.distinct
        else:
            rng = np.random.default_rng(seed)
            out = np.empty((int(n_mc) + 1, len(labels)), dtype=labels.dtype)
            out[0] = labels
            for r in range(1, int(n_mc) + 1):
                row = labels.copy()
                for where in groups:
                    row[where] = labels[where][rng.permutation(len(where))]
                out[r] = row
            self.labels = out
            self.floor = max(1.0 / self.distinct, 1.0 / (int(n_mc) + 1))

    def __len__(self) -> int:
        return len(self.labels)


SIGN_FLIPS_MC = 4000  # random sign patterns where 2^k is too many to enumerate


def sign_flip_design(
    k: int, unit: str, n_mc: int = SIGN_FLIPS_MC, max_exact: int = MAX_EXACT
) -> tuple[float, str]:
    """The floor of a sign-flip test over ``k`` units, and the test in words (for a claim row,
    before any data)."""
    k = int(k)
    exact = 2**k <= max_exact
    floor = 1.0 / 2**k if exact else max(1.0 / 2**k, 1.0 / (int(n_mc) + 1))
    return (
        floor,
        f"{'exact' if exact else 'Monte Carlo'} sign-flip test over {k} {unit} ({2**k:,} sign "
        "patterns)",
    )


class SignFlips:
    """Every ±1 assignment to k units where 2^k <= max_exact, else n_mc random ones (all +1
    first)."""

    def __init__(
        self, k: int, n_mc: int = SIGN_FLIPS_MC, seed: int = 0, max_exact: int = MAX_EXACT
    ):
        self.k = int(k)
        self.exact = 2**self.k <= max_exact
        self.floor = sign_flip_design(self.k, "units", n_mc, max_exact)[0]
        if self.exact:
            self.signs = (
                np.array(list(itertools.product((1.0, -1.0), repeat=self.k)))
                if self.k
                else np.ones((1, 0))
            )
        else:
            rng = np.random.default_rng(seed)
            self.signs = rng.choice([-1.0, 1.0], size=(int(n_mc) + 1, self.k))
            self.signs[0] = 1.0

    def null_means(self, values) -> np.ndarray:
        """The mean of ``values`` under every sign assignment, shape (R,)."""
        values = np.asarray(values, dtype=float)
        return self.signs @ values / max(len(values), 1)


def p_values(observed: float, null) -> tuple[float, float]:
    """One-sided p-values (greater, less) of ``observed`` against the null's values: the share of
    reassignments at least as extreme. The null holds the observed labelling itself (every one,
    where they are enumerated; the first row of a Monte Carlo sample), so a Monte Carlo p is
    (1 + #) / (1 + B), the observed one counted once."""
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or len(null) == 0:
        return float("nan"), float("nan")
    tol = 1e-9 * max(1.0, abs(observed))
    greater, less = int((null >= observed - tol).sum()), int((null <= observed + tol).sum())
    return greater / len(null), less / len(null)


def holm(p_values, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down rule: (rejected, threshold) per hypothesis; NaN p never rejects. A
    hypothesis's threshold is alpha / (m - rank) at its rank in ascending p; it is rejected when it
    and every smaller p pass theirs."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(np.where(np.isfinite(p), p, np.inf), kind="stable")
    thresholds = np.empty(m)
    rejected = np.zeros(m, dtype=bool)
    still = True
    for rank, i in enumerate(order):
        thresholds[i] = alpha / (m - rank)
        still = still and bool(np.isfinite(p[i]) and p[i] <= thresholds[i])
        rejected[i] = still
    return rejected, thresholds
