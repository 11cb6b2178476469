"""Where to start: the ranking of candidate starts by probe loss, the outcomes of fine-tuning from
them, their pooling over targets, and the figure; with the Spearman interval's controls measured by
simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from weightspace import WeightspaceError
from weightspace.report import start_figures
from weightspace.train import start_outcomes as so


def probe(loss: float, accuracy: float = 0.7, prior: float = 0.69) -> dict:
    return {"loss": loss, "accuracy": accuracy, "prior": {"loss": prior, "accuracy": 0.5}}


# the hand-computed example: three candidates and the pretrained model, ranked on target "t"
LOSSES = {"a.seed0": 0.2, "brought.b": 0.3, "fused.t.all": 0.4, "pretrained": 0.5}
KINDS = {"a.seed0": "finetuned", "brought.b": "brought", "fused.t.all": "fused"}
KINDS["pretrained"] = "pretrained"
# test accuracy of each start, seeds 0 and 1
ACCURACY = {
    "pretrained": (0.60, 0.64),  # mean 0.62
    "a.seed0": (0.63, 0.65),  # mean 0.64: +3 and +1 points, gain 2
    "brought.b": (0.70, 0.72),  # mean 0.71: the best
    "fused.t.all": (0.58, 0.60),  # mean 0.59: below the pretrained start
}


def example_ranking(target: str = "t") -> pd.DataFrame:
    results = {(c, target): probe(loss) for c, loss in LOSSES.items()}
    return so.rank_candidates(target, KINDS, results)


def example_runs(starts=None, target: str = "t", size=64) -> pd.DataFrame:
    starts = list(ACCURACY) if starts is None else starts
    return so.run_table(
        (target, start, size, {"seed": seed, "test": {"accuracy": acc, "loss": 0.5, "n": 100}})
        for start in starts
        for seed, acc in enumerate(ACCURACY[start])
    )


# ---------------------------------------------------------------- the ranking


def test_candidates_are_ranked_by_probe_loss_with_ties_broken_by_id():
    results = {
        ("z.seed0", "t"): probe(0.30, prior=0.69),
        ("brought.mine", "t"): probe(0.20, accuracy=0.9),
        ("merged.t.all.ties", "t"): probe(0.30),
        ("pretrained", "t"): probe(0.50),
        ("brought.mine", "other"): probe(0.01),  # another target's result is not read
    }
    candidates = {
        "z.seed0": "finetuned",
        "pretrained": "pretrained",
        "merged.t.all.ties": "merged",
        "brought.mine": "brought",
    }
    ranking = so.rank_candidates("t", candidates, results)
    assert list(ranking.columns) == so.RANKING_COLUMNS
    assert ranking["candidate"].tolist() == [
        "brought.mine",
        "merged.t.all.ties",  # tied with z.seed0 at 0.30: the id decides
        "z.seed0",
        "pretrained",
    ]
    assert ranking["rank"].tolist() == [1, 2, 3, 4]
    first = ranking.iloc[0]
    assert (first["target"], first["kind"], first["probe_loss"]) == ("t", "brought", 0.20)
    assert first["probe_accuracy"] == 0.9 and first["prior_loss"] == 0.69
    # the order the candidates come in does not matter
    shuffled = dict(reversed(list(candidates.items())))
    assert so.rank_candidates("t", shuffled, results).equals(ranking)


def test_a_missing_probe_result_names_the_candidate_and_the_target():
    results = {("pretrained", "t"): probe(0.5)}
    with pytest.raises(WeightspaceError, match=r"'brought\.mine'.*'t'"):
        so.rank_candidates("t", {"pretrained": "pretrained", "brought.mine": "brought"}, results)
    with pytest.raises(WeightspaceError, match="kind 'weird'"):
        so.rank_candidates("t", {"pretrained": "weird"}, results)
    with pytest.raises(WeightspaceError, match="no candidate"):
        so.rank_candidates("t", {}, results)
    # the target's own fine-tunes have seen its training data: no off-the-shelf start
    with pytest.raises(WeightspaceError, match="fine-tuned on the target 't' itself"):
        so.rank_candidates("t", {"t.seed0": "finetuned"}, {("t.seed0", "t"): probe(0.1)})


def test_chosen_starts_are_the_top_k_and_the_pretrained_start():
    ranking = example_ranking()  # a.seed0, brought.b, fused.t.all, pretrained
    assert so.chosen_starts(ranking, 2) == ["a.seed0", "brought.b", "pretrained"]
    assert so.chosen_starts(ranking, 1) == ["a.seed0", "pretrained"]
    # the pretrained start among the top k is listed once, in its rank
    assert so.chosen_starts(ranking, 4) == ["a.seed0", "brought.b", "fused.t.all", "pretrained"]
    assert so.chosen_starts(ranking, 10) == so.chosen_starts(ranking, 4)
    with pytest.raises(WeightspaceError, match="top_k"):
        so.chosen_starts(ranking, 0)


def test_run_table_reads_metrics_and_names_what_is_missing():
    runs = example_runs()
    assert list(runs.columns) == so.RUN_COLUMNS
    assert len(runs) == 8 and set(runs["seed"]) == {0, 1}
    row = runs[(runs["start"] == "brought.b") & (runs["seed"] == 1)].iloc[0]
    assert (row["target"], row["size"], row["accuracy"]) == ("t", 64, 0.72)
    with pytest.raises(WeightspaceError, match="no fine-tune runs"):
        so.run_table([])
    with pytest.raises(WeightspaceError, match=r"'brought\.b' on 't' \(size 64\)"):
        so.run_table([("t", "brought.b", 64, {"seed": 0, "validation": {}})])
    twice = ("t", "pretrained", 64, {"seed": 0, "test": {"accuracy": 0.5, "loss": 0.7}})
    with pytest.raises(WeightspaceError, match="two runs"):
        so.run_table([twice, twice])


# ---------------------------------------------------------------- outcomes per target


def test_gain_regret_share_and_spearman_by_hand():
    out = so.target_outcomes(example_ranking(), example_runs(), top_k=2, bootstrap=200)
    assert list(out.columns) == so.OUTCOME_COLUMNS and len(out) == 1
    row = out.iloc[0]
    assert (row["chosen"], row["chosen_kind"]) == ("a.seed0", "finetuned")
    assert row["pretrained_accuracy"] == pytest.approx(0.62)
    assert row["chosen_accuracy"] == pytest.approx(0.64)
    # paired by seed: +3 and +1 points; mean 2, sd sqrt(2), t(0.975, 1 df) = 12.706
    assert row["gain"] == pytest.approx(2.0)
    assert row["gain_low"] == pytest.approx(2.0 - 12.7062047, abs=1e-6)
    assert row["gain_high"] == pytest.approx(2.0 + 12.7062047, abs=1e-6)
    assert (row["n_seeds"], row["n_candidates"], row["n_finetuned"]) == (2, 4, 4)
    assert (row["best"], row["best_accuracy"]) == ("brought.b", pytest.approx(0.71))
    assert row["regret_top1"] == pytest.approx(7.0)  # 0.71 - 0.64
    assert row["regret_topk"] == pytest.approx(0.0)  # brought.b is rank 2: in the top 2
    # a.seed0 and brought.b beat 0.62, fused.t.all does not; the pretrained start is not counted
    assert row["share_beating_pretrained"] == pytest.approx(2 / 3)
    # ranks of -loss (a, b, fused, pretrained) 4 3 2 1; of accuracy 3 4 1 2: 1 - 6*4/(4*15)
    assert row["spearman"] == pytest.approx(0.6)
    assert row["spearman_low"] <= row["spearman"] <= row["spearman_high"]
    # with top 1 the regret of the top k is the top 1's
    one = so.target_outcomes(example_ranking(), example_runs(), top_k=1, bootstrap=0).iloc[0]
    assert one["regret_topk"] == pytest.approx(7.0) and np.isnan(one["spearman_low"])


def test_the_candidate_gains_are_paired_by_seed():
    table = so.candidate_gains(example_ranking(), example_runs())
    assert list(table.columns) == so.CANDIDATE_COLUMNS
    gains = table.set_index("candidate")["gain"]
    assert gains["a.seed0"] == pytest.approx(2.0) and gains["pretrained"] == 0.0
    assert gains["brought.b"] == pytest.approx(9.0) and gains["fused.t.all"] == pytest.approx(-3.0)


def test_only_the_top_k_fine_tuned_leaves_the_evaluation_columns_nan():
    """The use design: the ranking's quality needs every candidate's accuracy."""
    starts = so.chosen_starts(example_ranking(), 2)  # a.seed0, brought.b, pretrained
    out = so.target_outcomes(example_ranking(), example_runs(starts), top_k=2, bootstrap=100)
    row = out.iloc[0]
    assert row["gain"] == pytest.approx(2.0) and row["chosen"] == "a.seed0"
    assert (row["n_candidates"], row["n_finetuned"]) == (4, 3)
    for column in so.EVALUATION_COLUMNS:
        assert pd.isna(row[column]), column
    table = so.candidate_gains(example_ranking(), example_runs(starts))
    assert table.set_index("candidate").loc["fused.t.all", ["finetuned", "n_seeds"]].tolist() == [
        False,
        0,
    ]


def test_one_seed_gives_a_gain_without_an_interval():
    runs = example_runs()
    row = so.target_outcomes(example_ranking(), runs[runs["seed"] == 0], 2, 100).iloc[0]
    assert row["gain"] == pytest.approx(3.0) and row["n_seeds"] == 1
    assert np.isnan(row["gain_low"]) and np.isnan(row["gain_high"])


def test_the_outcomes_name_what_is_missing():
    ranking, runs = example_ranking(), example_runs()
    with pytest.raises(WeightspaceError, match="no fine-tune run from the pretrained start"):
        so.target_outcomes(ranking, runs[runs["start"] != "pretrained"])
    with pytest.raises(WeightspaceError, match=r"top-ranked start 'a\.seed0'"):
        so.target_outcomes(ranking, runs[runs["start"] != "a.seed0"])
    with pytest.raises(WeightspaceError, match="paired by seed"):
        so.target_outcomes(ranking, runs.drop(index=runs.index[runs["start"] == "brought.b"][:1]))
    stray = example_runs().assign(start=lambda f: f["start"].replace("brought.b", "brought.x"))
    with pytest.raises(WeightspaceError, match="not ranked"):
        so.target_outcomes(ranking, stray)
    with pytest.raises(WeightspaceError, match="without a ranking"):
        so.target_outcomes(ranking, pd.concat([runs, example_runs(target="u")]))
    with pytest.raises(WeightspaceError, match="no fine-tune runs"):
        so.target_outcomes(ranking, runs.iloc[:0])
    with pytest.raises(WeightspaceError, match="no rankings"):
        so.target_outcomes(ranking.iloc[:0], runs)
    with pytest.raises(WeightspaceError, match="ranked twice"):
        so.target_outcomes(pd.concat([ranking, ranking]), runs)
    with pytest.raises(WeightspaceError, match="no target outcomes"):
        so.pooled_outcomes(pd.DataFrame(columns=so.OUTCOME_COLUMNS))


# ---------------------------------------------------------------- pooled over targets


def test_pooled_outcomes_average_over_targets_beside_the_published_figures():
    ranking = pd.concat([example_ranking("t"), example_ranking("u")])
    # target u: every start 2 points higher on seed 1 except the pretrained one: gain 3 there
    runs = pd.concat([example_runs(target="t"), example_runs(target="u")], ignore_index=True)
    lift = (runs["target"] == "u") & (runs["seed"] == 1) & (runs["start"] != "pretrained")
    runs.loc[lift, "accuracy"] += 0.02
    outcomes = so.target_outcomes(ranking, runs, top_k=2, bootstrap=100)
    assert outcomes.set_index("target")["gain"].to_dict() == pytest.approx({"t": 2.0, "u": 3.0})
    pooled = so.pooled_outcomes(outcomes, bootstrap=500, seed=0)
    assert list(pooled.columns) == so.POOLED_COLUMNS and len(pooled) == 1
    row = pooled.iloc[0]
    assert (row["size"], row["top_k"], row["n_targets"], row["n_evaluated"]) == (64, 2, 2, 2)
    assert row["gain"] == pytest.approx(2.5)
    # two targets: the bootstrap means over targets span theirs (500 resamples reach both ends)
    assert row["gain_low"] == pytest.approx(2.0) and row["gain_high"] == pytest.approx(3.0)
    assert row["regret_top1"] == pytest.approx(7.0) and row["spearman"] == pytest.approx(0.6)
    assert row["published_share_beating_pretrained"] == pytest.approx(1 / 6)
    assert (row["published_spearman_low"], row["published_spearman_high"]) == (0.46, 0.51)
    assert (row["published_regret_top1"], row["published_regret_top3"]) == (2.33, 0.34)
    # one target: a mean, no interval over targets
    single = so.pooled_outcomes(outcomes[outcomes["target"] == "t"], bootstrap=500).iloc[0]
    assert single["gain"] == pytest.approx(2.0) and np.isnan(single["gain_low"])


def test_sizes_are_pooled_apart_with_the_whole_split_first():
    ranking = example_ranking()
    runs = pd.concat([example_runs(size=size) for size in (64, "all", 16)], ignore_index=True)
    outcomes = so.target_outcomes(ranking, runs, top_k=2, bootstrap=0)
    assert outcomes["size"].tolist() == ["all", 16, 64]
    assert so.pooled_outcomes(outcomes, bootstrap=0)["size"].tolist() == ["all", 16, 64]


# ---------------------------------------------------------------- the Spearman interval's controls


def simulated(n_targets: int, slope: float, seed: int, n_candidates: int = 16):
    """Rankings and runs of simulated targets: each candidate's probe loss uniform on [0.3, 0.7],
    its fine-tuned accuracy 0.8 - slope * loss + N(0, 0.05) (its own skill), plus N(0, 0.01) per
    seed (two seeds); the pretrained start at 0.6."""
    rng = np.random.default_rng(seed)
    rankings, runs = [], []
    candidates = {f"brought.c{i:02d}": "brought" for i in range(n_candidates)}
    for t in range(n_targets):
        target = f"t{t:03d}"
        loss = rng.uniform(0.3, 0.7, n_candidates)
        results = {(c, target): probe(v) for c, v in zip(candidates, loss)}
        rankings.append(so.rank_candidates(target, candidates, results))
        skill = 0.8 - slope * loss + 0.05 * rng.standard_normal(n_candidates)
        for s in range(2):
            runs.append((target, "pretrained", 16, s, 0.6 + 0.01 * rng.standard_normal()))
            runs.extend(
                (target, c, 16, s, k + 0.01 * rng.standard_normal())
                for c, k in zip(candidates, skill)
            )
    frame = pd.DataFrame(runs, columns=["target", "start", "size", "seed", "accuracy"])
    return pd.concat(rankings), frame.assign(loss=0.5)


def excludes_zero(outcomes: pd.DataFrame) -> float:
    """The share of targets whose Spearman interval excludes 0."""
    return float(((outcomes["spearman_low"] > 0) | (outcomes["spearman_high"] < 0)).mean())


def test_negative_control_the_spearman_interval_rarely_excludes_zero_without_a_relation():
    """Accuracies independent of the probe losses: a 95% interval should exclude 0 in about 5% of
    targets. Measured over 40 batches of 200 simulated targets (16 candidates, 1000 resamples):
    4.5% on average (8000 targets), 7.0% in the worst batch; this seeded batch gives 5.5%. The
    bound, 8%, is the mean plus 2.4 binomial standard deviations at 200 targets; an interval that
    never excluded 0 would pass it, which the positive control rules out."""
    rankings, runs = simulated(200, slope=0.0, seed=0)
    outcomes = so.target_outcomes(rankings, runs, top_k=3, bootstrap=1000, seed=0)
    assert outcomes["spearman"].notna().all() and len(outcomes) == 200
    assert abs(outcomes["spearman"].mean()) < 0.05  # centred on 0
    assert 0.01 <= excludes_zero(outcomes) <= 0.08


def test_positive_control_the_spearman_interval_finds_a_real_relation():
    """Accuracy falls with probe loss (slope 0.5 against skill noise 0.05; rho about 0.72):
    measured over 9 batches of 200 targets, the interval excluded 0 in 90% to 96.5% of targets
    (this seeded batch 96.5%); and always on the positive side."""
    rankings, runs = simulated(200, slope=0.5, seed=0)
    outcomes = so.target_outcomes(rankings, runs, top_k=3, bootstrap=1000, seed=0)
    assert outcomes["spearman"].mean() > 0.6
    assert excludes_zero(outcomes) >= 0.8
    assert (outcomes["spearman_high"] > 0).all()


def test_the_vectorised_bootstrap_replicates_are_scipys_spearman():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    draws = np.random.default_rng(7).integers(0, 12, size=(50, 12))
    expected = [stats.spearmanr(x[d], y[d]).statistic for d in draws]
    low, high = so.spearman_interval(x, y, 50, np.random.default_rng(7))
    finite = np.array(expected)[np.isfinite(expected)]
    assert (low, high) == pytest.approx(tuple(np.quantile(finite, [0.025, 0.975])))


# ---------------------------------------------------------------- figure and table


def test_the_figure_and_the_summary_table(tmp_path):
    # target t: every candidate fine-tuned; target u: only the top 2 (the rest grey ticks)
    ranking = pd.concat([example_ranking("t"), example_ranking("u")])
    top = so.chosen_starts(example_ranking("u"), 2)
    runs = pd.concat([example_runs(target="t"), example_runs(top, target="u")], ignore_index=True)
    path = tmp_path / "figures" / "where_to_start.png"
    start_figures.start_figure(ranking, runs, 2, path)
    assert path.exists() and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*.tmp"))  # written atomically

    outcomes = so.target_outcomes(ranking, runs, top_k=2, bootstrap=200)
    markdown = start_figures.start_table_markdown(so.pooled_outcomes(outcomes, 200), ["t", "u"])
    assert "Choshen et al. 2023" in markdown and "Over 2 targets (t, u)" in markdown
    assert "| 64 | gain of the top-ranked start" in markdown
    assert "+2.00" in markdown  # both targets' gain is 2 points
    assert "0.46–0.51" in markdown and "2.33" in markdown and "0.34 (top 3)" in markdown
    assert "best of the top 2 (1 of 2 targets)" in markdown
    assert len([line for line in markdown.splitlines() if line.startswith("| 64 ")]) == 5
