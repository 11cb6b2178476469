"""The linear probe: cached features give the in-the-loop result, it is deterministic, it learns;
the matrix and figures."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from test_features import write_dataset
from weightspace import WeightspaceError
from weightspace.model import base_model, weights
from weightspace.probe import features, linear
from weightspace.report import probe_figures

PROTOCOL = linear.Protocol()  # the config defaults: L-BFGS, l2 0.01, tolerance 1e-6


@pytest.fixture(scope="module")
def pretrained_file(tiny_base, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "pretrained.safetensors"
    weights.save(path, weights.encoder_weights(base_model.load_encoder(tiny_base)), "pretrained")
    return path


@pytest.fixture(scope="module")
def learnable(tiny_base, pretrained_file, tmp_path_factory):
    """Features of the tiny model on a learnable generated set (300 train, 200 test)."""
    root = tmp_path_factory.mktemp("learnable")
    data = write_dataset(root / "gen", n_train=300, n_test=200, seed=10)
    features.extract(tiny_base, [pretrained_file], [1.0], data, root / "f.npz", max_length=32)
    return features.load(root / "f.npz")


def test_cached_features_give_the_same_loss_as_the_encoder_in_the_loop(
    tiny_base, pretrained_file, tmp_path
):
    """Same init, same full-batch L-BFGS: only where the features come from differs.

    Cached: one dynamic-padding pass, stored as float32 in the npz. In the loop: the frozen
    encoder re-run over the training split (padded to max length, in data order) at every
    evaluation of the objective. Tolerance: 1e-4 relative on the test loss.
    """
    data = write_dataset(tmp_path / "eq", n_train=96, n_test=64, pairs=True, seed=4)
    features.extract(
        tiny_base, [pretrained_file], [1.0], data, tmp_path / "f.npz", batch_size=8, max_length=24
    )
    cached = linear.train_probe(features.load(tmp_path / "f.npz"), PROTOCOL)

    encoder = base_model.load_encoder(tiny_base, weights.load(pretrained_file))
    tokenizer = base_model.load_tokenizer(tiny_base)
    frames = {s: pd.read_parquet(data / f"{s}.parquet") for s in ("train", "test")}
    tokens = {
        s: features.tokenize(tokenizer, f["text"], f["text_pair"], 24) for s, f in frames.items()
    }

    def through_encoder(split):
        return features.encode(
            encoder,
            tokens[split],
            "mean",
            tokenizer.pad_token_id,
            batch_size=32,
            padding="max_length",
            max_length=24,
        )

    head = linear.LinearHead(32, 2, PROTOCOL.seed)
    passes = []
    info = linear.fit(
        head,
        lambda: passes.append(1) or through_encoder("train"),
        frames["train"]["label"],
        PROTOCOL,
    )
    in_loop = linear.evaluate(head, through_encoder("test"), frames["test"]["label"])

    assert len(passes) == info["feature_passes"] > 10  # the encoder really ran at every evaluation
    assert info["converged"] and cached["fit"]["converged"]
    assert in_loop["loss"] == pytest.approx(cached["loss"], rel=1e-4)
    assert in_loop["accuracy"] == pytest.approx(cached["accuracy"], abs=1.0 / 64)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(20, 5)), rng.integers(0, 3, size=20)
    head = linear.LinearHead(5, 3, seed=2)
    theta = head.theta
    loss, grad = linear.objective(head, z, y, l2=0.3)
    numeric = np.zeros_like(theta)
    for i in range(len(theta)):
        for sign in (1, -1):
            head.theta = theta + sign * 1e-6 * np.eye(len(theta))[i]
            numeric[i] += sign * linear.objective(head, z, y, l2=0.3)[0] / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-7)
    head.theta = theta
    assert loss == pytest.approx(
        linear.cross_entropy(z @ head.weight.T + head.bias, y) + 0.15 * np.square(head.weight).sum()
    )


def test_probe_is_deterministic_and_converges_from_any_init(learnable):
    first, again = linear.train_probe(learnable, PROTOCOL), linear.train_probe(learnable, PROTOCOL)
    for result in (first, again):
        result["fit"].pop("seconds")
    assert first == again  # bitwise: every number the same
    heads = [linear.LinearHead(32, 2, seed) for seed in (0, 1)]
    assert not np.array_equal(heads[0].weight, heads[1].weight)  # the seed changes the init ...
    other = linear.train_probe(learnable, linear.Protocol(seed=1))
    assert other["loss"] == pytest.approx(first["loss"], rel=1e-4)  # ... not the (convex) optimum


def test_probe_learns_real_labels_and_not_shuffled_ones(learnable):
    """Would catch a broken pipeline: misaligned rows, a head that never trains, test on train."""
    real = linear.train_probe(learnable, PROTOCOL)
    assert real["chance"]["accuracy"] < 0.6
    assert real["accuracy"] > 0.8 and real["loss"] < 0.5 < real["chance"]["loss"]
    shuffled = []
    for seed in range(5):
        data = dict(
            learnable, train_y=np.random.default_rng(seed).permutation(learnable["train_y"])
        )
        shuffled.append(linear.train_probe(data, PROTOCOL))
    assert np.mean([r["accuracy"] for r in shuffled]) < 0.6
    assert np.mean([r["loss"] for r in shuffled]) > real["chance"]["loss"]
    # a head that is not trained is no better than chance either
    untrained = linear.LinearHead(32, 2, 0)
    untrained.standardise_with(learnable["train_x"])
    scored = linear.evaluate(untrained, learnable["test_x"], learnable["test_y"])
    assert scored["loss"] > real["loss"] + 0.1


def test_a_head_held_at_zero_weights_reports_the_label_prior(learnable):
    """With an enormous l2, W = 0 and the bias learns the train label frequencies: the loss is known
    exactly."""
    result = linear.train_probe(learnable, linear.Protocol(l2=1e8))
    frequency = np.bincount(learnable["train_y"], minlength=2) / len(learnable["train_y"])
    assert result["loss"] == pytest.approx(-np.log(frequency[learnable["test_y"]]).mean(), rel=1e-5)
    assert result["accuracy"] == np.mean(learnable["test_y"] == frequency.argmax())


def test_standardised_probe_ignores_the_units_of_each_feature(learnable):
    scale = np.random.default_rng(0).uniform(0.01, 100, size=learnable["train_x"].shape[1])
    shift = np.random.default_rng(1).normal(size=learnable["train_x"].shape[1]) * 10
    rescaled = dict(
        learnable,
        train_x=learnable["train_x"] * scale + shift,
        test_x=learnable["test_x"] * scale + shift,
    )
    assert linear.train_probe(rescaled, PROTOCOL)["loss"] == pytest.approx(
        linear.train_probe(learnable, PROTOCOL)["loss"], rel=1e-4
    )


def test_l2_shrinks_the_head(learnable):
    loose = linear.train_probe(learnable, linear.Protocol(l2=1e-4))
    tight = linear.train_probe(learnable, linear.Protocol(l2=10.0))
    assert tight["train_loss"] > loose["train_loss"]
    assert tight["loss"] < learnable["num_labels"] and tight["protocol"]["l2"] == 10.0


def test_the_result_keeps_per_example_test_losses_and_the_prior(learnable):
    result = linear.train_probe(learnable, PROTOCOL, l2=0.5)
    assert len(result["test_losses"]) == result["n_test"] == len(learnable["test_y"])
    assert np.mean(result["test_losses"]) == pytest.approx(result["loss"], rel=1e-12)
    assert min(result["test_losses"]) > 0
    assert result["l2"] == 0.5 and result["protocol"]["l2"] == 0.5
    assert (
        result["prior"]
        == result["chance"]
        == linear.chance(learnable["train_y"], learnable["test_y"], 2)
    )
    assert linear.train_probe(learnable, PROTOCOL)["l2"] == PROTOCOL.l2  # default: the protocol's


def test_select_l2_regularises_noise_and_not_signal():
    """On pure-noise features the CV picks a large L2 (the prior); on informative ones a loss well
    below it."""
    rng = np.random.default_rng(3)
    n, d = 160, 60
    x = rng.normal(size=(n, d))
    protocol = linear.Protocol(l2_grid=(0.001, 0.1, 10.0, 1000.0), cv_folds=4)
    noise = linear.select_l2(x, rng.integers(0, 2, n), 2, protocol)
    assert (
        noise["grid"] == [0.001, 0.1, 10.0, 1000.0]
        and len(noise["cv_loss"]) == 4
        and noise["folds"] == 4
    )
    assert noise["l2"] >= 10.0
    # the smallest L2 overfits
    assert noise["cv_loss_best"] == min(noise["cv_loss"]) < noise["cv_loss"][0]
    signal_y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    signal = linear.select_l2(x, signal_y, 2, protocol)
    assert signal["l2"] <= 0.1 and signal["cv_loss_best"] < 0.6 * signal["cv_prior_loss"]
    again = linear.select_l2(x, signal_y, 2, protocol)
    assert again.pop("seconds") and signal.pop("seconds") and again == signal  # deterministic
    folds = linear.folds(signal_y, 4, seed=0)
    for label in (0, 1):  # stratified: every fold has its share of each label
        counts = np.bincount(folds[signal_y == label], minlength=4)
        assert counts.max() - counts.min() <= 1


def test_the_cross_validations_looser_tolerance_ranks_the_grid_as_the_tight_one():
    """The fold fits stop at cv_tolerance (1e-4): on problems of 2 to 20 labels, with signal and
    with noise, the CV losses agree with fits to 1e-6 to 1e-3 nats and the same L2 is chosen; the
    fold fits take fewer iterations; the setting is part of a probe's cache key."""
    from dataclasses import replace

    from weightspace.probe import cache

    rng = np.random.default_rng(11)
    tight_protocol = replace(linear.Protocol(), cv_tolerance=1e-6)
    iterations = {"loose": 0, "tight": 0}
    real_fit = linear.fit

    def counting_fit(head, features, y, protocol, l2=None):
        out = real_fit(head, features, y, protocol, l2)
        iterations["tight" if protocol.tolerance == 1e-6 else "loose"] += out["iterations"]
        return out

    linear.fit = counting_fit
    try:
        for labels, signal in ((2, 1.0), (6, 0.5), (20, 0.7), (3, 0.0)):
            n, d = 240, 48
            y = np.arange(n) % labels
            centres = rng.normal(size=(labels, d)) * signal
            x = centres[y] + rng.normal(size=(n, d))
            loose = linear.select_l2(x, y, labels, linear.Protocol())
            tight = linear.select_l2(x, y, labels, tight_protocol)
            assert loose["l2"] == tight["l2"], (labels, loose, tight)
            gap = np.abs(np.subtract(loose["cv_loss"], tight["cv_loss"]))
            assert gap.max() < 1e-2, (labels, gap)
    finally:
        linear.fit = real_fit
    assert iterations["loose"] < 0.8 * iterations["tight"], iterations
    assert cache.probe_key("f", linear.Protocol(), None) != cache.probe_key(
        "f", tight_protocol, None
    )
    with pytest.raises(WeightspaceError, match="probe.cv_tolerance"):
        linear.Protocol.from_config({"cv_tolerance": 0})


def test_select_l2_gives_a_probe_below_the_prior(learnable):
    chosen = linear.select_l2(learnable["train_x"], learnable["train_y"], 2, PROTOCOL)
    assert chosen["l2"] in PROTOCOL.l2_grid and chosen["grid"] == sorted(PROTOCOL.l2_grid)
    result = linear.train_probe(learnable, PROTOCOL, l2=chosen["l2"])
    assert result["loss"] < result["prior"]["loss"]


def test_run_writes_the_result(learnable, tmp_path):
    from weightspace.atomic import write_npz

    write_npz(
        tmp_path / "f.npz",
        **{k: v for k, v in learnable.items() if k != "pooling"},
        pooling=np.str_("mean"),
    )
    result = linear.run(
        tmp_path / "f.npz", tmp_path / "out" / "gen.json", PROTOCOL, "pretrained", "gen"
    )
    written = json.loads((tmp_path / "out" / "gen.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["model_id"] == "pretrained" and written["dataset"] == "gen"
    assert (written["n_train"], written["n_test"], written["num_labels"]) == (300, 200, 2)
    assert 0 < written["loss"] < written["chance"]["loss"] and 0.5 < written["accuracy"] <= 1
    assert written["protocol"]["optimizer"] == "lbfgs" and written["protocol"]["pooling"] == "mean"


def test_protocol_from_config():
    section = {
        "pooling": None,
        "batch_size": 64,
        "optimizer": "lbfgs",
        "max_iter": 50,
        "tolerance": 1e-5,
        "l2": 0.1,
        "seed": 3,
        "standardize": False,
        "threads": 1,
    }
    protocol = linear.Protocol.from_config(section)
    assert (
        protocol.max_iter,
        protocol.tolerance,
        protocol.l2,
        protocol.seed,
        protocol.standardize,
    ) == (50, 1e-5, 0.1, 3, False)
    assert linear.Protocol.from_config(dict(section, l2_grid=[1, 10], cv_folds=3)).l2_grid == (
        1.0,
        10.0,
    )
    with pytest.raises(WeightspaceError, match="probe.l2_grid"):
        linear.Protocol.from_config({"l2_grid": []})
    with pytest.raises(WeightspaceError, match="probe.optimizer"):
        linear.Protocol.from_config({"optimizer": "sgd"})


# ---------------------------------------------------------------- matrix and figures

TASKS = {"alpha": "sentiment", "beta": "sentiment", "gamma": "topic"}
MODELS = [
    "pretrained",
    "alpha.seed0",
    "alpha.seed1",
    "beta.seed0",
    "beta.seed1",
    "gamma.seed0",
    "gamma.seed1",
]


def fake_study(root):
    """Probe results where a model's own dataset gives the lowest loss, and a long distance
    table."""
    rng = np.random.default_rng(0)
    for model, target in itertools.product(MODELS, TASKS):
        own = model.split(".")[0]
        loss = 0.3 if own == target else 0.5 if TASKS.get(own) == TASKS[target] else 0.7
        losses = loss + 0.01 * rng.random() + np.array([-0.02, -0.01, 0.0, 0.01, 0.02])
        result = {
            "loss": float(losses.mean()),
            "accuracy": 1 - loss / 2,
            "n_train": 10,
            "n_test": 5,
            "num_labels": 2,
            "chance": {"loss": 0.69, "accuracy": 0.5},
            "test_losses": losses.tolist(),
            "l2": 0.3,
        }
        (root / "probe" / model).mkdir(parents=True, exist_ok=True)
        (root / "probe" / model / f"{target}.json").write_text(json.dumps(result))
    position = {m: float(i) for i, m in enumerate(MODELS)}  # on a line: distance = |i - j|
    rows = [
        {
            "model_a": a,
            "model_b": b,
            "metric": metric,
            "space": "raw",
            "group": "all",
            "distance": abs(position[a] - position[b]) * (1 if metric == "euclidean" else 100),
        }
        for a in MODELS
        for b in MODELS
        for metric in ("euclidean", "cosine")
    ]
    rows.append(
        {
            "model_a": "pretrained",
            "model_b": "alpha.seed0",
            "metric": "euclidean",
            "space": "task_vector",
            "group": "all",
            "distance": 999.0,
        }
    )
    pd.DataFrame(rows).to_parquet(root / "distances.parquet")
    return root


def probe_paths(root):
    return [root / "probe" / m / f"{d}.json" for m, d in itertools.product(MODELS, TASKS)]


def test_matrix_csv_and_figures(tmp_path):
    root = fake_study(tmp_path)
    out = {
        "matrix_path": root / "probe" / "matrix.csv",
        "heatmap_path": root / "figures" / "heat.png",
        "distance_figure_path": root / "figures" / "dist.png",
    }
    probe_figures.write(probe_paths(root), TASKS, root / "distances.parquet", **out)
    matrix = pd.read_csv(out["matrix_path"])
    for column in (
        "model",
        "model_kind",
        "model_dataset",
        "model_task",
        "seed",
        "target_dataset",
        "target_task",
        "loss",
        "accuracy",
        "distance_to_target",
    ):
        assert column in matrix.columns
    assert len(matrix) == len(MODELS) * len(TASKS)
    row = matrix.set_index(["model", "target_dataset"])
    assert row.loc[
        ("alpha.seed1", "gamma"),
        ["model_kind", "model_dataset", "model_task", "seed", "target_task"],
    ].tolist() == ["finetuned", "alpha", "sentiment", 1, "topic"]
    assert row.loc[("pretrained", "alpha"), "model_kind"] == "pretrained"
    # every result next to the label prior and the pretrained model's loss, with a paired interval
    assert (matrix["chance_loss"] == 0.69).all() and (matrix["l2"] == 0.3).all()
    assert (row.xs("pretrained")["loss_minus_pretrained"] == 0).all()
    own = row.loc[("alpha.seed0", "alpha")]
    assert own["loss_minus_pretrained"] == pytest.approx(own["loss"] - own["pretrained_loss"])
    assert own["loss_minus_pretrained_low"] - 1e-12 <= own["loss_minus_pretrained"]
    assert own["loss_minus_pretrained"] <= own["loss_minus_pretrained_high"] + 1e-12 < 0
    # the mean Euclidean (raw, all) distance to the target's own models, itself excluded
    assert row.loc[("alpha.seed0", "alpha"), "distance_to_target"] == 1.0  # only alpha.seed1
    # (1 + 2) / 2, not the task_vector row
    assert row.loc[("pretrained", "alpha"), "distance_to_target"] == 1.5
    assert row.loc[("gamma.seed1", "beta"), "distance_to_target"] == 2.5  # |6-3|, |6-4|
    for figure in (out["heatmap_path"], out["distance_figure_path"]):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


def test_matrix_inputs_are_checked(tmp_path):
    root = fake_study(tmp_path)
    (root / "probe" / "beta.seed1" / "gamma.json").unlink()
    with pytest.raises(WeightspaceError, match=r"beta.seed1/gamma.json is missing"):
        probe_figures.probe_matrix(probe_paths(root), TASKS)
    pd.DataFrame({"model_a": ["a"], "model_b": ["b"], "distance": [1.0]}).to_parquet(
        root / "bad.parquet"
    )
    with pytest.raises(WeightspaceError, match=r"bad.parquet has no column 'metric'"):
        probe_figures.read_distances(root / "bad.parquet")
    with pytest.raises(WeightspaceError, match="metric=euclidean, space=raw, group=layer.0"):
        probe_figures.read_distances(root / "distances.parquet", group="layer.0")
