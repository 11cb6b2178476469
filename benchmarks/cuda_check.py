"""The CUDA path, checked on a GPU: skipping padding, mixed precision, memory, throughput, a whole
fine-tune.

Runs where torch sees a CUDA device (it says so and stops elsewhere); needs no download: the encoder
is a random model of RoBERTa-base's shape (12 layers, hidden 768) built from a config, the
end-to-end fine-tune uses a tiny model folder (``--tiny``, e.g. one made by
tests/conftest.make_tiny_source). Prints, in one run:

  1. skip vs padded (unpadded.py) on the GPU, fp32 and bf16 autocast: the loss and every gradient
     agree;
  2. training steps per second and peak memory, skip vs padded, fp32 vs bf16 (batch 32, lengths
     16-128: ~45 % padding, as in short-text datasets), with the ratios;
  3. the encoder pass for the probe (features.encode), bf16 against fp32 features: the largest
     difference;
  4. weightspace.train.finetune.finetune end to end on the GPU with mixed_precision auto (bf16
     here), twice with the same seed: finished, learned, and how far apart the two runs' weights are
     (CUDA kernels need not be bitwise deterministic; the CPU path is).

    python benchmarks/cuda_check.py [--tiny FOLDER] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

DEVICE = torch.device("cuda")
# RoBERTa-base; --smoke: a small model on the CPU
SIZES = {"layers": 12, "hidden": 768, "batch": 32}


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def batch_of(n: int, low: int, high: int, vocab: int, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (n,), generator=g)
    width = int(lengths.max())
    ids = torch.randint(5, vocab, (n, width), generator=g)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    labels = torch.randint(0, 2, (n,), generator=g)
    return {
        "input_ids": (ids * mask).to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def model_pair(device):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from weightspace.model import unpadded

    config = RobertaConfig(
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_hidden_layers=SIZES["layers"],
        hidden_size=SIZES["hidden"],
        intermediate_size=4 * SIZES["hidden"],
        num_attention_heads=SIZES["hidden"] // 64,
    )
    torch.manual_seed(0)
    plain = RobertaForSequenceClassification(config).to(device)
    torch.manual_seed(0)
    skip = unpadded.skip_padding(RobertaForSequenceClassification(config).to(device))
    return plain, skip, config


def agreement(plain, skip, batch, dtype) -> dict:
    out = {}
    for name, model in (("plain", plain), ("skip", skip)):
        model.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        out[name] = (
            float(loss.detach()),
            {
                k: p.grad.detach().float().clone()
                for k, p in model.named_parameters()
                if p.grad is not None
            },
        )
    (lp, gp), (ls, gs) = out["plain"], out["skip"]
    # relative to the parameter's own gradient, among gradients that are not numerically zero
    largest = max(float(g.norm()) for g in gp.values())
    rel = {
        k: float((gp[k] - gs[k]).norm() / gp[k].norm())
        for k in gp
        if float(gp[k].norm()) > 1e-6 * largest
    }
    worst = max(rel, key=rel.get)
    return {
        "loss_plain": lp,
        "loss_skip": ls,
        "loss_diff": abs(lp - ls),
        "worst_grad_rel_diff": rel[worst],
        "worst_grad_parameter": worst,
        "gradients_compared": len(rel),
        "gradients": len(gp),
    }


def throughput(model, batch, dtype, steps: int) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(DEVICE.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if DEVICE.type == "cuda" else float("nan")
    return {"steps_per_s": steps / seconds, "peak_mib": peak}


def varying_throughput(model, config, dtype, steps: int, cudnn_sdp: bool) -> float:
    """Steps/s over batches of different widths (dynamic padding: every batch its own shape)."""
    if DEVICE.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(cudnn_sdp)
    batches = [
        batch_of(SIZES["batch"], 8, 128, config.vocab_size, DEVICE, seed=100 + i)
        for i in range(steps)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=DEVICE.type == "cuda")
    sync()
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast(DEVICE.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    if DEVICE.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(True)
    return steps / (time.perf_counter() - start)


def features_check(device) -> dict:
    from transformers import RobertaConfig, RobertaModel

    from weightspace.probe import features

    torch.manual_seed(1)
    config = RobertaConfig(
        num_hidden_layers=SIZES["layers"],
        hidden_size=SIZES["hidden"],
        intermediate_size=4 * SIZES["hidden"],
        num_attention_heads=SIZES["hidden"] // 64,
    )
    encoder = RobertaModel(config, add_pooling_layer=False).to(device)
    g = torch.Generator().manual_seed(2)
    examples = [
        {"input_ids": torch.randint(5, 50000, (int(n),), generator=g).tolist()}
        for n in torch.randint(8, 128, (512,), generator=g)
    ]
    for e in examples:
        e["attention_mask"] = [1] * len(e["input_ids"])
    timings, feats = {}, {}
    # features.encode keeps attention off cuDNN itself (hardware.attention_for_dynamic_shapes)
    for label, precision in (("fp32", "no"), ("bf16", "bf16"), ("bf16_again", "bf16")):
        sync()
        start = time.perf_counter()
        feats[label] = features.encode(
            encoder,
            examples,
            "mean",
            pad_id=1,
            batch_size=64,
            device=device,
            mixed_precision=precision,
        )
        sync()
        timings[f"examples_per_s_{label}"] = len(examples) / (time.perf_counter() - start)
    diff = abs(feats["bf16"] - feats["fp32"]).max() / (abs(feats["fp32"]).max() + 1e-12)
    return {**timings, "max_rel_feature_diff_bf16": float(diff)}


def finetune_check(tiny: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import generated_frame
    from weightspace.train import finetune

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "toy"
        data.mkdir()
        for split, n, s in (("train", 256, 0), ("validation", 64, 1), ("test", 64, 2)):
            generated_frame(n, seed=s).to_parquet(data / f"{split}.parquet", index=False)
        (data / "meta.json").write_text(
            json.dumps(
                {
                    "name": "toy",
                    "task": "sentiment",
                    "num_labels": 2,
                    "label_names": ["neg", "pos"],
                    "has_text_pair": False,
                }
            )
        )
        settings = finetune.Settings(
            epochs=3,
            batch_size=16,
            learning_rate=1e-3,
            max_length=32,
            mixed_precision="auto",
            checkpoint_every=5,
        )
        runs = []
        for name in ("a", "b"):
            metrics = finetune.finetune(
                tiny, data, Path(tmp) / name, settings, threads=1, model_id=f"toy.{name}"
            )
            runs.append(metrics)
        from safetensors.torch import load_file

        a, b = (load_file(str(Path(tmp) / n / "model.safetensors")) for n in ("a", "b"))
        out["precision"] = runs[0].get("precision") or runs[0].get("settings", {}).get(
            "mixed_precision"
        )
        out["device"] = runs[0].get("device")
        out["test_accuracy"] = runs[0]["test"]["accuracy"]
        out["examples_per_second"] = [r["examples_per_second"] for r in runs]
        out["bitwise_equal_reruns"] = all(torch.equal(a[k], b[k]) for k in a)
        out["max_weight_diff_reruns"] = max(
            float((a[k].float() - b[k].float()).abs().max()) for k in a
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", type=Path, help="a tiny model folder for the end-to-end fine-tune"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--smoke", action="store_true", help="a small model on the CPU: does the script run"
    )
    args = parser.parse_args()
    global DEVICE
    if args.smoke:
        DEVICE = torch.device("cpu")
        SIZES.update(layers=2, hidden=128, batch=8)
    elif not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this check runs on a GPU machine (--smoke runs it small on the CPU)"
        )
    device = DEVICE
    report = {
        "gpu": torch.cuda.get_device_name()
        if device.type == "cuda"
        else "none (smoke test on the CPU)",
        "torch": torch.__version__,
    }
    plain, skip, config = model_pair(device)
    batch = batch_of(SIZES["batch"], 16, 128, config.vocab_size, device)
    mask = batch["attention_mask"]
    report["padding_share"] = 1 - float(mask.sum()) / mask.numel()
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        report[f"agreement_{label}"] = agreement(plain, skip, batch, dtype)
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for name, model in (("padded", plain), ("skip", skip)):
            report[f"train_{label}_{name}"] = throughput(model, batch, dtype, args.steps)
        report[f"ratio_skip_{label}"] = (
            report[f"train_{label}_skip"]["steps_per_s"]
            / report[f"train_{label}_padded"]["steps_per_s"]
        )
    report["ratio_bf16_over_fp32_skip"] = (
        report["train_bf16_skip"]["steps_per_s"] / report["train_fp32_skip"]["steps_per_s"]
    )
    # dynamic padding: every batch its own width (what fine-tuning and encoding really see)
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for name, model in (("padded", plain), ("skip", skip)):
            for cudnn in (True, False):
                key = (
                    f"varying_{label}_{name}_{'cudnn_sdp' if cudnn else 'no_cudnn_sdp'}_steps_per_s"
                )
                report[key] = varying_throughput(model, config, dtype, args.steps, cudnn)
    del plain, skip
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report["features"] = features_check(device)
    if args.tiny:
        report["finetune"] = finetune_check(args.tiny)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
