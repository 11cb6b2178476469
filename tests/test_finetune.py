"""Fine-tuning: it learns, it is deterministic, and a killed run resumes to the same weights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import generated_frame
from weightspace import WeightspaceError
from weightspace.model import precision as numerics
from weightspace.model import weights
from weightspace.train import finetune


def write_dataset(folder: Path, n_train=96, seed=0, pairs=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (
        ("train", n_train, seed),
        ("validation", 32, seed + 1),
        ("test", 32, seed + 2),
    ):
        generated_frame(n, seed=s, pairs=pairs).to_parquet(folder / f"{split}.parquet", index=False)
    meta = {
        "name": folder.name,
        "task": "sentiment",
        "num_labels": 2,
        "label_names": ["neg", "pos"],
        "has_text_pair": pairs,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# logs between checkpoints
SETTINGS = dict(
    epochs=2, batch_size=8, learning_rate=5e-4, max_length=24, checkpoint_every=4, log_every=3
)


def run(tiny_base, data, out, weights_path=None, **overrides):
    settings = finetune.Settings(**{**SETTINGS, **overrides})
    return finetune.finetune(
        tiny_base, data, out, settings, threads=1, model_id="toy.seed0", weights_path=weights_path
    )


def test_finetune_writes_every_output_and_learns(tiny_base, tmp_path, precision):
    data = write_dataset(tmp_path / "toy", n_train=160)
    metrics = run(
        tiny_base, data, tmp_path / "out", epochs=4, learning_rate=1e-3, mixed_precision=precision
    )
    assert metrics["precision"] == {"no": "fp32", "bf16": "bf16"}[precision]
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "train_log.csv", "metrics.json"):
        assert (out / name).exists(), name
    assert not (out / "resume").exists(), "checkpoints are removed once the run completes"
    assert metrics["steps"] == 4 * 20
    # the label is carried by sentiment words
    assert metrics["validation"]["accuracy"] >= 0.75, metrics
    assert metrics["test"]["n"] == 32
    log = pd.read_csv(out / "train_log.csv")
    assert log["val_loss"].notna().sum() == 4  # validated once per epoch
    assert log["learning_rate"].iloc[-1] < log["learning_rate"].max()  # linear decay
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}


def test_same_seed_gives_bitwise_identical_weights(tiny_base, tmp_path, precision):
    data = write_dataset(tmp_path / "toy")
    run(tiny_base, data, tmp_path / "a", mixed_precision=precision)
    run(tiny_base, data, tmp_path / "b", mixed_precision=precision)
    run(tiny_base, data, tmp_path / "c", seed=1, mixed_precision=precision)
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_head_seed_shares_the_head_across_seeds_and_keeps_their_data_order(tiny_base, tmp_path):
    """finetune.head_seed: every seed starts from one head; the batches still follow the run's
    seed."""
    data = write_dataset(tmp_path / "toy")
    for name, seed, head_seed in (("a", 0, 7), ("b", 1, 7), ("c", 1, None)):
        # a learning rate of ~0 leaves the head where it was initialised
        run(
            tiny_base,
            data,
            tmp_path / name,
            seed=seed,
            head_seed=head_seed,
            learning_rate=1e-12,
            epochs=1,
        )
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    head = [k for k in a if k.startswith("classifier.")]
    assert head
    assert all(torch.allclose(a[k], b[k], atol=1e-8) for k in head)
    assert not all(torch.allclose(b[k], c[k], atol=1e-3) for k in head)
    losses = [pd.read_csv(tmp_path / x / "train_log.csv")["train_loss"].tolist() for x in "ab"]
    assert losses[0] != losses[1], "the seeds' batches (and dropout) differ"
    # unset, it is not part of the recipe: checkpoints and params of studies made before it still
    # match
    assert "head_seed" not in finetune.Settings().recipe()
    assert finetune.Settings(head_seed=7).recipe()["head_seed"] == 7


def test_validating_once_at_the_end_gives_the_same_weights_and_metrics(
    tiny_base, tmp_path, precision
):
    """finetune.validation: end skips the per-epoch passes (nothing but the learning curve reads
    them)."""
    data = write_dataset(tmp_path / "toy")
    every = run(tiny_base, data, tmp_path / "epoch", mixed_precision=precision)
    once = run(tiny_base, data, tmp_path / "end", validation="end", mixed_precision=precision)
    a, b = (load_file(str(tmp_path / x / "model.safetensors")) for x in ("epoch", "end"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert once["validation"] == every["validation"] and once["test"] == every["test"]
    assert (
        pd.read_csv(tmp_path / "epoch" / "train_log.csv")["val_loss"].notna().sum()
        == SETTINGS["epochs"]
    )
    assert (
        "val_loss" not in pd.read_csv(tmp_path / "end" / "train_log.csv")
        or pd.read_csv(tmp_path / "end" / "train_log.csv")["val_loss"].isna().all()
    )


def test_validating_at_the_end_only_refuses_early_stopping(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    with pytest.raises(WeightspaceError, match="early_stopping_patience"):
        run(tiny_base, data, tmp_path / "out", validation="end", early_stopping_patience=1)


def test_sentence_pairs_train(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "pairs", pairs=True)
    metrics = run(tiny_base, data, tmp_path / "out", epochs=1)
    assert metrics["steps"] == 12


def test_max_steps_end_training(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    assert run(tiny_base, data, tmp_path / "a", max_steps=5)["steps"] == 5


@pytest.mark.parametrize(
    "losses, patience, stopped_after, best",
    [
        ([1.0, 0.8, 0.9, 0.7, 0.6, 0.5], 1, 3, 2),  # one epoch without improvement stops
        # two are needed: the dip at epoch 3 is ridden out
        ([1.0, 0.8, 0.9, 0.7, 0.6, 0.5], 2, 6, 6),
        # equal or slightly better than the last is no improvement
        ([1.0, 0.9, 0.95, 0.95, 0.91, 0.5], 3, 5, 2),
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 1, 6, 6),  # always improving: every epoch runs
    ],
)
def test_early_stopping_follows_the_validation_loss(
    tiny_base, tmp_path, monkeypatch, losses, patience, stopped_after, best
):
    """The validation losses are scripted, so the trajectory is the test's, not what a random tiny
    model happens to do on a CPU (on a Zen 4 in bf16 the old test's learning rate 0.5 never
    triggered the stop). The weights kept are the best epoch's."""
    data = write_dataset(tmp_path / "toy")
    real_load_split, real_tokenize, real_evaluate = (
        finetune.load_split,
        finetune.tokenize_frame,
        finetune.evaluate,
    )
    validation = []  # the tokenized validation split, to tell its evaluation from the test split's
    seen = []  # the weights at each epoch-end validation

    def load_split(data_dir, split):
        frame = real_load_split(data_dir, split)
        frame.attrs["split"] = split
        return frame

    def tokenize(tokenizer, frame, max_length, labels=False):
        examples = real_tokenize(tokenizer, frame, max_length, labels)
        if frame.attrs.get("split") == "validation":
            validation.append(examples)
        return examples

    def evaluate(model, examples, *args):
        if len(seen) < len(losses) and examples is validation[0]:
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return {"loss": losses[len(seen) - 1], "accuracy": 0.5, "n": len(examples)}
        return real_evaluate(model, examples, *args)

    monkeypatch.setattr(finetune, "load_split", load_split)
    monkeypatch.setattr(finetune, "tokenize_frame", tokenize)
    monkeypatch.setattr(finetune, "evaluate", evaluate)
    metrics = run(tiny_base, data, tmp_path / "out", epochs=6, early_stopping_patience=patience)
    assert metrics["epochs_completed"] == stopped_after
    assert metrics["best_epoch"] == best
    kept = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(kept[k], seen[best - 1][k]) for k in kept), (
        "the best epoch's weights are kept"
    )
    if best != stopped_after:
        # not the last epoch's
        assert not all(torch.equal(kept[k], seen[stopped_after - 1][k]) for k in kept)
    log = pd.read_csv(tmp_path / "out" / "train_log.csv")
    assert log["val_loss"].dropna().tolist() == losses[:stopped_after]


def test_bitfit_trains_only_biases_and_head(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    run(tiny_base, data, tmp_path / "out", trainable="bitfit", epochs=1)
    tuned = weights.encoder_weights(finetune.load_finetuned(tmp_path / "out", tiny_base))
    base = weights.encoder_weights(finetune.base_model.load_encoder(tiny_base))
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith("bias") for k in changed), sorted(changed)[:5]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from weightspace.train import finetune
    kill_at = int(sys.argv[4])
    calls = [0]
    real_collate = finetune.collate
    def collate(examples, pad_id):
        # training batches are settings.batch_size long; evaluation batches are twice that
        if len(examples) <= 8:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_collate(examples, pad_id)
    finetune.collate = collate
    settings = finetune.Settings(**{SETTINGS})
    finetune.finetune(sys.argv[1], sys.argv[2], sys.argv[3], settings, threads=1, \
model_id="toy.seed0",
                      weights_path=sys.argv[3] + "/encoder.safetensors")
    """
).replace("{SETTINGS}", repr(SETTINGS))


def test_killed_run_resumes_to_identical_weights(tiny_base, tmp_path, precision):
    data = write_dataset(tmp_path / "toy")
    straight = tmp_path / "straight"
    run(
        tiny_base,
        data,
        straight,
        weights_path=straight / "encoder.safetensors",
        mixed_precision=precision,
    )
    script = tmp_path / "killer.py"
    script.write_text(
        KILLER.replace(repr(SETTINGS), repr({**SETTINGS, "mixed_precision": precision}))
    )
    out = tmp_path / "resumed"
    # killed at the 19th training batch: the checkpoint of step 16 survives, steps 17-18 are lost
    first = subprocess.run([sys.executable, str(script), str(tiny_base), str(data), str(out), "19"])
    assert first.returncode == -9
    assert (out / "resume" / "checkpoint.pt").exists()
    assert not (out / "metrics.json").exists(), "a killed job must not look finished"
    second = subprocess.run([sys.executable, str(script), str(tiny_base), str(data), str(out), "0"])
    assert second.returncode == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 16
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the training log too: the loss accumulated before the kill was checkpointed with the rest
    columns = ["step", "epoch", "learning_rate", "train_loss", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "straight" / "train_log.csv")[columns],
        pd.read_csv(out / "train_log.csv")[columns],
    )
    # and the files byte for byte, written by another process than the straight run's: their bytes
    # depend on their contents only, so content-keyed caches downstream do not take the resumed
    # weights for new ones
    for name in ("model.safetensors", "encoder.safetensors", "config.json"):
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name


TERMINATOR = KILLER.replace(
    "os.kill(os.getpid(), signal.SIGKILL)", "os.kill(os.getpid(), signal.SIGTERM)"
)


def test_sigterm_writes_the_only_checkpoint_and_the_retry_ends_identical(tiny_base, tmp_path):
    """By time only (no step interval, minutes far off): no checkpoint but the one SIGTERM asks
    for."""
    data = write_dataset(tmp_path / "toy")
    policy = dict(checkpoint_every=None, checkpoint_minutes=60)
    run(tiny_base, data, tmp_path / "straight", **policy)
    script = tmp_path / "terminator.py"
    script.write_text(TERMINATOR.replace(repr(SETTINGS), repr({**SETTINGS, **policy})))
    out = tmp_path / "stopped"
    first = subprocess.run(
        [sys.executable, str(script), str(tiny_base), str(data), str(out), "7"],
        capture_output=True,
        text=True,
    )
    assert first.returncode != 0 and "Stopped" in first.stderr, first.stderr[-2000:]
    assert not (out / "metrics.json").exists()
    second = subprocess.run([sys.executable, str(script), str(tiny_base), str(data), str(out), "0"])
    assert second.returncode == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 7  # the step the signal arrived in, nothing lost
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_by_time(tiny_base, tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "toy")
    saved = []
    real_save = finetune.save_checkpoint
    monkeypatch.setattr(
        finetune, "save_checkpoint", lambda *a, **k: (saved.append(a[-2].step), real_save(*a, **k))
    )
    run(tiny_base, data, tmp_path / "never", checkpoint_every=None, checkpoint_minutes=None)
    assert saved == []
    run(tiny_base, data, tmp_path / "always", checkpoint_every=None, checkpoint_minutes=1e-9)
    # every step is past the (tiny) interval, and so is each epoch's end (after its validation); 2
    # epochs of 12 steps
    assert saved == list(range(1, 13)) + [12] + list(range(13, 25)) + [24]
    # the checkpoint policy is not the recipe: a checkpoint made under another policy is resumed
    a = finetune.Settings(**{**SETTINGS, "checkpoint_minutes": 1.0, "checkpoint_every": None})
    b = finetune.Settings(**{**SETTINGS, "checkpoint_minutes": 10.0})
    files = [data / "train.parquet"]
    assert finetune.fingerprint(a, *files) == finetune.fingerprint(b, *files)
    assert finetune.fingerprint(a, *files) != finetune.fingerprint(a, *files, precision="bf16")


def test_an_unknown_precision_is_named(tiny_base, tmp_path):
    with pytest.raises(finetune.WeightspaceError, match="finetune.mixed_precision"):
        run(tiny_base, write_dataset(tmp_path / "toy"), tmp_path / "out", mixed_precision="fp8")
    # the names metrics.json records
    assert numerics.resolve("cpu", "no", choices=finetune.PRECISIONS) == "fp32"


def test_bf16_on_cpu_trains_and_says_so(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    metrics = run(tiny_base, data, tmp_path / "bf16", epochs=1, mixed_precision="bf16")
    assert metrics["precision"] == "bf16" and metrics["steps"] == 12
    assert metrics["cpu"] and metrics["train_cpu_seconds"] > 0
    assert all(
        t.dtype == torch.float32
        for t in load_file(str(tmp_path / "bf16" / "model.safetensors")).values()
    )


def test_finetune_writes_the_encoder_weights_an_extraction_would(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    out = tmp_path / "toy_ft" / "seed0"
    finetune.finetune(
        tiny_base,
        data,
        out,
        finetune.Settings(**{**SETTINGS, "epochs": 1}),
        threads=1,
        model_id="toy_ft.seed0",
        weights_path=tmp_path / "direct.safetensors",
    )
    weights.extract(tiny_base, out, tmp_path / "extracted.safetensors")
    direct, extracted = (
        load_file(str(tmp_path / f"{x}.safetensors")) for x in ("direct", "extracted")
    )
    assert sorted(direct) == sorted(extracted)
    assert all(torch.equal(direct[k], extracted[k]) for k in direct)
    from safetensors import safe_open

    with (
        safe_open(str(tmp_path / "direct.safetensors"), "pt") as a,
        safe_open(str(tmp_path / "extracted.safetensors"), "pt") as b,
    ):
        assert a.metadata() == b.metadata()


def test_checkpoint_of_another_recipe_is_ignored(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(script), str(tiny_base), str(data), str(out), "10"])
    assert (out / "resume" / "checkpoint.pt").exists()
    metrics = run(tiny_base, data, out, learning_rate=1e-4)  # another recipe: start over
    assert metrics["resumed_from_step"] is None


def test_extracted_encoder_weights_drop_the_head(tiny_base, tmp_path):
    data = write_dataset(tmp_path / "toy")
    run(tiny_base, data, tmp_path / "toy_ft" / "seed0", epochs=1)
    shapes = weights.extract(tiny_base, tmp_path / "toy_ft" / "seed0", tmp_path / "w.safetensors")
    pre = weights.extract(tiny_base, None, tmp_path / "p.safetensors")
    assert set(shapes) == set(pre)
    assert not any(name.startswith("classifier") for name in shapes)
    assert all(t.dtype == torch.float32 for t in weights.load(tmp_path / "w.safetensors").values())
