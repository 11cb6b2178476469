"""Linears that skip padding (unpadded.py): for every encoder family the loss and every gradient
equal the padded model's, padded rows are really skipped, and a fine-tune ends where the padded one
does."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import FAMILIES, generated_frame, make_family_source
from weightspace.model import base_model, unpadded
from weightspace.train import finetune


def batch_with_padding(lengths: list[int], width: int, type_ids: bool, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    ids[:, 0] = 101  # [CLS]
    ids = ids * mask  # [PAD] = 0
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([i % 2 for i in range(len(lengths))]),
    }
    if type_ids:
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


def first_layer_linear(model) -> nn.Linear:
    """A Linear of the encoder's first layer (module order differs: XLM-R lists its head first)."""
    return next(m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".0." in n)


def loss_and_grads(model, batch) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the same dropout masks for both models
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_skipping_padding_leaves_loss_and_gradients_unchanged(family, tmp_path):
    base = tmp_path / "base"
    base_model.materialise({"path": str(make_family_source(tmp_path / "source", family))}, base)
    torch.manual_seed(0)
    padded = base_model.load_classifier(base, 2).train()
    torch.manual_seed(0)
    skipping = unpadded.skip_padding(base_model.load_classifier(base, 2).train())
    batch = batch_with_padding([20, 7, 13, 3, 20, 11], width=20, type_ids=FAMILIES[family][2])

    rows_seen = []
    first = first_layer_linear(skipping)
    handle = first.register_forward_hook(lambda _m, _i, out: rows_seen.append(out.detach().clone()))
    loss_a, grads_a = loss_and_grads(padded, batch)
    loss_b, grads_b = loss_and_grads(skipping, batch)
    handle.remove()

    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)
    # the skip really happened: the Linear left its padded rows at zero (a plain Linear adds its
    # bias there)
    padding = batch["attention_mask"] == 0
    assert rows_seen and torch.all(rows_seen[0][padding] == 0)
    assert torch.any(rows_seen[0][~padding] != 0)


def test_outside_a_padded_forward_the_linears_are_plain(tmp_path):
    base = tmp_path / "base"
    base_model.materialise({"path": str(make_family_source(tmp_path / "source", "bert"))}, base)
    torch.manual_seed(0)
    plain = base_model.load_classifier(base, 2).eval()
    torch.manual_seed(0)
    model = unpadded.skip_padding(base_model.load_classifier(base, 2).eval())
    with torch.no_grad():
        model(**batch_with_padding([9, 4, 6], width=9, type_ids=True))
        # the forward hook forgot that batch: the same Linear on a same-shaped input adds its bias
        # to every row
        x = torch.randn(3, 9, first_layer_linear(model).in_features)
        assert torch.equal(first_layer_linear(model)(x), first_layer_linear(plain)(x))
        # a batch without padding runs the ordinary forward: bitwise the plain model's logits
        full = batch_with_padding([9, 9, 9], width=9, type_ids=True)
        assert torch.equal(model(**full).logits, plain(**full).logits)


def test_a_fine_tune_that_skips_padding_ends_where_the_padded_one_does(tiny_base, tmp_path):
    data = tmp_path / "toy"
    data.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        frame = generated_frame(n, seed=seed)
        # lengths vary
        frame["text"] = [" ".join([text] * (1 + i % 3)) for i, text in enumerate(frame["text"])]
        frame.to_parquet(data / f"{split}.parquet", index=False)
    (data / "meta.json").write_text(
        json.dumps({"name": "toy", "task": "t", "num_labels": 2, "label_names": ["neg", "pos"]})
    )
    ends = {}
    for skip in (False, True):
        settings = finetune.Settings(
            epochs=1,
            max_steps=6,
            batch_size=8,
            learning_rate=1e-3,
            max_length=32,
            checkpoint_minutes=None,
            seed=0,
            skip_padding=skip,
        )
        out = tmp_path / f"skip{skip}"
        metrics = finetune.finetune(tiny_base, data, out, settings, threads=1)
        ends[skip] = (metrics, finetune.load_finetuned(out, tiny_base).state_dict())
    (padded, weights_padded), (skipping, weights_skipping) = ends[False], ends[True]
    assert skipping["test"]["loss"] == pytest.approx(padded["test"]["loss"], abs=1e-4)
    for name, tensor in weights_padded.items():
        torch.testing.assert_close(weights_skipping[name], tensor, rtol=1e-3, atol=1e-5, msg=name)
