"""Training throughput of weightspace's finetune against a plain Hugging Face Trainer.

Same base model, data, batch size, sequence length, steps, threads and precision, in one run,
interleaved (drift on a shared machine hits both alike). Both are timed over their training
loop only (setup, tokenization and evaluation left out: ours from its metrics, the Trainer's
from on_train_begin to on_train_end). Prints, with the CPU they ran on, examples per second
of wall time and examples per CPU-second (the process's CPU time during the loop: steadier
than wall time when other work shares the machine), and the ratios ours / Trainer. Ours runs
twice: as the workflow does (Linears skip padding tokens, unpadded.py) and padded, like the
Trainer, so the ratio separates the loop's overhead from the FLOPs padding costs.

    .venv/bin/python benchmarks/finetune_throughput.py [--base builtin|tiny] [--steps 30]
        [--threads 2] [--precision fp32|bf16] [--trainer-clip 1.0] [--dataset vader_tweets]
        [--length 48]

--dataset names a packaged dataset (the default's, prepared as the workflow prepares it: real
sentence lengths, so real padding); without it, generated sentences of ~20 tokens.

The Trainer keeps its defaults (gradient clipping at 1.0 included, which our recipe does not
do); --trainer-clip 0 turns it off, for the exact same recipe. Needs the Trainer's dependency
accelerate: `.venv/bin/pip install -e ".[bench]"` (not needed by the workflow).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

from conftest import generated_frame, make_tiny_source  # noqa: E402
from weightspace import hardware  # noqa: E402
from weightspace.data import prepare
from weightspace.model import base_model
from weightspace.train import finetune


def make_data(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, size, seed in (("train", n, 0), ("validation", 32, 1), ("test", 32, 2)):
        frame = generated_frame(size, seed=seed)
        frame["text"] = frame["text"] + " " + frame["text"]  # ~20 tokens an example
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    meta = {"name": "bench", "task": "sentiment", "num_labels": 2, "label_names": ["neg", "pos"]}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def packaged(folder: Path, name: str) -> Path:
    prepare.prepare_dataset(
        name,
        {"builtin": name, "task": "t", "max_examples": {"validation": 32, "test": 32}},
        None,
        folder,
    )
    return folder


def ours(base: Path, data: Path, out: Path, args, skip_padding: bool = True) -> dict:
    settings = finetune.Settings(
        epochs=100,
        max_steps=args.steps,
        batch_size=args.batch,
        learning_rate=5e-5,
        max_length=args.length,
        checkpoint_every=None,
        checkpoint_minutes=None,
        log_every=10**9,
        mixed_precision="bf16" if args.precision == "bf16" else "no",
        skip_padding=skip_padding,
    )
    metrics = finetune.finetune(base, data, out, settings, threads=args.threads, save_model=False)
    examples = args.steps * args.batch
    return {
        "wall": examples / metrics["train_seconds"],
        "cpu": examples / metrics["train_cpu_seconds"],
    }


def trainer(base: Path, data: Path, out: Path, args) -> dict:
    import pandas as pd
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, *_, **__):
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    torch.set_num_threads(args.threads)
    tokenizer = base_model.load_tokenizer(base)
    frame = pd.read_parquet(data / "train.parquet")
    dataset = (
        Dataset.from_pandas(frame)
        .map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=args.length),
            batched=True,
            remove_columns=["text"],
        )
        .rename_column("label", "labels")
    )
    torch.manual_seed(0)
    model = base_model.load_classifier(base, int(frame["label"].max()) + 1)
    training_args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=5e-5,
        weight_decay=0.01,
        warmup_steps=int(0.1 * args.steps),
        lr_scheduler_type="linear",
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
        bf16=args.precision == "bf16",
        max_grad_norm=args.trainer_clip,
    )
    clock = Clock()
    run = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[clock],
    )
    run.train()
    examples = args.steps * args.batch
    return {"wall": examples / clock.wall, "cpu": examples / clock.cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=["builtin", "tiny"], default="builtin")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--trainer-clip", type=float, default=1.0, help="the Trainer's max_grad_norm (0: off)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dataset", default=None, help="a packaged dataset, e.g. vader_tweets (default: generated)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = (
            {"builtin": "all-MiniLM-L6-v2"}
            if args.base == "builtin"
            else {"path": str(make_tiny_source(tmp / "src"))}
        )
        base = tmp / "base"
        base_model.materialise(spec, base)
        if args.dataset:
            data_dir = packaged(tmp / "data", args.dataset)
        else:
            data_dir = make_data(tmp / "data", n=max(args.steps * args.batch, 64))
        results = {"ours": [], "ours_padded": [], "trainer": []}
        for r in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
            results["ours"].append(ours(base, data_dir, tmp / f"ours{r}", args))
            results["ours_padded"].append(
                ours(base, data_dir, tmp / f"padded{r}", args, skip_padding=False)
            )
            results["trainer"].append(trainer(base, data_dir, tmp / f"trainer{r}", args))
    best = {k: {m: max(run[m] for run in v) for m in ("wall", "cpu")} for k, v in results.items()}
    facts = hardware.describe()
    print(
        f"cpu={facts['cpu']} cores={facts['cores']} torch={facts['torch_capability']} "
        f"native_bf16={facts['native_bf16']} load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"base={args.base} dataset={args.dataset or 'generated'} steps={args.steps} "
        f"batch={args.batch} length={args.length} threads={args.threads} "
        f"precision={args.precision} trainer_max_grad_norm={args.trainer_clip} "
        f"repeats={args.repeats} (best of)"
    )
    for name, label in (
        ("ours", "weightspace finetune"),
        ("ours_padded", "  same, padded"),
        ("trainer", "HF Trainer"),
    ):
        runs = ", ".join(f"{run['wall']:.1f}/{run['cpu']:.1f}" for run in results[name])
        print(
            f"{label:21}: {best[name]['wall']:8.1f} examples/s  "
            f"{best[name]['cpu']:8.1f} examples/CPU-s  (runs wall/cpu: {runs})"
        )
    print(
        f"ratio ours/Trainer   : {best['ours']['wall'] / best['trainer']['wall']:.2f}x wall, "
        f"{best['ours']['cpu'] / best['trainer']['cpu']:.2f}x CPU"
    )
    print(
        "ratio padded/Trainer : "
        f"{best['ours_padded']['wall'] / best['trainer']['wall']:.2f}x wall, "
        f"{best['ours_padded']['cpu'] / best['trainer']['cpu']:.2f}x CPU (the loop alone)"
    )


if __name__ == "__main__":
    main()
