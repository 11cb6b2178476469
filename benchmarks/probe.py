"""Linear probing on cached features against head training through the frozen encoder.

Same base model, data, head initialisation and full-batch L-BFGS protocol with the same
number of objective evaluations ("epochs": one pass over the training split each):
  cached   one encoder pass over train + test (weightspace.probe.features.extract, as the
           workflow's features rule), then every evaluation reads the cached features;
  in-loop  the frozen encoder runs over the training split at every evaluation.
Prints both times, the epochs and the speed-up, and checks that both give the same
test loss. Run by hand:

    .venv/bin/python benchmarks/probe.py [--base builtin|tiny] [--n 500] [--max-iter 20]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from conftest import generated_frame, make_tiny_source  # noqa: E402
from weightspace.model import base_model, weights  # noqa: E402
from weightspace.probe import features, linear


def make_data(folder: Path, n: int) -> Path:
    """n generated examples, 80% train / 20% test, ~20 tokens each."""
    folder.mkdir(parents=True, exist_ok=True)
    n_test = max(n // 5, 2)
    for split, size, seed in (("train", n - n_test, 0), ("test", n_test, 1)):
        frame = generated_frame(size, seed=seed)
        frame["text"] = frame["text"] + " " + frame["text"]
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    (folder / "meta.json").write_text(
        json.dumps({"name": "bench", "task": "sentiment", "num_labels": 2})
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base",
        choices=["builtin", "tiny"],
        default="builtin",
        help="builtin: the packaged all-MiniLM-L6-v2; tiny: a 2-layer random BERT",
    )
    parser.add_argument("--n", type=int, default=500, help="generated examples (train + test)")
    parser.add_argument("--max-iter", type=int, default=20, help="L-BFGS iterations (both runs)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=64, help="max_length")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # "did not converge": a fixed iteration count here
    logging.getLogger("weightspace").setLevel(logging.ERROR)
    # a fixed number of iterations: the tolerance is out of reach, so both runs do the same epochs
    protocol = linear.Protocol(max_iter=args.max_iter, tolerance=1e-30, tolerance_change=1e-30)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.base == "tiny":
            base_model.materialise(
                {"path": str(make_tiny_source(tmp / "src")), "pooling": "mean"}, tmp / "base"
            )
        else:
            base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, tmp / "base")
        base = tmp / "base"
        pooling = base_model.base_info(base)["pooling"]
        encoder = base_model.load_encoder(base)
        weights.save(tmp / "model.safetensors", weights.encoder_weights(encoder), "pretrained")
        data = make_data(tmp / "data", args.n)

        # cached: the features rule's work (one pass, written to npz), then the probe rule's
        started = time.perf_counter()
        features.extract(
            base,
            [tmp / "model.safetensors"],
            [1.0],
            data,
            tmp / "f.npz",
            batch_size=args.batch,
            max_length=args.length,
            threads=args.threads,
        )
        encoded = time.perf_counter()
        cached = linear.train_probe(features.load(tmp / "f.npz"), protocol)
        cached_seconds = time.perf_counter() - started
        head_seconds = time.perf_counter() - encoded

        # in the loop: the same encoder and head, the encoder re-run at every evaluation
        tokenizer = base_model.load_tokenizer(base)
        model = base_model.load_encoder(base, weights.load(tmp / "model.safetensors"))
        frames = {s: pd.read_parquet(data / f"{s}.parquet") for s in ("train", "test")}
        tokens = {
            s: features.tokenize(tokenizer, f["text"], None, args.length) for s, f in frames.items()
        }

        def through_encoder(split):
            return features.encode(
                model, tokens[split], pooling, tokenizer.pad_token_id, batch_size=args.batch
            )

        started = time.perf_counter()
        head = linear.LinearHead(cached["protocol"]["feature_dim"], 2, protocol.seed)
        info = linear.fit(
            head, lambda: through_encoder("train"), frames["train"]["label"], protocol
        )
        in_loop = linear.evaluate(head, through_encoder("test"), frames["test"]["label"])
        loop_seconds = time.perf_counter() - started

    print(
        f"base {args.base} ({pooling} pooling), {args.n} examples "
        f"({cached['n_train']} train / {cached['n_test']} test), max_length {args.length}, "
        f"{args.threads} threads, L-BFGS {args.max_iter} iterations"
    )
    print(
        f"cached features : {cached_seconds:8.2f} s  "
        f"(encoder pass {cached_seconds - head_seconds:.2f} s, "
        f"head {head_seconds:.3f} s; {cached['fit']['evaluations']} epochs on features)  "
        f"test loss {cached['loss']:.6f} acc {cached['accuracy']:.3f}"
    )
    print(
        f"encoder in loop : {loop_seconds:8.2f} s  "
        f"({info['feature_passes']} encoder passes over train: "
        f"{info['evaluations']} epochs + 1 for the statistics, + 1 over test)  "
        f"test loss {in_loop['loss']:.6f} acc {in_loop['accuracy']:.3f}"
    )
    print(f"speed-up        : {loop_seconds / cached_seconds:8.1f}x")
    if cached["fit"]["evaluations"] != info["evaluations"]:
        print("note: the two runs did a different number of epochs")
    print(
        "relative test-loss difference: "
        f"{abs(in_loop['loss'] - cached['loss']) / cached['loss']:.2e}"
    )


if __name__ == "__main__":
    main()
