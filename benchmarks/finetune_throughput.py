"""Training throughput of weightspace's finetune against a plain Hugging Face Trainer.

Same base model, data, batch size, sequence length, steps and threads, in one run;
prints examples per second of both and the ratio (ours / Trainer). Run by hand:

    .venv/bin/python benchmarks/finetune_throughput.py [--base builtin|tiny] [--steps 30] [--threads 2]

Needs the Trainer's dependency accelerate: `.venv/bin/pip install -e ".[bench]"` (not needed by the workflow).
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
from weightspace import base_model, finetune  # noqa: E402


def make_data(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, size, seed in (("train", n, 0), ("validation", 32, 1), ("test", 32, 2)):
        frame = generated_frame(size, seed=seed)
        frame["text"] = frame["text"] + " " + frame["text"]  # ~20 tokens an example
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    meta = {"name": "bench", "task": "sentiment", "num_labels": 2, "label_names": ["neg", "pos"]}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def ours(base: Path, data: Path, out: Path, args) -> float:
    settings = finetune.Settings(epochs=100, max_steps=args.steps, batch_size=args.batch, learning_rate=5e-5,
                                 max_length=args.length, checkpoint_every=10**9, log_every=10**9)
    metrics = finetune.finetune(base, data, out, settings, threads=args.threads)
    return metrics["examples_per_second"]


def trainer(base: Path, data: Path, out: Path, args) -> float:
    import pandas as pd
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.set_num_threads(args.threads)
    tokenizer = base_model.load_tokenizer(base)
    frame = pd.read_parquet(data / "train.parquet")
    dataset = Dataset.from_pandas(frame).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.length), batched=True,
        remove_columns=["text"],
    ).rename_column("label", "labels")
    torch.manual_seed(0)
    model = base_model.load_classifier(base, 2)
    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=5e-5,
        weight_decay=0.01, warmup_steps=int(0.1 * args.steps), lr_scheduler_type="linear", logging_steps=10**9, save_strategy="no",
        report_to=[], use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0, disable_tqdm=True,
    )
    run = Trainer(model=model, args=training_args, train_dataset=dataset,
                  data_collator=DataCollatorWithPadding(tokenizer))
    started = time.perf_counter()
    run.train()
    return args.steps * args.batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=["builtin", "tiny"], default="builtin")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = {"builtin": "all-MiniLM-L6-v2"} if args.base == "builtin" else {"path": str(make_tiny_source(tmp / "src"))}
        base = tmp / "base"
        base_model.materialise(spec, base)
        data = make_data(tmp / "data", n=max(args.steps * args.batch, 64))
        results = {"ours": [], "trainer": []}
        for r in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
            results["ours"].append(ours(base, data, tmp / f"ours{r}", args))
            results["trainer"].append(trainer(base, data, tmp / f"trainer{r}", args))
        best = {k: max(v) for k, v in results.items()}
    print(f"base={args.base} steps={args.steps} batch={args.batch} length={args.length} threads={args.threads}")
    print(f"weightspace finetune : {best['ours']:8.1f} examples/s  (runs: {results['ours']})")
    print(f"HF Trainer           : {best['trainer']:8.1f} examples/s  (runs: {[round(x, 1) for x in results['trainer']]})")
    print(f"ratio ours/Trainer   : {best['ours'] / best['trainer']:.2f}x")


if __name__ == "__main__":
    main()
