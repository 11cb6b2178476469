"""Export a study's fine-tunes as Hugging Face folders, the form in which another study (or anyone)
brings them back (config key models).

Each fine-tune becomes {out}/{dataset}_seed{seed}/ with its config.json (architectures named as
the sequence classifier it is), its model.safetensors as trained (encoder and head) and the base's
tokenizer files. A folder is written beside its final name and renamed, so a killed export leaves
no half folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from weightspace import WeightspaceError
from weightspace.atomic import atomic_folder
from weightspace.model.base_model import TOKENIZER_FILES


def _classifier_config(config: dict) -> dict:
    names = config.get("architectures") or []
    config["architectures"] = [
        n[: -len("Model")] + "ForSequenceClassification" if n.endswith("Model") else n
        for n in names
    ]
    return config


def export_finetunes(results: str | Path, out: str | Path) -> list[Path]:
    """Write every fine-tune under results/finetune as a Hugging Face folder under ``out``."""
    results, out = Path(results), Path(out)
    base = results / "base"
    runs = sorted(results.glob("finetune/*/seed*/model.safetensors"))
    if not runs:
        raise WeightspaceError(f"{results}/finetune holds no fine-tuned model.safetensors")
    if not (base / "config.json").exists():
        raise WeightspaceError(f"{base} has no config.json: run the study's base_model first")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for weights in runs:
        run = weights.parent
        folder = out / f"{run.parent.name}_{run.name}"
        with atomic_folder(folder) as tmp:
            config = json.loads((run / "config.json").read_text())
            (tmp / "config.json").write_text(json.dumps(_classifier_config(config), indent=2))
            shutil.copyfile(weights, tmp / "model.safetensors")
            for name in TOKENIZER_FILES:
                if (base / name).exists():
                    shutil.copyfile(base / name, tmp / name)
        written.append(folder)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m weightspace export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("results", help="a study's results folder")
    parser.add_argument("out", help="where the Hugging Face folders go")
    args = parser.parse_args(argv)
    for folder in export_finetunes(args.results, args.out):
        print(folder)
    return 0
