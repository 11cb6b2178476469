"""Merging (task arithmetic, TIES, DARE via PEFT) on small random encoder files."""

from __future__ import annotations

import pytest
import torch

from weightspace import WeightspaceError
from weightspace.model import merging, weights

SHAPES = {
    "embeddings.word_embeddings.weight": (16, 8),
    "encoder.layer.0.attention.self.query.weight": (8, 8),
    "encoder.layer.0.attention.self.query.bias": (8,),
}


def random_encoder(seed: int, shapes=SHAPES) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def write(path, tensors):
    weights.save(path, tensors, path.stem)
    return path


@pytest.fixture
def models(tmp_path):
    """The pretrained file and three fine-tuned members (pretrained plus a small random delta)."""
    pretrained = random_encoder(0)
    members = []
    for i in (1, 2, 3):
        delta = random_encoder(i)
        tuned = {name: t + 0.01 * delta[name] for name, t in pretrained.items()}
        members.append(write(tmp_path / f"member{i}.safetensors", tuned))
    return write(tmp_path / "pretrained.safetensors", pretrained), members


def test_one_member_at_scale_one_is_that_member(models):
    pretrained, members = models
    expected = weights.load(members[0])
    merged = merging.merge(pretrained, members[:1], "task_arithmetic", scale=1.0)
    assert merged.keys() == expected.keys()
    for name, t in merged.items():
        assert t.dtype == torch.float32
        assert torch.allclose(t, expected[name], rtol=0, atol=1e-6)
    for method in ("ties", "dare_linear", "dare_ties"):
        merged = merging.merge(pretrained, members[:1], method, scale=1.0, density=1.0)
        for name, t in merged.items():
            assert t.dtype == torch.float32
            assert torch.equal(t, expected[name]), (method, name)


def test_task_arithmetic_at_scale_one_over_n_is_the_average(models):
    pretrained, members = models
    merged = merging.merge(pretrained, members, "task_arithmetic", scale=1 / len(members))
    average = weights.average(members)
    for name, t in merged.items():
        assert torch.allclose(t, average[name], rtol=0, atol=1e-6)


def test_ties_by_hand(tmp_path):
    # dyadic values: every difference and mean below is exact in float32
    pre = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.25])
    tau = [
        torch.tensor([0.5, -0.25, 1.0, 0.125, 0.0625]),
        torch.tensor([-1.5, 0.25, -0.125, 0.5, 0.0625]),
        torch.tensor([0.5, -1.0, 0.25, -0.125, 0.0625]),
    ]
    name = "encoder.layer.0.output.dense.bias"
    pretrained = write(tmp_path / "pre.safetensors", {name: pre})
    members = [write(tmp_path / f"m{i}.safetensors", {name: pre + t}) for i, t in enumerate(tau)]
    # density 0.5 of 5 entries: each member keeps its int(2.5) = 2 largest |τ|
    #   kept:  [0.5, 0, 1.0, 0, 0], [-1.5, 0, 0, 0.5, 0], [0.5, -1.0, 0, 0, 0]
    # elected sign by the total (not by the count): sums -0.5, -1.0, 1.0, 0.5, 0 -> -, -, +, +, +
    # disjoint mean over the kept entries of the elected sign (pruned zeros never count):
    #   [-1.5, -1.0, 1.0, 0.5, 0] (entry 0: one agreeing member though two disagree)
    expected = pre + 0.5 * torch.tensor([-1.5, -1.0, 1.0, 0.5, 0.0])
    merged = merging.merge(pretrained, members, "ties", scale=0.5, density=0.5)
    assert torch.equal(merged[name], expected)


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_is_seeded_per_tensor_and_leaves_the_callers_rng_alone(models, tmp_path, method):
    pretrained, members = models
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first = merging.merge(pretrained, members, method, scale=0.5, density=0.5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    again = merging.merge(pretrained, members, method, scale=0.5, density=0.5, seed=7)
    other = merging.merge(pretrained, members, method, scale=0.5, density=0.5, seed=8)
    for name in first:
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
    # a tensor's draws depend on its name and the seed only, not on the other tensors
    name = "encoder.layer.0.attention.self.query.weight"
    only = [
        write(tmp_path / f"only_{p.name}", {name: weights.load(p)[name]})
        for p in (pretrained, *members)
    ]
    alone = merging.merge(only[0], only[1:], method, scale=0.5, density=0.5, seed=7)
    assert torch.equal(alone[name], first[name])


def test_dare_drops_about_half_at_density_one_half(tmp_path):
    name = "encoder.layer.0.intermediate.dense.weight"
    shape = {name: (200, 200)}
    pre = random_encoder(0, shape)[name]
    pretrained = write(tmp_path / "pre.safetensors", {name: pre})
    for i in (1, 2):
        tau = random_encoder(i, shape)[name]
        member = write(tmp_path / f"m{i}.safetensors", {name: pre + tau})
        tau = weights.load(member)[name].double() - pre.double()  # the stored task vector
        merged = merging.merge(pretrained, [member], "dare_linear", scale=1.0, density=0.5)[name]
        dropped = merged == pre
        assert 0.47 < dropped.double().mean().item() < 0.53
        # the kept entries are rescaled by 1 / density
        kept = (pre.double() + 2 * tau).float()
        assert torch.equal(merged[~dropped], kept[~dropped])


def test_merge_to_file_writes_the_merge_and_its_settings(models, tmp_path):
    from safetensors import safe_open

    pretrained, members = models
    out = tmp_path / "merged.safetensors"
    merging.merge_to_file(
        out, pretrained, members, "ties", scale=0.3, density=0.2, seed=5, model_id="merge.ties"
    )
    expected = merging.merge(pretrained, members, "ties", scale=0.3, density=0.2, seed=5)
    written = weights.load(out)
    assert all(torch.equal(written[name], t) for name, t in expected.items())
    with safe_open(str(out), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["model_id"] == "merge.ties"
    assert (metadata["method"], metadata["scale"], metadata["density"]) == ("ties", "0.3", "0.2")
    assert metadata["seed"] == "5"
    assert metadata["members"] == ",".join(str(m) for m in members)


def test_bad_inputs(models, tmp_path):
    pretrained, members = models
    with pytest.raises(WeightspaceError, match="unknown merge method 'mean'.*dare_ties"):
        merging.merge(pretrained, members, "mean", scale=1.0)
    for density in (0.0, -0.5, 1.5):
        with pytest.raises(WeightspaceError, match="density"):
            merging.merge(pretrained, members, "ties", scale=1.0, density=density)
    with pytest.raises(WeightspaceError, match="at least one member"):
        merging.merge(pretrained, [], "ties", scale=1.0)
    with pytest.raises(WeightspaceError, match="missing.safetensors does not exist"):
        merging.merge(pretrained, [tmp_path / "missing.safetensors"], "ties", scale=1.0)

    bad = random_encoder(4)
    bad["encoder.layer.0.attention.self.query.bias"] = torch.zeros(9)
    bad_path = write(tmp_path / "bad_shape.safetensors", bad)
    with pytest.raises(
        WeightspaceError, match=r"bad_shape.safetensors: tensor encoder.layer.0.*query.bias.*\(9,\)"
    ):
        merging.merge(pretrained, [members[0], bad_path], "task_arithmetic", scale=1.0)

    missing = random_encoder(5)
    del missing["embeddings.word_embeddings.weight"]
    missing_path = write(tmp_path / "no_embeddings.safetensors", missing)
    with pytest.raises(
        WeightspaceError, match="no_embeddings.safetensors: no tensor embeddings.word_embeddings"
    ):
        merging.merge(pretrained, [missing_path], "ties", scale=1.0)

    extra = {**random_encoder(6), "pooler.dense.bias": torch.zeros(8)}
    extra_path = write(tmp_path / "extra.safetensors", extra)
    with pytest.raises(WeightspaceError, match="extra.safetensors: tensor pooler.dense.bias"):
        merging.merge(pretrained, [extra_path], "ties", scale=1.0)
