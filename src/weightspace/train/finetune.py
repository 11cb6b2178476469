"""Full fine-tuning of the base on one dataset: deterministic, resumable, with a new head.

The loop is plain PyTorch (no Trainer) so that every source of randomness is ours to
seed and to checkpoint: the head's initialisation and dropout follow the global torch
RNG (seeded, saved in checkpoints), the data order of epoch e is a permutation drawn
from a generator seeded by (seed, e), so a resumed run replays exactly the batches an
uninterrupted run would have seen and ends with bitwise identical weights on CPU.

``finetune`` is the entry point: it loads the inputs (``load_inputs``, ``build_model``), lets a
``TrainingRun`` (model, optimizer, scheduler, position in the data order, RNG, timers) resume and
train, and writes the outputs (``write_outputs``). Checkpoints (model, optimizer, scheduler, RNG
states: ~3x the model's size) are written every ``checkpoint_minutes`` of training and when the job
is asked to stop (SIGTERM: a SLURM time limit, a Ctrl-C of Snakemake), not every few steps;
``checkpoint_every`` adds a step interval (tests). Precision: ``mixed_precision`` autocasts to bf16
on a CPU only where it computes bf16 natively (model/precision.py) or when asked to; on AVX2-only
CPUs bf16 is emulated and far slower.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from weightspace import WeightspaceError, hardware
from weightspace.atomic import atomic_path, write_csv, write_json, write_safetensors
from weightspace.model import base_model, unpadded
from weightspace.model import precision as numerics
from weightspace.model.encoding import collate, tokenize_frame
from weightspace.progress import Progress

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass
class Settings:
    """The fine-tuning recipe (config.yaml `finetune:` plus the dataset's max_length)."""

    seed: int = 0
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    early_stopping_patience: int | None = None
    # minutes of training between checkpoints (None: only on SIGTERM)
    checkpoint_minutes: float | None = 10.0
    checkpoint_every: int | None = None  # steps between checkpoints as well (None: by time only)
    # epoch: after every epoch (a learning curve; early stopping reads it) | end: once
    validation: str = "epoch"
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16 (see model/precision.py)
    max_length: int = 128
    trainable: str = "all"  # all | bitfit (biases and head only)
    # a seeded, stratified subset of the training split (few-shot runs)
    train_size: int | None = None
    # None: the head's initialisation follows `seed` (the paper); an int: shared by every seed
    head_seed: int | None = None
    # Linears compute on real tokens only (unpadded.py): same result, fewer FLOPs
    skip_padding: bool = True
    log_every: int = 10

    @classmethod
    def from_config(cls, section: dict, **overrides) -> Settings:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in section.items() if k in known}
        values.update(overrides)
        return cls(**values)

    def recipe(self) -> dict:
        """What decides the trained weights (and so what a checkpoint must match): all but the run
        policy. A head_seed of None is left out, so the recipes (and checkpoints) of studies made
        before it existed still match."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k not in RUN_POLICY and not (k == "head_seed" and v is None)
        }

    def check(self) -> None:
        """What study.check says of a config, said again here:
        finetune() is also called without one (tests, benchmarks)."""
        if self.validation not in ("epoch", "end"):
            raise WeightspaceError(
                f"finetune.validation: '{self.validation}' is not 'epoch' or 'end'"
            )
        if self.validation == "end" and self.early_stopping_patience:
            raise WeightspaceError(
                "finetune.validation: 'end' leaves early stopping "
                "(finetune.early_stopping_patience) no validation loss to read; use 'epoch'"
            )


# how a run checkpoints and how often it validates: the weights do not depend on it
# (a validation pass draws no random numbers), so the scripts read it from the config and
# changing it reruns nothing
RUN_POLICY = ("checkpoint_minutes", "checkpoint_every", "validation")
PRECISIONS = numerics.SETTINGS  # the finetune.mixed_precision settings


class Stopped(Exception):
    """The job was asked to stop (SIGTERM, e.g. a SLURM time limit); a checkpoint was saved."""


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    log_rows: list = field(default_factory=list)
    resumed_from_step: int | None = None
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0  # CPU time of this process (all its threads) while training
    eval_seconds: float = 0.0  # validation and test passes: with train_seconds, the job's compute
    # the loss since the last log row: checkpointed so that a resumed run logs what an
    # uninterrupted one does
    running_loss: float = 0.0
    running_count: int = 0

    def take_train_loss(self) -> float | None:
        """The mean training loss since the last log row (None if no step since), and start anew."""
        mean = self.running_loss / self.running_count if self.running_count else None
        self.running_loss, self.running_count = 0.0, 0
        return mean


# ---------------------------------------------------------------- data


def load_split(data_dir: Path, split: str) -> pd.DataFrame:
    path = Path(data_dir) / f"{split}.parquet"
    if not path.exists():
        raise WeightspaceError(f"prepared data file {path} is missing; run prepare_dataset first")
    return pd.read_parquet(path)


def subsample(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A seeded subset with every label kept where possible
    (the same for every base, so runs compare).

    The rows, in their order, of scikit-learn's ``train_test_split(frame, train_size=size,
    random_state=seed, stratify=...)`` (stratified where every label has two rows and ``size``
    covers the labels), drawn by the same algorithm in numpy: importing scikit-learn (and with it
    scipy.stats) cost a few-shot job ~0.7-1.0 s. tests/test_subsample.py compares the two.
    """
    if not size or size >= len(frame):
        return frame
    counts = frame["label"].value_counts()
    stratify = counts.min() >= 2 and size >= len(counts)
    labels = frame["label"].to_numpy() if stratify else None
    return frame.iloc[_train_positions(len(frame), size, seed, labels)].reset_index(drop=True)


def _train_positions(n: int, size: int, seed: int, labels=None) -> np.ndarray:
    """The training rows' positions of scikit-learn 1.9.1's ShuffleSplit (no ``labels``) or
    StratifiedShuffleSplit, first split, ``train_size=size``, the rest the test rows."""
    if not 0 < size < n:
        raise ValueError(f"train_size={size} should be positive and smaller than the {n} rows")
    rng = np.random.RandomState(seed)
    n_test = n - size
    if labels is None:
        return rng.permutation(n)[n_test : n_test + size]
    classes, y, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(size, n_test) < len(classes):
        raise ValueError(
            f"cannot stratify {size} of {n} rows: {len(classes)} labels need two rows each and "
            "as many training and test rows"
        )
    class_indices = np.split(np.argsort(y, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, size, rng)
    _approximate_mode(counts - n_i, n_test, rng)  # the test rows' draws: the RNG moves as sklearn's
    train = []
    for i in range(len(classes)):
        permuted = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(permuted[: n_i[i]])
    return rng.permutation(train)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng) -> np.ndarray:
    """scikit-learn's utils.extmath._approximate_mode: rows per class of ``n_draws`` drawn
    in proportion, the rounding's ties broken by ``rng``."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


@dataclass
class Inputs:
    """A run's data, tokenized (examples with their labels),
    and the files a checkpoint must match."""

    meta: dict
    tokenizer: object
    pad_id: int
    train: list[dict]
    validation: list[dict]
    test: list[dict]
    files: list[Path]


def load_inputs(
    base_dir: Path, data_dir: Path, settings: Settings, init_weights: Path | None = None
) -> Inputs:
    """The dataset's splits (the training split subsampled to ``train_size``),
    tokenized with the base's tokenizer."""
    meta = json.loads((data_dir / "meta.json").read_text())
    tokenizer = base_model.load_tokenizer(base_dir)
    train = tokenize_frame(
        tokenizer,
        subsample(load_split(data_dir, "train"), settings.train_size, settings.seed),
        settings.max_length,
        labels=True,
    )
    validation = tokenize_frame(
        tokenizer, load_split(data_dir, "validation"), settings.max_length, labels=True
    )
    test = tokenize_frame(tokenizer, load_split(data_dir, "test"), settings.max_length, labels=True)
    if not train:
        raise WeightspaceError(
            f"dataset {meta.get('name', data_dir.name)}: the training split is empty"
        )
    files = [data_dir / f"{s}.parquet" for s in ("train", "validation", "test")] + [
        base_dir / "config.json"
    ]
    return Inputs(
        meta,
        tokenizer,
        base_model.pad_id(tokenizer),
        train,
        validation,
        test,
        files + ([Path(init_weights)] if init_weights else []),
    )


# ---------------------------------------------------------------- the model


def build_model(
    base_dir: Path,
    meta: dict,
    settings: Settings,
    device: torch.device,
    precision: str,
    init_weights: str | Path | None = None,
):
    """The classifier to train, on ``device``: the base
    (or ``init_weights``' encoder) with a new head.

    Seeds the global RNGs first: the head's initialisation draws from torch's, and what the run
    draws next (dropout) follows the seed."""
    from weightspace.model import weights as encoder_files

    torch.manual_seed(settings.seed if settings.head_seed is None else settings.head_seed)
    random.seed(settings.seed)
    start = encoder_files.load(init_weights) if init_weights else None
    model = base_model.load_classifier(base_dir, meta["num_labels"], encoder_weights=start)
    if settings.head_seed is not None:
        # one head for every seed; dropout still follows the run's seed
        torch.manual_seed(settings.seed)
    hardware.attention_for_dynamic_shapes(device)
    # Skipping padding pays where matmuls dominate a step: on a CPU (vader_tweets 1.38x) and in fp32
    # on a GPU (1.25-1.29x on an H100); in bf16 on a GPU the gather and scatter around each Linear
    # cost more than the FLOPs they save (0.68-0.96x there, benchmarks/cuda_check.py), so it stays
    # off. The loss is the same either way.
    if settings.skip_padding and (device.type == "cpu" or precision == "fp32"):
        unpadded.skip_padding(model)
    model.config.id2label = {i: name for i, name in enumerate(meta["label_names"])}
    model.config.label2id = {name: i for i, name in enumerate(meta["label_names"])}
    return model.to(device).train()


@torch.inference_mode()
def evaluate(model, examples: list[dict], batch_size: int, pad_id: int, device, autocast) -> dict:
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    # sort by length so padding is minimal; the metrics do not depend on order
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    for start in range(0, len(order), batch_size * 2):
        batch = collate([examples[i] for i in order[start : start + batch_size * 2]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        total_loss += torch.nn.functional.cross_entropy(
            logits, batch["labels"], reduction="sum"
        ).item()
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        count += len(batch["labels"])
    model.train()
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "n": count}


# ---------------------------------------------------------------- optimisation
def parameter_groups(model, settings: Settings) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm;
    BitFit trains biases and the head only."""
    encoder_names = {
        f"{model.base_model_prefix}.{n}" for n, _ in model.base_model.named_parameters()
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if settings.trainable == "bitfit" and name in encoder_names and not name.endswith("bias"):
            param.requires_grad_(False)
            continue
        (
            no_decay
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
            else decay
        ).append(param)
    return [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def linear_schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fingerprint(settings: Settings, *files: Path, precision: str = "fp32") -> str:
    """What a checkpoint must match to be resumed: the recipe, the precision it resolved to on this
    machine (auto may differ between the nodes of a cluster) and its inputs' contents. Not the
    checkpoint policy: a retry with another interval resumes."""
    digest = hashlib.sha256(
        json.dumps(dict(settings.recipe(), precision=precision), sort_keys=True).encode()
    )
    for path in files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}:{stat.st_size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    resume_dir: Path, model, optimizer, scheduler, scaler, state: _State, key: str
) -> None:
    payload = {
        "key": key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": random.getstate(),
        "state": asdict(state),
    }
    with atomic_path(resume_dir / CHECKPOINT) as tmp:
        torch.save(payload, tmp)
    log.info("checkpoint saved at step %d", state.step)


def load_checkpoint(resume_dir: Path, key: str):
    path = resume_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint is read with the safe unpickler, tensors and plain types only
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        log.warning("ignoring unreadable checkpoint %s: %s", path, err)
        return None
    if payload.get("key") != key:
        log.warning("ignoring checkpoint %s: it was made with another recipe or other inputs", path)
        return None
    return payload


# ---------------------------------------------------------------- the run


class TrainingRun:
    """One fine-tuning run in this process: the model, its optimizer, scheduler and gradient scaler,
    the position in the data order (``state``: step, epoch, batch of the epoch), the global RNGs and
    the run's clocks.

    ``resume()`` restores all of it from a checkpoint of the same recipe and inputs; ``train()``
    runs the steps left, ``step()`` by ``step()``, ``end_of_epoch()`` validating after each full
    epoch; ``checkpoint()`` saves what a resumed run needs to continue bitwise as this one would;
    ``final_metrics()`` evaluates the weights kept.
    """

    def __init__(
        self,
        model,
        inputs: Inputs,
        settings: Settings,
        device: torch.device,
        precision: str,
        resume_dir: Path,
        key: str,
        name: str,
    ):
        self.model, self.settings, self.device, self.precision = model, settings, device, precision
        self.train_examples, self.validation, self.test, self.pad_id = (
            inputs.train,
            inputs.validation,
            inputs.test,
            inputs.pad_id,
        )
        self.resume_dir, self.key, self.name = resume_dir, key, name
        self.steps_per_epoch = math.ceil(len(self.train_examples) / settings.batch_size)
        self.total_steps = settings.epochs * self.steps_per_epoch
        if settings.max_steps:
            self.total_steps = min(self.total_steps, settings.max_steps)
        # fused: one kernel for all parameters (CPU and CUDA), what the Trainer uses too; the
        # loop-per-tensor default made our steps ~25% slower on CPU
        self.optimizer = torch.optim.AdamW(
            parameter_groups(model, settings),
            lr=settings.learning_rate,
            fused=device.type in ("cpu", "cuda"),
        )
        self.scheduler = linear_schedule(
            self.optimizer, int(settings.warmup_ratio * self.total_steps), self.total_steps
        )
        self.autocast = numerics.autocast(precision, device)
        self.scaler = numerics.grad_scaler(precision, device)
        self.state = _State()
        self.best_model_state = None  # the best epoch's weights (early stopping)
        # (step, metrics) of the latest epoch-end validation in this process
        self.last_validation = None
        self.stop_requested = False
        self.checkpoint_seconds = (
            settings.checkpoint_minutes * 60 if settings.checkpoint_minutes else math.inf
        )

    # ------------------------------------------------------------ checkpoints

    def resume(self) -> bool:
        """Continue from the checkpoint in resume_dir
        if it was made with this recipe and these inputs."""
        checkpoint = load_checkpoint(self.resume_dir, self.key)
        if checkpoint is None:
            return False
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint["scaler"]:
            self.scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"]:
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        random.setstate(_as_tuple(checkpoint["python_rng"]))
        self.state = _State(**checkpoint["state"])
        self.state.resumed_from_step = self.state.step
        self.best_model_state = _load_best(self.resume_dir, self.state.best_epoch)
        log.info("resuming from the checkpoint at step %d of %d", self.state.step, self.total_steps)
        return True

    def checkpoint(self) -> None:
        self._sync_state()
        save_checkpoint(
            self.resume_dir,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.state,
            self.key,
        )
        self.last_checkpoint = time.monotonic()

    def _checkpoint_due(self) -> bool:
        return (
            self.stop_requested
            or time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds
        )

    def _request_stop(self, *_) -> None:
        """The SIGTERM handler: the run checkpoints and stops at the end of the step it is in."""
        self.stop_requested = True

    # ------------------------------------------------------------ clocks and the running loss

    def _start_clocks(self) -> None:
        """Clocks that go on from a resumed run's counts:
        train_seconds and train_cpu_seconds count training only."""
        self.started = time.perf_counter() - self.state.train_seconds
        self.cpu_started = time.process_time() - self.state.train_cpu_seconds
        self.last_checkpoint = time.monotonic()
        # the running loss stays on the device (float64, what Python's float sum would give):
        # no sync per step
        self.running_loss = torch.tensor(
            self.state.running_loss, dtype=torch.float64, device=self.device
        )

    def _sync_state(self) -> None:
        self.state.running_loss = self.running_loss.item()
        self.state.train_seconds = time.perf_counter() - self.started
        self.state.train_cpu_seconds = time.process_time() - self.cpu_started

    def _take_train_loss(self) -> float | None:
        self._sync_state()
        self.running_loss.zero_()
        return self.state.take_train_loss()

    # ------------------------------------------------------------ training

    def train(self) -> None:
        """Run the steps left (all of them, or what follows the checkpoint resumed);
        raises Stopped on SIGTERM."""
        state = self.state
        previous_handler = signal.signal(signal.SIGTERM, self._request_stop)
        self.progress = Progress(
            self.total_steps, f"train {self.name}", logger=log, initial=state.step
        )
        self._start_clocks()
        try:
            while state.step < self.total_steps and state.epoch < self.settings.epochs:
                if not self._run_epoch():  # max_steps ended the epoch early: the loop ends
                    break
                state.epoch += 1
                state.batch_in_epoch = 0
                if self.settings.validation == "epoch" and self.end_of_epoch():
                    break  # early stopping
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        self._sync_state()

    def _run_epoch(self) -> bool:
        """The steps left of the current epoch, in its seeded order;
        True when the epoch was completed."""
        order = epoch_order(len(self.train_examples), self.settings.seed, self.state.epoch)
        size = self.settings.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        while self.state.batch_in_epoch < len(batches) and self.state.step < self.total_steps:
            self.step(batches[self.state.batch_in_epoch])
            if self.state.step % self.settings.log_every == 0:
                self.state.log_rows.append(
                    _log_row(self.state, self.scheduler, self._take_train_loss(), self.started)
                )
            every = self.settings.checkpoint_every
            if self._checkpoint_due() or (every and self.state.step % every == 0):
                self.checkpoint()
            if self.stop_requested:
                raise Stopped(
                    f"stopped by SIGTERM at step {self.state.step}; "
                    "the next attempt resumes from here"
                )
        return self.state.batch_in_epoch >= len(batches)

    def step(self, indices: list[int]) -> None:
        """One optimisation step on the training examples ``indices``."""
        batch = collate([self.train_examples[i] for i in indices], self.pad_id)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self.autocast:
            loss = self.model(**batch).loss
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1
        self.state.batch_in_epoch += 1
        self.running_loss += loss.detach()
        self.state.running_count += 1
        self.progress.update()

    def end_of_epoch(self) -> bool:
        """After a full epoch: validate, log, keep the best weights, checkpoint when due; True if
        early stopping ends the run. Raises Stopped on SIGTERM."""
        state, patience = self.state, self.settings.early_stopping_patience
        val = self._validate()
        log.info(
            "epoch %d: validation loss %.4f accuracy %.4f",
            state.epoch,
            val["loss"],
            val["accuracy"],
        )
        if patience:
            if val["loss"] < state.best_val_loss:
                state.best_val_loss, state.best_epoch = val["loss"], state.epoch
                state.epochs_without_improvement = 0
                self.best_model_state = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
                write_safetensors(
                    self.resume_dir / "best.safetensors",
                    self.best_model_state,
                    {"epoch": str(state.epoch)},
                )
            else:
                state.epochs_without_improvement += 1
                if state.epochs_without_improvement >= patience:
                    log.info(
                        "early stopping after epoch %d (best epoch %d)",
                        state.epoch,
                        state.best_epoch,
                    )
                    return True
        if self._checkpoint_due():
            self.checkpoint()
        if self.stop_requested:
            raise Stopped(
                f"stopped by SIGTERM after epoch {state.epoch}; the next attempt resumes from here"
            )
        return False

    def _validate(self) -> dict:
        """The epoch-end validation pass, timed apart from training,
        and its row of the training log."""
        self._sync_state()
        eval_started, eval_cpu_started = time.perf_counter(), time.process_time()
        val = evaluate(
            self.model,
            self.validation,
            self.settings.batch_size,
            self.pad_id,
            self.device,
            self.autocast,
        )
        # train_seconds and train_cpu_seconds count training only
        self.started += time.perf_counter() - eval_started
        self.cpu_started += time.process_time() - eval_cpu_started
        self.state.eval_seconds += time.perf_counter() - eval_started
        self.last_validation = (self.state.step, val)
        row = _log_row(self.state, self.scheduler, self._take_train_loss(), self.started)
        self.state.log_rows.append(dict(row, val_loss=val["loss"], val_accuracy=val["accuracy"]))
        return val

    def final_metrics(self) -> tuple[dict, dict]:
        """(validation, test) metrics of the weights kept:
        the best epoch's under early stopping, else the last."""
        if self.best_model_state is not None:
            self.model.load_state_dict(self.best_model_state)
        eval_started = time.perf_counter()
        args = (self.settings.batch_size, self.pad_id, self.device, self.autocast)
        if (
            self.best_model_state is None
            and self.last_validation is not None
            and self.last_validation[0] == self.state.step
        ):
            # the model was validated after its last step already
            validation = self.last_validation[1]
        else:
            validation = evaluate(self.model, self.validation, *args)
        test = evaluate(self.model, self.test, *args)
        self.state.eval_seconds += time.perf_counter() - eval_started
        return validation, test

    def trained_examples(self) -> int:
        """The examples the steps saw (the last batch of an epoch may be short)."""
        state, size = self.state, self.settings.batch_size
        return min(
            state.step * size, state.epoch * len(self.train_examples) + state.batch_in_epoch * size
        )


# ---------------------------------------------------------------- the entry point


def finetune(
    base_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    settings: Settings,
    threads: int = 1,
    init_weights: str | Path | None = None,
    model_id: str | None = None,
    save_model: bool = True,
    weights_path: str | Path | None = None,
) -> dict:
    """Fine-tune the base (or ``init_weights``, encoder weights of another start) on a dataset.

    Writes out_dir/{model.safetensors, config.json, train_log.csv, metrics.json}
    (metrics.json last: it marks the job finished), and the encoder weights to ``weights_path``
    when given (what an extraction job would write, without one); keeps resumable checkpoints
    in out_dir/resume/ until the run completes.

    Longer than most: it is the run read top to bottom, each step one call (load_inputs,
    build_model, TrainingRun, run_metrics, write_outputs), and most of its lines are those calls'
    arguments and the start's log line, one argument a line.
    """
    settings.check()
    base_dir, data_dir, out_dir = Path(base_dir), Path(data_dir), Path(out_dir)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    inputs = load_inputs(base_dir, data_dir, settings, init_weights)
    precision = numerics.resolve(
        device, settings.mixed_precision, "finetune.mixed_precision", PRECISIONS
    )
    model = build_model(base_dir, inputs.meta, settings, device, precision, init_weights)
    key = fingerprint(settings, *inputs.files, precision=precision)
    name = model_id or out_dir.name
    run = TrainingRun(model, inputs, settings, device, precision, out_dir / "resume", key, name)
    run.resume()
    log.info(
        "fine-tuning %s on %s: %d train examples, %d steps (%d per epoch), "
        "batch %d, %s %s, %d threads",
        name,
        inputs.meta.get("name"),
        len(inputs.train),
        run.total_steps,
        run.steps_per_epoch,
        settings.batch_size,
        device,
        precision,
        threads,
    )
    run.train()
    validation, test = run.final_metrics()
    metrics = run_metrics(
        run, inputs, validation, test, model_id=model_id, init_weights=init_weights, threads=threads
    )
    log.info(
        "done: validation accuracy %.4f, test accuracy %.4f",
        validation["accuracy"],
        test["accuracy"],
    )
    write_outputs(
        out_dir,
        run.model,
        run.state.log_rows,
        metrics,
        base_dir,
        name,
        save_model=save_model,
        weights_path=weights_path,
        model_id=model_id,
    )
    shutil.rmtree(out_dir / "resume", ignore_errors=True)
    return metrics


def run_metrics(
    run: TrainingRun,
    inputs: Inputs,
    validation: dict,
    test: dict,
    model_id: str | None,
    init_weights,
    threads: int,
) -> dict:
    """metrics.json of a finished run."""
    state, settings = run.state, run.settings
    return {
        "model_id": model_id,
        "dataset": inputs.meta.get("name"),
        "task": inputs.meta.get("task"),
        "seed": settings.seed,
        "steps": state.step,
        "epochs_completed": state.epoch,
        "best_epoch": state.best_epoch,
        "n_train": len(inputs.train),
        "init": str(init_weights) if init_weights else "pretrained",
        "validation": validation,
        "test": test,
        "train_seconds": round(state.train_seconds, 3),
        "train_cpu_seconds": round(state.train_cpu_seconds, 3),
        # validation and test passes: compute, with train_seconds
        "eval_seconds": round(state.eval_seconds, 3),
        "examples_per_second": round(run.trained_examples() / max(state.train_seconds, 1e-9), 2),
        "resumed_from_step": state.resumed_from_step,
        "device": str(run.device),
        "cpu": hardware.cpu_name(),
        "precision": run.precision,
        "threads": threads,
        "settings": asdict(settings),
    }


def write_outputs(
    out_dir: Path,
    model,
    log_rows: list,
    metrics: dict,
    base_dir: Path,
    name: str,
    save_model: bool = True,
    weights_path: str | Path | None = None,
    model_id: str | None = None,
) -> None:
    """The results of a run: the model and its config, its encoder weights, the training log,
    metrics.json last (it marks the job finished). Every safetensors file's bytes depend on its
    contents only (atomic.py)."""
    if save_model or weights_path:
        model = model.to("cpu")
        state_dict = model.state_dict()
    if save_model:
        write_safetensors(out_dir / "model.safetensors", state_dict, {"model_id": model_id or ""})
        with atomic_path(out_dir / "config.json") as tmp:
            model.config.to_json_file(str(tmp))
    if weights_path:
        save_encoder_weights(weights_path, state_dict, model.config, base_dir, name)
    write_csv(out_dir / "train_log.csv", pd.DataFrame(log_rows, columns=LOG_COLUMNS))
    write_json(out_dir / "metrics.json", metrics)


LOG_COLUMNS = [
    "step",
    "epoch",
    "learning_rate",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "elapsed_seconds",
]


def _log_row(state: _State, scheduler, train_loss, started) -> dict:
    return {
        "step": state.step,
        "epoch": state.epoch,
        "learning_rate": scheduler.get_last_lr()[0],
        "train_loss": train_loss,
        "val_loss": None,
        "val_accuracy": None,
        "elapsed_seconds": round(time.perf_counter() - started, 3),
    }


def save_encoder_weights(path, state_dict, config, base_dir: Path, model_id: str) -> None:
    """The encoder weights of a trained model, as weights.extract writes them for a model folder."""
    from weightspace.model import weights as encoder_files

    tensors = encoder_files.encoder_tensors_from_state_dict(state_dict, config)
    metadata = {}
    base_json = Path(base_dir) / "base.json"
    if base_json.exists():
        info = json.loads(base_json.read_text())
        metadata.update(base=info.get("source", ""), base_commit=info.get("commit") or "")
    encoder_files.save(path, tensors, model_id, **metadata)
    log.info("%s: %d encoder tensors written to %s", model_id, len(tensors), path)


def _load_best(resume_dir: Path, best_epoch: int | None):
    """The best epoch's weights saved for early stopping,
    if they are the checkpoint's best epoch's."""
    path = resume_dir / "best.safetensors"
    if best_epoch is None or not path.exists():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        epoch = (handle.metadata() or {}).get("epoch")
    if epoch is not None and int(epoch) != best_epoch:
        return None  # written after the checkpoint: the replayed epochs write it again
    return load_file(str(path))


def _as_tuple(value):
    """random.setstate needs tuples; a checkpoint round-trip may give lists."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def load_finetuned(out_dir: str | Path, base_dir: str | Path):
    """A fine-tuned model (head included) from its results folder."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    meta_labels = json.loads((out_dir / "config.json").read_text()).get("id2label", {})
    model = base_model.load_classifier(base_dir, max(len(meta_labels), 2))
    model.load_state_dict(load_file(str(out_dir / "model.safetensors")))
    return model
