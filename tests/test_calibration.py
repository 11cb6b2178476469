"""How often the verdict rule says "holds" when nothing is there, and how often it finds what is,
measured.

Each family's headline claims run through the workflow's own claim functions on synthetic studies
that carry the design's random effects: task offsets with no dataset effect, dataset effects with no
task effect, target effects, group and line effects. No models: distance matrices, per-example
losses and gains are drawn directly.

- Under each null, the share of studies with at least one false "holds" in the family must be
  consistent with at most 5 % (the rule controls it at alpha 0.05 one-sided per family): a one-sided
  binomial test of "rate <= 5 %" may not reject at 0.01 (a true rate of 10 % fails it); the message
  gives the binomial 95 % interval.
- The rule before issue 23 (interval only, runs as units, shuffles across tasks) is significantly
  above 5 % on the dataset, fusion and lines nulls: the same assertion fails it, so the test could
  fail.
- Under planted effects of the default's observed size, the rule finds them in at least 80 % of
  studies, in a design whose floor allows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from scipy.stats import binomtest

from weightspace.geometry import clusters, interpolation
from weightspace.stats import verdicts
from weightspace.train import fusion_outcomes

STUDIES = 200
ALPHA = 0.05
N_BOOT = 100  # per study: the verdict needs the interval's sign, not its third digit


def rate(hits: list[bool]) -> tuple[float, str]:
    k, n = int(np.sum(hits)), len(hits)
    ci = binomtest(k, n).proportion_ci(0.95)
    return k / n, f"{k} of {n} studies ({k / n:.1%}, 95% interval [{ci.low:.1%}, {ci.high:.1%}])"


def above(hits, limit) -> bool:
    """Is the rate significantly above ``limit`` (one-sided binomial test at 0.01)?"""
    return binomtest(int(np.sum(hits)), len(hits), limit, alternative="greater").pvalue < 0.01


def assert_at_most(hits, limit, what):
    _, text = rate(hits)
    assert not above(hits, limit), f"{what}: {text}, significantly above {limit:.0%}"
    return text


def assert_old_rule_fails(hits, limit=ALPHA):
    _, text = rate(hits)
    assert above(hits, limit), f"the old rule should fail this null: {text}"
    return text


def assert_at_least(hits, limit, what):
    share, text = rate(hits)
    assert share >= limit, f"{what}: {text} < {limit:.0%}"
    return text


# ---------------------------------------------------------------- geometry


def layout(per_task: list[int], seeds: int):
    datasets, tasks = [], []
    for t, count in enumerate(per_task):
        for i in range(count):
            datasets += [f"d{t}{i}"] * seeds
            tasks += [f"t{t}"] * seeds
    return np.array(datasets), np.array(tasks)


def draw_weights(datasets, tasks, rng, task_scale=0.0, dataset_scale=0.0, dim=64):
    """Seed noise (sd 1 per coordinate) around random task offsets and random dataset offsets. In
    many dimensions distances concentrate, as they do for weights: a within/between ratio of 0.92 is
    then a clear structure."""
    offsets_t = {t: task_scale * rng.normal(size=dim) for t in np.unique(tasks)}
    offsets_d = {d: dataset_scale * rng.normal(size=dim) for d in np.unique(datasets)}
    return np.array(
        [offsets_t[t] + offsets_d[d] + rng.normal(size=dim) for d, t in zip(datasets, tasks)]
    )


def old_dataset_rule(D, datasets, rng, n_perm=200) -> bool:
    """Before: 1-NN by dataset against models shuffled across every task, verdict from the inverted
    interval."""
    observed = clusters.nn1_accuracy(D, datasets)
    null = [clusters.nn1_accuracy(D, rng.permutation(datasets)) for _ in range(n_perm)]
    _, low, high = verdicts.inverted_interval(observed, null)
    return verdicts.verdict(low, high) == verdicts.HOLDS


def old_task_rule(D, datasets, tasks, rng, n_boot=N_BOOT) -> bool:
    """Before: same-task distances closer than across, interval from a bootstrap of datasets inside
    fixed tasks."""

    def resample():
        out = []
        for task in np.unique(tasks):
            for name in rng.choice(
                np.unique(datasets[tasks == task]), size=len(np.unique(datasets[tasks == task]))
            ):
                members = np.flatnonzero(datasets == name)
                out.append(rng.choice(members, size=len(members)))
        return np.concatenate(out)

    boots = []
    for _ in range(n_boot):
        m = clusters.pair_means(D, datasets, tasks, resample())
        boots.append(m["across_tasks"] - m["within_task"])
    return verdicts.verdict(*verdicts.interval(boots)) == verdicts.HOLDS


def family_holds(found: pd.DataFrame, family: str) -> bool:
    return bool((found.loc[found["family"] == family, "verdict"] == verdicts.HOLDS).any())


def test_dataset_claims_under_a_task_only_structure():
    """The default's design (6 datasets in 3 tasks, 3 seeds); tasks apart, no dataset effect.
    Shuffling models within tasks keeps the task structure in the null: no dataset claim may hold.
    The old rule (models shuffled across tasks) calls the task structure a dataset structure."""
    rng = np.random.default_rng(0)
    datasets, tasks = layout([2, 2, 2], 3)
    design = clusters.Design(datasets, tasks, 1000, 0)
    new, old = [], []
    for _ in range(STUDIES):
        D = cdist(*(draw_weights(datasets, tasks, rng, task_scale=0.5),) * 2)
        found = clusters.headline_claims(D, datasets, tasks, n_boot=N_BOOT, design=design)
        new.append(family_holds(found, "dataset geometry"))
        old.append(old_dataset_rule(D, datasets, rng))
    print("dataset geometry, task-only null: new", assert_at_most(new, ALPHA, "false holds"))
    print("  old rule:", assert_old_rule_fails(old))


def test_dataset_claims_find_a_dataset_structure_of_the_default_size():
    """Planted: dataset offsets that put a dataset's seeds at ~0.92 of the within-task distance (the
    default measured 0.93 [0.85, 0.99] by this ratio, and 1-NN 1.00): both dataset claims hold in >=
    80 % of studies."""
    rng = np.random.default_rng(1)
    datasets, tasks = layout([2, 2, 2], 3)
    design = clusters.Design(datasets, tasks, 1000, 0)
    found_both, ratios = [], []
    for _ in range(STUDIES):
        X = draw_weights(datasets, tasks, rng, task_scale=0.3, dataset_scale=0.43, dim=2000)
        D = cdist(X, X)
        means = clusters.pair_means(D, datasets, tasks)
        ratios.append(means["within_dataset"] / means["within_task"])
        found = clusters.headline_claims(D, datasets, tasks, n_boot=N_BOOT, design=design)
        found_both.append(
            bool(
                (
                    found.loc[["dataset_closer_than_task", "nn1_dataset"], "verdict"]
                    == verdicts.HOLDS
                ).all()
            )
        )
    assert 0.88 < np.median(ratios) < 0.96, np.median(ratios)
    print("dataset geometry, power:", assert_at_least(found_both, 0.8, "power"))


def test_task_claims_under_dataset_effects_without_tasks():
    """9 datasets in 3 tasks of 3 (280 ways to split them, floor 1/280), 2 seeds; every dataset has
    its own random offset and tasks mean nothing: no task claim may hold.

    What this cannot cover: task effects that vary at random between tasks with mean zero (a
    population of tasks). With 3 tasks no test is calibrated for that: measured with per-task
    offsets of the within-task distance (sd 0.5, dataset-pair sd 0.3), the new rule said "holds" in
    9.5 % of 200 studies and the old in 10.5 %. A task claim speaks of these tasks, not of tasks in
    general."""
    rng = np.random.default_rng(2)
    datasets, tasks = layout([3, 3, 3], 2)
    design = clusters.Design(datasets, tasks, 1000, 0)
    new, old = [], []
    for _ in range(STUDIES):
        X = draw_weights(datasets, tasks, rng, dataset_scale=0.5)
        D = cdist(X, X)
        found = clusters.headline_claims(D, datasets, tasks, n_boot=N_BOOT, design=design)
        new.append(family_holds(found, "task geometry"))
        old.append(old_task_rule(D, datasets, tasks, rng))
    print("task geometry, dataset-only null: new", assert_at_most(new, ALPHA, "false holds"))
    print("  old rule:", rate(old)[1])


def test_task_claims_find_a_task_structure_where_the_design_allows():
    """Planted task offsets (0.3) below the dataset offsets (0.43), 9 datasets in 3 × 3: both task
    claims hold in >= 80 % of studies. In the default's 6-in-3 design they are 'not testable' (floor
    1/15), whatever the data."""
    rng = np.random.default_rng(3)
    datasets, tasks = layout([3, 3, 3], 2)
    design = clusters.Design(datasets, tasks, 1000, 0)
    hits = []
    for _ in range(STUDIES):
        X = draw_weights(datasets, tasks, rng, task_scale=0.3, dataset_scale=0.43, dim=2000)
        found = clusters.headline_claims(cdist(X, X), datasets, tasks, n_boot=N_BOOT, design=design)
        hits.append(
            bool(
                (
                    found.loc[["task_closer_than_across", "nn1_task"], "verdict"] == verdicts.HOLDS
                ).all()
            )
        )
    print("task geometry, power:", assert_at_least(hits, 0.8, "power"))
    small_d, small_t = layout([2, 2, 2], 3)
    X = draw_weights(small_d, small_t, rng, task_scale=5.0, dataset_scale=0.5)
    found = clusters.headline_claims(cdist(X, X), small_d, small_t, n_boot=N_BOOT)
    assert set(found.loc[["task_closer_than_across", "nn1_task"], "verdict"]) == {
        verdicts.NOT_TESTABLE
    }


# ---------------------------------------------------------------- fusion


def fusion_study(
    rng, targets: int, seeds: int, mean: float, target_sd: float, seed_sd: float
) -> pd.DataFrame:
    """Gains (points) = mean + a target effect + seed noise; the target effect is shared by the
    target's seeds (its start, data and test set), which is what makes runs correlated."""
    rows = []
    for t in range(targets):
        effect = mean + target_sd * rng.normal()
        for s in range(seeds):
            acc = 0.7
            gain = effect + seed_sd * rng.normal()
            rows.append(
                {
                    "target": f"t{t}",
                    "base": "pretrained",
                    "scope": "pretrained",
                    "mode": "full",
                    "size": "64",
                    "seed": s,
                    "accuracy": acc,
                    "loss": 0.5,
                    "validation_accuracy": acc,
                }
            )
            rows.append(
                {
                    "target": f"t{t}",
                    "base": f"fused.t{t}.all",
                    "scope": "all",
                    "mode": "full",
                    "size": "64",
                    "seed": s,
                    "accuracy": acc + gain / 100,
                    "loss": 0.5,
                    "validation_accuracy": acc,
                }
            )
    return pd.DataFrame(rows)


def test_fusion_under_target_effects_of_mean_zero():
    """8 targets × 3 seeds; target effects sd 4 points (the default's target means spread about that
    much), seed noise sd 2.5 (seeds of a target correlate ~0.7). The target is the unit: false holds
    <= 5 %. The old rule, 24 runs as independent units, holds far more often."""
    rng = np.random.default_rng(4)
    new, old = [], []
    for _ in range(STUDIES):
        summary = fusion_study(rng, 8, 3, 0.0, 4.0, 2.5)
        found = fusion_outcomes.claims(summary, n_boot=N_BOOT)
        new.append(family_holds(found, "fusion"))
        gains = 100 * fusion_outcomes.paired_gains(summary)["gain"].to_numpy()
        old.append(
            verdicts.verdict(*verdicts.paired_bootstrap_mean(gains, N_BOOT)[1:]) == verdicts.HOLDS
        )
    print("fusion, target-effect null: new", assert_at_most(new, ALPHA, "false holds"))
    print("  old rule:", assert_old_rule_fails(old))


def test_fusion_finds_the_default_gain_with_eight_targets():
    """+4.9 points (the default's observed gain) with the same spread: found in >= 80 % of 8-target
    studies. With the default's 4 targets it is 'not testable' (16 sign patterns)."""
    rng = np.random.default_rng(5)
    hits = [
        family_holds(
            fusion_outcomes.claims(fusion_study(rng, 8, 3, 4.9, 4.0, 2.5), n_boot=N_BOOT), "fusion"
        )
        for _ in range(STUDIES)
    ]
    print("fusion, power:", assert_at_least(hits, 0.8, "power"))
    four = fusion_outcomes.claims(fusion_study(rng, 4, 3, 4.9, 4.0, 2.5), n_boot=N_BOOT)
    assert four["verdict"].tolist() == [verdicts.NOT_TESTABLE]


# ---------------------------------------------------------------- lines and regions


ALPHAS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def lines_study(
    rng, groups: int, lines: int, examples: int, effect: float, group_sd: float, line_sd: float
):
    """Same-dataset lines: the interior gain is effect + a group effect + a line effect, each
    example's loss with its own difficulty and noise; extrapolation changes nothing on average (only
    its own group and line noise)."""
    rows = []
    for g in range(groups):
        interior_g, edge_g = group_sd * rng.normal(), group_sd * rng.normal()
        base = rng.gamma(2.0, 0.3, size=examples)
        for k in range(lines):
            interior, edge = (
                effect + interior_g + line_sd * rng.normal(),
                edge_g + line_sd * rng.normal(),
            )
            for alpha in ALPHAS:
                shift = -interior if 0 < alpha < 1 else edge if alpha < 0 or alpha > 1 else 0.0
                rows.append(
                    {
                        "relation": "same_dataset",
                        "pair": f"d{g}.seed{k} — d{g}.seed{k + 1}",
                        "eval_dataset": f"d{g}",
                        "alpha": alpha,
                        "loss": np.nan,
                        "test_losses": base + shift + 0.1 * rng.normal(size=examples),
                    }
                )
    return pd.DataFrame(rows)


def test_lines_under_group_and_line_effects_of_mean_zero():
    """8 groups (datasets) × 3 lines × 128 test examples, group effects sd 0.02 nats, line effects
    sd 0.01: the group is the unit, false holds <= 5 %. The old rule, a bootstrap over test examples
    only, treats the chosen lines as the population and holds far more often."""
    rng = np.random.default_rng(6)
    new, old = [], []
    for _ in range(STUDIES):
        lines = lines_study(rng, 8, 3, 128, 0.0, 0.02, 0.01)
        found = interpolation.claims(lines, pd.DataFrame(), {}, n_boot=N_BOOT)
        new.append(family_holds(found, "lines and regions"))
        cells = [(d, e) for _, _, d, e in _interior_cells(lines)]
        old.append(verdicts.verdict(*_example_bootstrap(cells, rng)) == verdicts.HOLDS)
    print("lines, group-effect null: new", assert_at_most(new, ALPHA, "false holds"))
    print("  old rule:", assert_old_rule_fails(old))


def test_lines_find_an_interior_gain_of_three_group_sds():
    """An interior gain of 0.06 nats (3 group sds) over 8 groups: found in >= 80 % of studies. (The
    default's full run measured 0.003 [-0.008, 0.013] on 3 lines of one group: no design finds an
    effect that small.)"""
    rng = np.random.default_rng(7)
    hits = []
    for _ in range(STUDIES):
        found = interpolation.claims(
            lines_study(rng, 8, 3, 128, 0.06, 0.02, 0.01), pd.DataFrame(), {}, n_boot=N_BOOT
        ).set_index("claim_id")
        hits.append(found.loc["interior_same_dataset", "verdict"] == verdicts.HOLDS)
    print("lines, power:", assert_at_least(hits, 0.8, "power"))


def _interior_cells(lines):
    for relation, pair, dataset, curve in interpolation._curves(lines):
        ends = 0.5 * (curve[0.0] + curve[1.0])
        yield (
            relation,
            pair,
            dataset,
            np.mean([ends - curve[a] for a in curve if 0 < a < 1], axis=0),
        )


def _example_bootstrap(cells, rng, n_boot=N_BOOT):
    n = len(cells[0][1])
    replicates = [
        np.mean([e[draw].mean() for _, e in cells]) for draw in rng.integers(0, n, size=(n_boot, n))
    ]
    return verdicts.interval(replicates)
