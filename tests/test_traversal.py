"""Lines, planes, regions and fusion: the plans and the arithmetic of weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightspace import study
from weightspace.model import weights
from weightspace.plan import fusion, traversal
from weightspace.train import fusion_outcomes


def config(**sections):
    base = {
        "seeds": [0, 1],
        "datasets": {"a": {"task": "s"}, "b": {"task": "s"}, "c": {"task": "t"}},
        "interpolation": {
            "alphas": [-0.5, 0.0, 0.5, 1.0, 1.5],
            "planes": {"grid": [0.0, 0.5, 1.0]},
        },
        "region": {"groups": ["dataset", "task"], "samples": 2},
    }
    base.update(sections)
    return base


def write_models(tmp_path, ids, seed=0):
    rng = np.random.default_rng(seed)
    paths = {}
    for mid in ids:
        tensors = {
            "w": torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32),
            "b": torch.tensor(rng.normal(size=(3,)), dtype=torch.float32),
        }
        paths[mid] = tmp_path / f"{mid}.safetensors"
        weights.save(paths[mid], tensors, mid)
    return paths


def test_alpha_zero_and_one_are_the_endpoints_exactly(tmp_path):
    paths = write_models(tmp_path, ["a.seed0", "a.seed1"])
    a, b = weights.load(paths["a.seed0"]), weights.load(paths["a.seed1"])
    ends = {0.0: a, 1.0: b}
    for alpha, expected in ends.items():
        mixed = weights.combine([paths["a.seed0"], paths["a.seed1"]], [1 - alpha, alpha])
        assert all(torch.equal(mixed[k], expected[k]) for k in a)
    half = weights.combine([paths["a.seed0"], paths["a.seed1"]], [0.5, 0.5])
    assert torch.allclose(half["w"], (a["w"] + b["w"]) / 2)


def test_line_endpoints_are_the_models_themselves():
    points = traversal.lines(config())
    by_alpha = {}
    for p in points:
        info = dict(p.info)
        by_alpha.setdefault(info["alpha"], []).append((p.model_id, info))
    for model_id, info in by_alpha[0.0]:
        assert model_id == info["model_a"]  # same id: the cached probe results are shared
    for model_id, info in by_alpha[1.0]:
        assert model_id == info["model_b"]
    assert all(m.startswith("mix.") for m, _ in by_alpha[0.5])
    relations = {dict(p.info)["relation"] for p in points}
    assert relations == set(traversal.RELATIONS)


def test_same_recipe_is_one_model_and_plans_are_stable():
    assert traversal.point_id({"a.seed0": 0.5, "b.seed0": 0.5}) == traversal.point_id(
        {"b.seed0": 0.5, "a.seed0": 0.5}
    )
    assert traversal.point_id({"a.seed0": 1.0}) == "a.seed0"
    assert traversal.all_points(config()) == traversal.all_points(config())
    for mid, recipe in traversal.mix_recipes(config()).items():
        assert study.parse(mid).kind == "mix"
        # affine combinations stay in the model's scale
        assert abs(sum(c for _, c in recipe) - 1.0) < 1e-9


def test_relations_pick_the_right_pairs():
    c = config()
    for a, b in traversal.candidate_pairs(c, "same_dataset"):
        assert study.parse(a).dataset == study.parse(b).dataset
    for a, b in traversal.candidate_pairs(c, "same_task"):
        assert study.parse(a).dataset != study.parse(b).dataset
        assert study.task_of(c, study.parse(a).dataset) == study.task_of(c, study.parse(b).dataset)
    for a, b in traversal.candidate_pairs(c, "cross_task"):
        assert study.task_of(c, study.parse(a).dataset) != study.task_of(c, study.parse(b).dataset)


def test_lines_go_beyond_their_ends_only_for_the_relations_that_extrapolate():
    alphas = [-0.5, 0.0, 0.5, 1.0, 1.5]
    c = config(interpolation={"alphas": alphas, "extrapolate": ["same_dataset"]})
    by_relation = {}
    for point in traversal.lines(c):
        row = point.as_row()
        by_relation.setdefault(row["relation"], set()).add(row["alpha"])
    assert by_relation["same_dataset"] == set(alphas)
    for relation in ("same_task", "cross_task", "pretrained"):
        assert by_relation[relation] == {0.0, 0.5, 1.0}, relation
    everywhere = {
        p.as_row()["alpha"]
        for p in traversal.lines(config())
        if p.as_row()["relation"] == "cross_task"
    }
    assert everywhere == set(alphas)  # the default: every relation extrapolates


def test_region_has_centroid_samples_and_members():
    points = [p for p in traversal.region_points(config()) if dict(p.info)["group"] == "task:s"]
    kinds = [dict(p.info)["kind"] for p in points]
    assert (
        kinds.count("centroid") == 1 and kinds.count("sample") == 2 and kinds.count("member") == 4
    )
    centroid = next(p for p in points if dict(p.info)["kind"] == "centroid")
    assert all(abs(c - 0.25) < 1e-12 for _, c in centroid.recipe)


def test_a_one_dataset_task_has_no_region_of_its_own_beside_its_datasets():
    """A task of one dataset has the same members as that dataset's region: studied twice, the
    centroid claim would count one group as two units. Without dataset regions it is studied."""
    c = _grown(paper_like(), datasets={"sms_spam": {"task": "spam"}})
    groups = {dict(p.info)["group"] for p in traversal.region_points(c)}
    assert "dataset:sms_spam" in groups and "task:spam" not in groups
    c["region"] = {**c.get("region", {}), "groups": ["task"]}
    assert "task:spam" in {dict(p.info)["group"] for p in traversal.region_points(c)}


def _grown(base: dict, datasets: dict | None = None, seeds=None) -> dict:
    grown = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    grown["datasets"] = {**base["datasets"], **(datasets or {})}
    grown["seeds"] = list(base["seeds"]) + list(seeds or [])
    return grown


def _unchanged_region_groups(before: dict, after: dict) -> set[str]:
    members = [
        {dict(p.info)["group"]: set() for p in traversal.region_points(c)} for c in (before, after)
    ]
    for c, groups in zip((before, after), members):
        for p in traversal.region_points(c):
            groups[dict(p.info)["group"]].update(m for m, _ in p.recipe)
    return {g for g, m in members[0].items() if members[1].get(g) == m}


def _survives(before: dict, after: dict) -> None:
    """Every line and plane point of `before` is in `after` with the same id, recipe and evaluation
    datasets; so is every region point of a group whose members did not change. No new point among
    old models only."""
    old, new = traversal.all_points(before), traversal.all_points(after)
    kept = _unchanged_region_groups(before, after)
    new_set = set(new)
    for point in old:
        info = dict(point.info)
        if info["study"] != "region" or info["group"] in kept:
            assert point in new_set, info
    old_models = set(study.finetuned_ids(before)) | {study.PRETRAINED}
    old_lines = {p for p in old if dict(p.info)["study"] in ("line", "plane")}
    for point in new:
        info = dict(point.info)
        ends = {info[k] for k in ("model_a", "model_b", "model_c") if k in info}
        if info["study"] in ("line", "plane") and ends <= old_models:
            # no new line or plane between models that were there
            assert point in old_lines, dict(point.info)


def paper_like(n_datasets: int = 12, seeds=(0, 1, 2)) -> dict:
    tasks = ("sentiment", "topic", "nli", "twitter")
    return config(
        seeds=list(seeds),
        datasets={f"d{i:02d}": {"task": tasks[i % len(tasks)]} for i in range(n_datasets)},
        interpolation={
            "alphas": [0.0, 0.5, 1.0],
            "pairs_per_relation": 1,
            "fraction": {
                "same_dataset": 0.5,
                "same_task": 0.5,
                "cross_task": 0.2,
                "pretrained": 0.5,
            },
            "planes": {
                "kinds": ["same_task", "pretrained"],
                "fraction": 0.5,
                "grid": [0.0, 0.5, 1.0],
            },
        },
        region={"groups": ["dataset", "task"], "samples": 2},
    )


@pytest.mark.parametrize(
    "grow",
    [
        pytest.param(dict(datasets={"sms_spam": {"task": "spam"}}), id="a dataset of a new task"),
        pytest.param(dict(datasets={"d99": {"task": "topic"}}), id="a dataset of an existing task"),
        pytest.param(
            dict(datasets={"a00": {"task": "nli"}, "zz": {"task": "sentiment"}}), id="two datasets"
        ),
        pytest.param(dict(seeds=[3]), id="a seed"),
        pytest.param(
            dict(seeds=[7, 11], datasets={"e": {"task": "twitter"}}), id="seeds and a dataset"
        ),
    ],
)
def test_adding_a_dataset_or_a_seed_keeps_every_existing_point(grow):
    before = paper_like()
    after = _grown(before, **grow)
    _survives(before, after)
    assert len(traversal.all_points(after)) > len(traversal.all_points(before))
    # the mixes of the old study keep their recipes, so their cached features and probe results stay
    # valid
    old, new = traversal.mix_recipes(before), traversal.mix_recipes(after)
    kept_groups = _unchanged_region_groups(before, after)
    for point in traversal.all_points(before):
        info = dict(point.info)
        if point.model_id in old and (info["study"] != "region" or info["group"] in kept_groups):
            assert new[point.model_id] == old[point.model_id]
    # and the evaluations they need: only new (model, dataset) pairs are added to those kept
    assert {
        e for e in traversal.evaluations(before) if e[0] in new or not e[0].startswith("mix.")
    } <= traversal.evaluations(after)


def test_a_new_task_changes_no_region_group_and_a_new_seed_only_regroups():
    before = paper_like()
    new_task = _grown(before, datasets={"sms_spam": {"task": "spam"}})
    old_groups = {dict(p.info)["group"] for p in traversal.region_points(before)}
    # nothing of the old study moves at all
    assert _unchanged_region_groups(before, new_task) == old_groups
    assert set(traversal.mix_recipes(before)) <= set(traversal.mix_recipes(new_task))
    # a new seed joins every group: each is a new group with its own samples (the old ones are not
    # re-drawn)
    assert _unchanged_region_groups(before, _grown(before, seeds=[3])) == set()


def test_dataset_order_in_the_config_does_not_matter():
    c = paper_like()
    reordered = dict(
        c, datasets=dict(reversed(list(c["datasets"].items()))), seeds=list(reversed(c["seeds"]))
    )
    assert set(traversal.all_points(c)) == set(traversal.all_points(reordered))


def test_the_fraction_sets_the_rate_and_every_studied_group_has_its_lines():
    c = paper_like(n_datasets=40)
    groups = {r: traversal.line_groups(c, r) for r in traversal.RELATIONS}
    fraction = c["interpolation"]["fraction"]
    for relation in traversal.RELATIONS:
        chosen = traversal.chosen_pairs(c, relation)
        assert set(chosen) <= set(traversal.candidate_pairs(c, relation))
        # a hash is a fair coin: the count is near fraction × groups (a 4-sigma band)
        n, p = len(groups[relation]), fraction[relation]
        assert abs(len(chosen) - n * p) <= 4 * (n * p * (1 - p)) ** 0.5 + 1, (
            relation,
            len(chosen),
            n,
        )
    everything = dict(c, interpolation=dict(c["interpolation"], fraction=1.0, pairs_per_relation=2))
    for relation in traversal.RELATIONS:
        assert len(traversal.chosen_pairs(everything, relation)) == 2 * len(groups[relation])
    nothing = dict(c, interpolation=dict(c["interpolation"], fraction=0.0))
    assert traversal.lines(nothing) == []


def test_region_samples_depend_on_the_members_only():
    c = paper_like()
    samples = {
        p.model_id: p.recipe for p in traversal.region_points(c) if dict(p.info)["kind"] == "sample"
    }
    other_salt = dict(c, region=dict(c["region"], seed=5))
    assert samples and not set(samples) & {p.model_id for p in traversal.region_points(other_salt)}
    # no two groups share a draw
    assert len({tuple(sorted(r)) for r in samples.values()}) == len(samples)


def test_mean_of_identical_models_is_that_model(tmp_path):
    paths = write_models(tmp_path, ["a.seed0"])
    copies = [paths["a.seed0"]] * 3
    fused = weights.average(copies)
    original = weights.load(paths["a.seed0"])
    assert all(torch.allclose(fused[k], original[k], atol=0, rtol=1e-7) for k in original)


def test_average_is_element_wise_over_models_only(tmp_path):
    paths = write_models(tmp_path, ["a.seed0", "b.seed0", "c.seed0"])
    fused = weights.average(paths.values())
    stacked = torch.stack([weights.load(p)["w"] for p in paths.values()])
    assert torch.allclose(fused["w"], stacked.mean(dim=0))
    assert fused["w"].shape == (4, 3)  # not torch.mean over everything (the authors' bug)


def test_fusion_never_includes_the_target():
    c = config(fusion={"scopes": ["task", "all"]})
    bases = fusion.fused_bases(c)
    assert bases
    for fused in bases:
        assert all(study.parse(m).dataset != fused.target for m in fused.members)
        if fused.scope == "task":
            assert all(
                study.task_of(c, study.parse(m).dataset) == study.task_of(c, fused.target)
                for m in fused.members
            )
    # c is alone in its task: no task-scope base for it, only the all-scope one
    assert {f.scope for f in bases if f.target == "c"} == {"all"}


def test_fusion_runs_pair_every_fused_base_with_the_pretrained_start():
    c = config(
        fusion={
            "scopes": ["all"],
            "modes": ["full", "bitfit"],
            "train_sizes": [8, None],
            "seeds": [0],
        }
    )
    runs = fusion.runs(c)
    assert {r.base for r in runs if r.target == "a"} == {"pretrained", "fused.a.all"}
    assert len(runs) == 3 * 2 * 2 * 2


def test_wins_pair_seeds_and_count_targets():
    rows = []
    for target, gain in (("a", 0.1), ("b", -0.05)):
        for seed in (0, 1):
            rows.append(
                dict(
                    target=target,
                    base="pretrained",
                    scope="pretrained",
                    mode="full",
                    size="all",
                    seed=seed,
                    accuracy=0.5,
                    loss=1.0,
                    validation_accuracy=0.5,
                )
            )
            rows.append(
                dict(
                    target=target,
                    base=f"fused.{target}.all",
                    scope="all",
                    mode="full",
                    size="all",
                    seed=seed,
                    accuracy=0.5 + gain,
                    loss=0.9,
                    validation_accuracy=0.5,
                )
            )
    wins = fusion_outcomes.wins_table(fusion_outcomes.summary_table(rows))
    assert wins.set_index("target")["gain"].round(6).to_dict() == {"a": 0.1, "b": -0.05}
    overview = fusion_outcomes.wins_overview(wins)
    assert overview.iloc[0][["targets", "wins", "ties", "losses"]].tolist() == [2, 1, 0, 1]
