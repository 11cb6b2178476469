"""Full fine-tuning of the base on one dataset: deterministic, resumable, with a new head.

The loop is plain PyTorch (no Trainer) so that every source of randomness is ours to
seed and to checkpoint: the head's initialisation and dropout follow the global torch
RNG (seeded, saved in checkpoints), the data order of epoch e is a permutation drawn
from a generator seeded by (seed, e), so a resumed run replays exactly the batches an
uninterrupted run would have seen and ends with bitwise identical weights on CPU.

Checkpoints (model, optimizer, scheduler, RNG states: ~3x the model's size) are written every
``checkpoint_minutes`` of training and when the job is asked to stop (SIGTERM: a SLURM time
limit, a Ctrl-C of Snakemake), not every few steps; ``checkpoint_every`` adds a step interval
(tests). Precision: ``mixed_precision`` autocasts to bf16 on a CPU only where it computes bf16
natively (hardware.py) or when asked to; on AVX2-only CPUs bf16 is emulated and far slower.
"""

from __future__ import annotations

import contextlib
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

import pandas as pd
import torch

from weightspace import WeightspaceError, hardware
from weightspace.model import base_model, unpadded
from weightspace.atomic import atomic_path, write_csv, write_json, write_safetensors
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
    checkpoint_minutes: float | None = 10.0  # of training between checkpoints (None: only on SIGTERM)
    checkpoint_every: int | None = None  # steps between checkpoints as well (None: by time only)
    validation: str = "epoch"  # epoch: after every epoch (a learning curve; early stopping reads it) | end: once
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16 (see autocast_dtype)
    max_length: int = 128
    trainable: str = "all"  # all | bitfit (biases and head only)
    train_size: int | None = None  # a seeded, stratified subset of the training split (few-shot runs)
    head_seed: int | None = None  # None: the head's initialisation follows `seed` (the paper); an int: shared by every seed
    skip_padding: bool = True  # Linears compute on real tokens only (unpadded.py): same result, fewer FLOPs
    log_every: int = 10

    @classmethod
    def from_config(cls, section: dict, **overrides) -> "Settings":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in section.items() if k in known}
        values.update(overrides)
        return cls(**values)

    def recipe(self) -> dict:
        """What decides the trained weights (and so what a checkpoint must match): all but the run policy.
        A head_seed of None is left out, so the recipes (and checkpoints) of studies made before it existed still match."""
        return {k: v for k, v in asdict(self).items()
                if k not in RUN_POLICY and not (k == "head_seed" and v is None)}


# how a run checkpoints and how often it validates: the weights do not depend on it (a validation pass draws
# no random numbers), so the scripts read it from the config and changing it reruns nothing
RUN_POLICY = ("checkpoint_minutes", "checkpoint_every", "validation")
PRECISIONS = ("auto", "no", "bf16", "fp16")


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
    # the loss since the last log row: checkpointed so that a resumed run logs what an uninterrupted one does
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
    """A seeded subset with every label kept where possible (the same for every base, so runs compare)."""
    if not size or size >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 and size >= len(counts) else None
    subset, _ = train_test_split(frame, train_size=size, random_state=seed, stratify=stratify)
    return subset.reset_index(drop=True)


def tokenize(tokenizer, frame: pd.DataFrame, max_length: int) -> list[dict]:
    texts = frame["text"].tolist()
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    labels = frame["label"].astype("int64").tolist()
    return [dict({k: enc[k][i] for k in keys}, labels=labels[i]) for i in range(len(labels))]


def collate(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest example of this batch only."""
    width = max(len(e["input_ids"]) for e in examples)
    batch = {}
    for key in examples[0]:
        if key == "labels":
            batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.long)
            continue
        fill = pad_id if key == "input_ids" else 0
        batch[key] = torch.tensor([e[key] + [fill] * (width - len(e[key])) for e in examples], dtype=torch.long)
    return batch


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


# ---------------------------------------------------------------- device and precision


def autocast_dtype(device: torch.device, mixed_precision: str) -> torch.dtype | None:
    """The dtype autocast computes in (None: float32 throughout): hardware.autocast_dtype decides."""
    return hardware.autocast_dtype(device, mixed_precision, "finetune.mixed_precision", PRECISIONS)


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast_context(device: torch.device, mixed_precision: str):
    """(autocast context, gradient scaler or None) for a precision setting (see autocast_dtype)."""
    dtype = autocast_dtype(device, mixed_precision)
    if dtype is None:
        return contextlib.nullcontext(), None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return torch.autocast(device.type, dtype=dtype), scaler


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
        total_loss += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        count += len(batch["labels"])
    model.train()
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "n": count}


# ---------------------------------------------------------------- optimisation


def parameter_groups(model, settings: Settings) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm; BitFit trains biases and the head only."""
    encoder_names = {f"{model.base_model_prefix}.{n}" for n, _ in model.base_model.named_parameters()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if settings.trainable == "bitfit" and name in encoder_names and not name.endswith("bias"):
            param.requires_grad_(False)
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
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
    digest = hashlib.sha256(json.dumps(dict(settings.recipe(), precision=precision), sort_keys=True).encode())
    for path in files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}:{stat.st_size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(resume_dir: Path, model, optimizer, scheduler, scaler, state: _State, key: str) -> None:
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


# ---------------------------------------------------------------- the loop


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
    """
    from weightspace.model import weights as encoder_files

    if settings.validation not in ("epoch", "end"):
        raise WeightspaceError(f"finetune.validation: '{settings.validation}' is not 'epoch' or 'end'")
    if settings.validation == "end" and settings.early_stopping_patience:
        raise WeightspaceError("finetune.validation: 'end' leaves early stopping (finetune.early_stopping_patience) "
                               "no validation loss to read; use 'epoch'")
    base_dir, data_dir, out_dir = Path(base_dir), Path(data_dir), Path(out_dir)
    resume_dir = out_dir / "resume"
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    meta = json.loads((data_dir / "meta.json").read_text())
    tokenizer = base_model.load_tokenizer(base_dir)
    pad_id = base_model.pad_id(tokenizer)
    train = tokenize(tokenizer, subsample(load_split(data_dir, "train"), settings.train_size, settings.seed),
                     settings.max_length)
    validation = tokenize(tokenizer, load_split(data_dir, "validation"), settings.max_length)
    test = tokenize(tokenizer, load_split(data_dir, "test"), settings.max_length)
    if not train:
        raise WeightspaceError(f"dataset {meta.get('name', data_dir.name)}: the training split is empty")

    torch.manual_seed(settings.seed if settings.head_seed is None else settings.head_seed)
    random.seed(settings.seed)
    start = encoder_files.load(init_weights) if init_weights else None
    model = base_model.load_classifier(base_dir, meta["num_labels"], encoder_weights=start)
    if settings.head_seed is not None:  # one head for every seed; dropout still follows the run's seed
        torch.manual_seed(settings.seed)
    hardware.attention_for_dynamic_shapes(device)
    # Skipping padding pays where matmuls dominate a step: on a CPU (vader_tweets 1.38x) and in fp32 on a GPU
    # (1.25-1.29x on an H100); in bf16 on a GPU the gather and scatter around each Linear cost more than the
    # FLOPs they save (0.68-0.96x there, benchmarks/cuda_check.py), so it stays off. The loss is the same either way.
    if settings.skip_padding and (device.type == "cpu" or autocast_dtype(device, settings.mixed_precision) is None):
        unpadded.skip_padding(model)
    model.config.id2label = {i: name for i, name in enumerate(meta["label_names"])}
    model.config.label2id = {name: i for i, name in enumerate(meta["label_names"])}
    model.to(device).train()

    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    # fused: one kernel for all parameters (CPU and CUDA), what the Trainer uses too; the loop-per-tensor
    # default made our steps ~25% slower on CPU
    optimizer = torch.optim.AdamW(parameter_groups(model, settings), lr=settings.learning_rate,
                                  fused=device.type in ("cpu", "cuda"))
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    autocast, scaler = autocast_context(device, settings.mixed_precision)
    precision = precision_name(autocast_dtype(device, settings.mixed_precision))

    inputs = [data_dir / f"{s}.parquet" for s in ("train", "validation", "test")] + [base_dir / "config.json"]
    key = fingerprint(settings, *inputs, *([init_weights] if init_weights else []), precision=precision)
    state = _State()
    best_model_state = None
    checkpoint = load_checkpoint(resume_dir, key)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint["scaler"]:
            scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"]:
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        random.setstate(_as_tuple(checkpoint["python_rng"]))
        state = _State(**checkpoint["state"])
        state.resumed_from_step = state.step
        best_model_state = _load_best(resume_dir, state.best_epoch)
        log.info("resuming from the checkpoint at step %d of %d", state.step, total_steps)

    stop_requested = []
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    log.info(
        "fine-tuning %s on %s: %d train examples, %d steps (%d per epoch), batch %d, %s %s, %d threads",
        model_id or out_dir.name, meta.get("name"), len(train), total_steps, steps_per_epoch,
        settings.batch_size, device, precision, threads,
    )
    progress = Progress(total_steps, f"train {model_id or out_dir.name}", logger=log, initial=state.step)
    started = time.perf_counter() - state.train_seconds
    cpu_started = time.process_time() - state.train_cpu_seconds
    checkpoint_seconds = settings.checkpoint_minutes * 60 if settings.checkpoint_minutes else math.inf
    last_checkpoint = time.monotonic()
    # the running loss stays on the device (float64, what Python's float sum would give): no sync per step
    running_loss = torch.tensor(state.running_loss, dtype=torch.float64, device=device)
    last_validation = None  # (step, metrics) of the latest epoch-end validation in this process

    def sync_state():
        state.running_loss = running_loss.item()
        state.train_seconds = time.perf_counter() - started
        state.train_cpu_seconds = time.process_time() - cpu_started

    def take_train_loss():
        sync_state()
        running_loss.zero_()
        return state.take_train_loss()

    def write_checkpoint():
        nonlocal last_checkpoint
        sync_state()
        save_checkpoint(resume_dir, model, optimizer, scheduler, scaler, state, key)
        last_checkpoint = time.monotonic()

    try:
        while state.step < total_steps and state.epoch < settings.epochs:
            order = epoch_order(len(train), settings.seed, state.epoch)
            batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
            while state.batch_in_epoch < len(batches) and state.step < total_steps:
                batch = collate([train[i] for i in batches[state.batch_in_epoch]], pad_id)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast:
                    loss = model(**batch).loss
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state.step += 1
                state.batch_in_epoch += 1
                running_loss += loss.detach()
                state.running_count += 1
                progress.update()
                if state.step % settings.log_every == 0:
                    state.log_rows.append(_log_row(state, scheduler, take_train_loss(), started))
                if (stop_requested or time.monotonic() - last_checkpoint >= checkpoint_seconds
                        or (settings.checkpoint_every and state.step % settings.checkpoint_every == 0)):
                    write_checkpoint()
                if stop_requested:
                    raise Stopped(f"stopped by SIGTERM at step {state.step}; the next attempt resumes from here")
            if state.batch_in_epoch < len(batches):  # max_steps ended the epoch early: the loop ends
                continue
            state.epoch += 1
            state.batch_in_epoch = 0
            if settings.validation == "end":  # one pass after training, below
                continue
            # a full epoch: validate, maybe stop early
            sync_state()
            eval_started, eval_cpu_started = time.perf_counter(), time.process_time()
            val = evaluate(model, validation, settings.batch_size, pad_id, device, autocast)
            # train_seconds and train_cpu_seconds count training only
            started += time.perf_counter() - eval_started
            cpu_started += time.process_time() - eval_cpu_started
            state.eval_seconds += time.perf_counter() - eval_started
            last_validation = (state.step, val)
            row = _log_row(state, scheduler, take_train_loss(), started)
            state.log_rows.append(dict(row, val_loss=val["loss"], val_accuracy=val["accuracy"]))
            log.info("epoch %d: validation loss %.4f accuracy %.4f", state.epoch, val["loss"], val["accuracy"])
            if settings.early_stopping_patience:
                if val["loss"] < state.best_val_loss:
                    state.best_val_loss, state.best_epoch = val["loss"], state.epoch
                    state.epochs_without_improvement = 0
                    best_model_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    write_safetensors(resume_dir / "best.safetensors", best_model_state,
                                      {"epoch": str(state.epoch)})
                else:
                    state.epochs_without_improvement += 1
                    if state.epochs_without_improvement >= settings.early_stopping_patience:
                        log.info("early stopping after epoch %d (best epoch %d)", state.epoch, state.best_epoch)
                        break
            if stop_requested or time.monotonic() - last_checkpoint >= checkpoint_seconds:
                write_checkpoint()
            if stop_requested:
                raise Stopped(f"stopped by SIGTERM after epoch {state.epoch}; the next attempt resumes from here")
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    sync_state()

    if best_model_state is not None:
        model.load_state_dict(best_model_state)
    train_seconds = state.train_seconds
    eval_started = time.perf_counter()
    if best_model_state is None and last_validation is not None and last_validation[0] == state.step:
        validation_metrics = last_validation[1]  # the model was validated after its last step already
    else:
        validation_metrics = evaluate(model, validation, settings.batch_size, pad_id, device, autocast)
    test_metrics = evaluate(model, test, settings.batch_size, pad_id, device, autocast)
    state.eval_seconds += time.perf_counter() - eval_started
    trained_examples = min(state.step * settings.batch_size, state.epoch * len(train) + state.batch_in_epoch * settings.batch_size)
    metrics = {
        "model_id": model_id,
        "dataset": meta.get("name"),
        "task": meta.get("task"),
        "seed": settings.seed,
        "steps": state.step,
        "epochs_completed": state.epoch,
        "best_epoch": state.best_epoch,
        "n_train": len(train),
        "init": str(init_weights) if init_weights else "pretrained",
        "validation": validation_metrics,
        "test": test_metrics,
        "train_seconds": round(train_seconds, 3),
        "train_cpu_seconds": round(state.train_cpu_seconds, 3),
        "eval_seconds": round(state.eval_seconds, 3),  # validation and test passes: compute, with train_seconds
        "examples_per_second": round(trained_examples / max(train_seconds, 1e-9), 2),
        "resumed_from_step": state.resumed_from_step,
        "device": str(device),
        "cpu": hardware.cpu_name(),
        "precision": precision,
        "threads": threads,
        "settings": asdict(settings),
    }
    log.info("done: validation accuracy %.4f, test accuracy %.4f", validation_metrics["accuracy"], test_metrics["accuracy"])

    if save_model or weights_path:
        model = model.to("cpu")
        state_dict = model.state_dict()
    if save_model:
        write_safetensors(out_dir / "model.safetensors", state_dict, {"model_id": model_id or ""})
        with atomic_path(out_dir / "config.json") as tmp:
            model.config.to_json_file(str(tmp))
    if weights_path:
        save_encoder_weights(weights_path, state_dict, model.config, base_dir, model_id or out_dir.name)
    write_csv(out_dir / "train_log.csv", pd.DataFrame(state.log_rows, columns=LOG_COLUMNS))
    write_json(out_dir / "metrics.json", metrics)
    shutil.rmtree(resume_dir, ignore_errors=True)
    return metrics


LOG_COLUMNS = ["step", "epoch", "learning_rate", "train_loss", "val_loss", "val_accuracy", "elapsed_seconds"]


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
    """The best epoch's weights saved for early stopping, if they are the checkpoint's best epoch's."""
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
