"""Ways to cut a heavy job's fixed start (imports, tokenizer, base model), measured against the
current way in fresh processes, and checked to change no computed number.

Every heavy job (finetune, finetune_from, evaluate_model, evaluate_group) is a new Python process:
Snakemake's preamble unpickles its `snakemake` object (importing snakemake), the script imports
torch and weightspace and sets up logging (weightspace.logs.to_file), and base_model's loaders
import transformers and load the base's tokenizer and encoder. Each variant below does exactly
that, on the packaged base (all-MiniLM-L6-v2) materialised as the workflow does, changing one
thing:

  current          as the jobs did before scan-once and numpy-subsample were adopted: the cyclic
                   garbage collector paused (weightspace.startup.collector_paused) around the
                   script's imports and in the loaders, which call AutoTokenizer / AutoModel.
                   from_pretrained (the jobs now also do scan-once, and a few-shot fine-tune
                   numpy-subsample: kept out of `current` here so that their savings stay measured)
  no-pause         the same with the collector running throughout (the way before the pause)
  direct-class     BertTokenizer / BertModel imported from their modules, not through Auto*
  env-switches     TRANSFORMERS_NO_ADVISORY_WARNINGS, TRANSFORMERS_VERBOSITY=error,
                   TORCHDYNAMO_DISABLE, HF_HUB_DISABLE_TELEMETRY set
  sync-load        HF_DEACTIVATE_ASYNC_LOAD=1 (from_pretrained without its loader thread pool)
  build+safetens   AutoModel.from_config under transformers.initialization.no_init_weights, then
                   safetensors.torch.load_file + load_state_dict(strict=True, assign=True), eval()
  tokenizer-fast   PreTrainedTokenizerFast.from_pretrained with BERT's model_input_names
  scan-once        transformers 5.23.0 scans its ~1,600 model files for __all__ twice per process
                   (transformers/__init__ and transformers/models/__init__; the per-folder
                   lru_cache holds 128 of ~550 folders, so the second scan misses everything): an
                   import hook gives that function an unbounded cache (same function, same result);
                   adopted as weightspace.startup.scan_transformers_once (the heavy jobs' scripts
                   and base_model's loaders call it)
  scan-cache       the same hook, caching define_import_structure's result for the models folder
                   on disk (keyed by version, path, the folder's and its __init__'s stat), so no
                   process scans
  all              scan-cache, build+safetens and tokenizer-fast together
  finetune-current current, then what a few-shot fine-tune did next (finetune.subsample as it was:
                   sklearn's train_test_split, stratified, 64 rows); the baseline of:
  numpy-subsample  the same rows drawn by SPLIT, sklearn's algorithm in numpy (no sklearn import,
                   which pulls scipy.stats); --split-check compares it with sklearn on random
                   splits; adopted as finetune.subsample (tests/test_subsample.py compares it too)

The hooks patch transformers only where its version is the pinned 5.23.0, and leave it as it is on
any error. Runs are interleaved (every round runs every variant, in a rotated order) after one
uncounted warm-up each (page cache, the scan cache). Prints the CPU, each variant's min and median
seconds from process start to a loaded encoder and tokenizer, the saving and ratio against
`current` from the same rounds, the medians of the phases (preamble, torch, transformers with its
Auto names, tokenizer, the BERT module's code, model load, subsample), the median CPU seconds
(user + system, steadier than wall time where other work shares the machine; the phase medians
also tell a real saving from noise), peak RSS, and whether everything it computes is bitwise the
current way's: the encoder's parameters and buffers, its last hidden state on a batch (one
thread), token ids of every text (single and paired, max_length 128 and 32), transformers' lazy
import tables, and eval mode / attention implementation. --classifier also checks that
build+safetens reproduces load_classifier's seeded head and the RNG state after it.

    .venv/bin/python benchmarks/job_start_candidates.py [--repeats 5]
        [--variants no-pause,scan-once] [--texts data/train.parquet] [--classifier]
        [--split-check 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# The import hook of scan-once / scan-cache, run in the job before transformers is imported.
HOOK = r"""
import functools, hashlib, importlib.abc, importlib.machinery, os, pickle, sys

PINNED = ("5.23.0",)  # the versions whose scan these patches were checked against


def _patch(module, mode, cache_dir):
    version = getattr(sys.modules.get("transformers"), "__version__", None)
    if version not in PINNED:
        return
    if mode == "once":
        scan = module.create_import_structure_from_path
        unbounded = functools.lru_cache(maxsize=None)(scan.__wrapped__)
        module.create_import_structure_from_path = unbounded
        return
    define = module.define_import_structure.__wrapped__

    @functools.lru_cache(maxsize=None)
    def define_import_structure(module_path, prefix=None):
        path = os.fspath(module_path)
        folder = os.path.dirname(path) if path.endswith(".py") else path
        init_py = os.path.join(folder, "__init__.py")
        if os.path.basename(folder) != "models" or not os.path.isfile(init_py):
            return define(module_path, prefix)  # a model's own folder: small, not cached
        try:
            init = os.stat(init_py)
            stamp = (version, path, prefix, os.stat(folder).st_mtime_ns,
                     init.st_mtime_ns, init.st_ino, init.st_size)
            key = hashlib.sha256(repr(stamp).encode()).hexdigest()[:24]
            file = os.path.join(cache_dir, f"transformers-imports-{key}.pickle")
            with open(file, "rb") as handle:
                return pickle.load(handle)
        except Exception:
            pass
        result = define(module_path, prefix)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{file}.{os.getpid()}.tmp"
            with open(tmp, "wb") as handle:
                pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, file)
        except Exception:
            pass
        return result

    module.define_import_structure = define_import_structure


class _ImportUtilsHook(importlib.abc.MetaPathFinder):
    def __init__(self, mode, cache_dir):
        self.mode, self.cache_dir = mode, cache_dir

    def find_spec(self, name, path=None, target=None):
        if name != "transformers.utils.import_utils":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                _patch(module, self.mode, self.cache_dir)
            except Exception:
                pass  # transformers as it is

        spec.loader.exec_module = exec_module
        return spec


def install(mode, cache_dir):
    if "transformers" not in sys.modules:
        sys.meta_path.insert(0, _ImportUtilsHook(mode, cache_dir))
"""

WORKER = r"""
import json, os, resource, sys, time
spec, base, log = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
t = {"start": float(sys.argv[4])}
import snakemake.iocontainers  # what the `script:` preamble's unpickling imports
t["preamble"] = time.time()
if spec["hook"]:
    hook = {}
    exec(spec["hook_source"], hook)
    hook["install"](spec["hook"], spec["cache_dir"])
from contextlib import nullcontext
if spec["pause"]:
    from weightspace.startup import collector_paused as pause
else:
    pause = nullcontext
with pause():  # the rule script's imports
    import torch
    from weightspace import logs
    from weightspace.model import base_model
t["torch"] = time.time()
logs.to_file(log)
trust = base_model.base_info(base)["trust_remote_code"]
with pause():  # base_model.load_tokenizer's import of transformers
    import transformers
    from transformers import AutoModel, AutoTokenizer
t["transformers"] = time.time()
with pause():  # base_model.load_tokenizer
    if spec["tokenizer"] == "current":
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust)
    elif spec["tokenizer"] == "direct":
        from transformers.models.bert.tokenization_bert import BertTokenizer
        tokenizer = BertTokenizer.from_pretrained(base)
    else:
        from transformers import PreTrainedTokenizerFast
        tokenizer = PreTrainedTokenizerFast.from_pretrained(
            base, model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        )
t["tokenizer"] = time.time()
with pause():  # base_model.load_encoder: the family's code (every variant imports it), the model
    import transformers.models.bert.modeling_bert
    t["model code"] = time.time()
    if spec["model"] == "current":
        model = AutoModel.from_pretrained(base, trust_remote_code=trust)
    elif spec["model"] == "direct":
        from transformers.models.bert.modeling_bert import BertModel
        model = BertModel.from_pretrained(base)
    else:
        from safetensors.torch import load_file
        from transformers import AutoConfig
        from transformers.initialization import no_init_weights
        config = AutoConfig.from_pretrained(base)
        with no_init_weights():
            model = AutoModel.from_config(config)
        weights = load_file(os.path.join(base, "model.safetensors"))
        model.load_state_dict(weights, strict=True, assign=True)
        model.eval()
t["model"] = time.time()
if spec["subsample"]:  # what a few-shot fine-tune does next: finetune.subsample, its training rows
    import pandas as pd
    texts = json.loads(open(spec["texts"]).read())
    frame = pd.DataFrame({"text": texts, "label": [i % 6 for i in range(len(texts))]})
    if spec["subsample"] == "sklearn":
        from sklearn.model_selection import train_test_split
        subset, _ = train_test_split(frame, train_size=64, random_state=3, stratify=frame["label"])
    else:
        split = {}
        exec(spec["split_source"], split)
        subset = frame.iloc[split["train_positions"](len(frame), 64, 3, frame["label"].to_numpy())]
t["subsample"] = time.time()
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu_seconds = usage.ru_utime + usage.ru_stime

# ---- what the start computed, for the bitwise check (not timed)
import hashlib
from weightspace.model.encoding import collate, tokenize
def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()[:16]
def tensors(named):
    return digest(*[x for k, v in sorted(named)
                    for x in (k, str(v.dtype), tuple(v.shape), v.detach().numpy().tobytes())])
texts = json.loads(open(spec["texts"]).read())
pairs = texts[1:] + texts[:1]
ids = [tokenize(tokenizer, texts, None, 128), tokenize(tokenizer, texts, pairs, 128),
       tokenize(tokenizer, texts, pairs, 32)]
torch.set_num_threads(1)
with torch.inference_mode():
    batch = collate(ids[1][:48], base_model.pad_id(tokenizer))
    hidden = model(**batch).last_hidden_state
def lazy(module):
    return digest(sorted(module._class_to_module.items()), sorted(module._modules),
                  sorted((k, sorted(v)) for k, v in module._object_missing_backend.items()))
check = {
    "weights": tensors(list(model.named_parameters()) + list(model.named_buffers())),
    "forward": digest(hidden.numpy().tobytes()),
    "token_ids": digest(json.dumps(ids)),
    "import_tables": digest(lazy(sys.modules["transformers"]),
                            lazy(sys.modules["transformers.models"])),
    "mode": [model.training, model.config._attn_implementation, str(model.dtype),
             base_model.pad_id(tokenizer)],
}
if spec["subsample"]:
    check["subset"] = digest(subset.index.tolist(), subset["text"].tolist())
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"stamps": t, "check": check, "max_rss_mb": rss, "cpu": cpu_seconds}))
"""

CLASSIFIER_CHECK = r"""
import json, os, sys, torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.initialization import no_init_weights
from weightspace.model import base_model
base = sys.argv[1]
torch.manual_seed(7)
current = base_model.load_classifier(base, 5)
after_current = torch.rand(8)
torch.manual_seed(7)
config = AutoConfig.from_pretrained(base, num_labels=5)
with no_init_weights():
    fast = AutoModelForSequenceClassification.from_config(config)
weights = load_file(os.path.join(base, "model.safetensors"))
state = {f"{fast.base_model_prefix}.{k}": v for k, v in weights.items()}
missing = fast.load_state_dict(state, strict=False, assign=True).missing_keys
# BERT's head init (_init_weights of a Linear): weight ~ N(0, initializer_range), bias 0
torch.nn.init.normal_(fast.classifier.weight, mean=0.0, std=config.initializer_range)
torch.nn.init.zeros_(fast.classifier.bias)
fast.eval()
after_fast = torch.rand(8)
a, b = current.state_dict(), fast.state_dict()
print(json.dumps({"missing": missing, "same_keys": list(a) == list(b),
                  "bitwise": all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a),
                  "rng_after_equal": torch.equal(after_current, after_fast),
                  "eval_mode": [current.training, fast.training]}))
"""

# sklearn.model_selection.train_test_split(frame, train_size=size, random_state=seed,
# stratify=labels)'s training rows in numpy alone: the prototype now lives in the library
# (weightspace.train.finetune, checked equal to sklearn 1.9.1 by tests/test_subsample.py and
# --split-check)
SPLIT = "from weightspace.train.finetune import _train_positions as train_positions\n"

CURRENT = {
    "pause": True,
    "hook": None,
    "tokenizer": "current",
    "model": "current",
    "env": {},
    "subsample": None,
}
VARIANTS = {
    "current": {},
    "no-pause": {"pause": False},
    "direct-class": {"tokenizer": "direct", "model": "direct"},
    "env-switches": {
        "env": {
            "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "TORCHDYNAMO_DISABLE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    },
    "sync-load": {"env": {"HF_DEACTIVATE_ASYNC_LOAD": "1"}},
    "build+safetens": {"model": "fast"},
    "tokenizer-fast": {"tokenizer": "fast"},
    "scan-once": {"hook": "once"},
    "scan-cache": {"hook": "disk"},
    "all": {"hook": "disk", "tokenizer": "fast", "model": "fast"},
    # a few-shot fine-tune's start: current, then its training subset drawn (compared with this)
    "finetune-current": {"subsample": "sklearn"},
    "numpy-subsample": {"subsample": "numpy"},
}
# the variant each is compared with
BASELINE = {"numpy-subsample": "finetune-current"}
PHASES = ("preamble", "torch", "transformers", "tokenizer", "model code", "model", "subsample")

WORDS = (
    "the a model of weights space fine tuned language encoder movie review was great terrible "
    "not bad quite good food taste amazon product tweet news question what who where when why "
    "how many is are were be can't won't it's don't I you they we she he running jumped quickly "
    "über naïve café résumé façade São Paulo Zürich Ångström 東京 日本語 中文 한국어 😀 👍 #tag "
    "@user http://example.com 3.14 1,000 $20 50% U.S.A. e-mail re-enter well-known"
).split()


def make_texts(path: Path, extra: str | None) -> None:
    """~300 deterministic texts: generated sentences of 1-300 words (so truncation bites), cased,
    accented, CJK, emoji, special-token strings, empty; plus a prepared split's texts if given."""
    rng = random.Random(0)
    texts = []
    for _ in range(300):
        words = [rng.choice(WORDS) for _ in range(rng.choice((1, 3, 8, 20, 40, 120, 300)))]
        text = " ".join(w.upper() if rng.random() < 0.1 else w for w in words)
        texts.append(text + rng.choice(("", ".", "!", " ?", "...")))
    texts += ["", "   ", "[CLS] [SEP] [PAD] [MASK] [UNK]", "x" * 3000, "Tab\tand\nnewline"]
    if extra:
        import pandas as pd

        texts += pd.read_parquet(extra)["text"].astype(str).tolist()
    path.write_text(json.dumps(texts))


def one_start(name: str, base: Path, work: Path) -> dict:
    spec = dict(CURRENT, **VARIANTS[name])
    spec.update(
        hook_source=HOOK,
        split_source=SPLIT,
        cache_dir=str(work / "cache"),
        texts=str(work / "texts.json"),
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(work)),
        "PYTHONPATH": str(REPO / "src"),
        "HF_HUB_OFFLINE": "1",
        **spec.pop("env"),
    }
    started = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            json.dumps(spec),
            str(base),
            str(work / "job.log"),
            repr(started),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stamps, previous, phases = result["stamps"], result["stamps"]["start"], {}
    for phase in PHASES:
        phases[phase] = stamps[phase] - previous
        previous = stamps[phase]
    return {
        "phases": phases,
        "total": stamps["subsample"] - stamps["start"],
        "check": result["check"],
        "cpu": result["cpu"],
        "rss": result["max_rss_mb"],
    }


def split_check(cases: int) -> str:
    """SPLIT's training rows against sklearn's train_test_split as finetune.subsample calls it, on
    random frames (1-20 classes, balanced and skewed, int and str labels, 5-5,000 rows)."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    split: dict = {}
    exec(SPLIT, split)
    rng, compared, differ = random.Random(1), 0, 0
    for _ in range(cases):
        n = rng.choice([5, 10, 50, 64, 65, 100, 257, 1000, 5000])
        k = rng.choice([1, 2, 3, 4, 6, 20])
        skew = rng.random() < 0.5
        labels = [
            min(int(rng.expovariate(1.0) * k / 2), k - 1) if skew else rng.randrange(k)
            for _ in range(n)
        ]
        if rng.random() < 0.2:
            labels = [f"c{label}" for label in labels]
        frame = pd.DataFrame({"label": labels, "text": [f"t{i}" for i in range(n)]})
        size, seed = rng.randint(1, n - 1), rng.randrange(10**6)
        counts = frame["label"].value_counts()
        stratify = frame["label"] if counts.min() >= 2 and size >= len(counts) else None
        try:
            theirs, _ = train_test_split(
                frame, train_size=size, random_state=seed, stratify=stratify
            )
        except ValueError:
            theirs = None
        try:
            ours = frame.iloc[
                split["train_positions"](
                    n, size, seed, None if stratify is None else stratify.to_numpy()
                )
            ]
        except ValueError:
            ours = None
        compared += 1
        if (theirs is None) != (ours is None) or (
            theirs is not None and not (ours.equals(theirs) and ours.index.equals(theirs.index))
        ):
            differ += 1
    import sklearn

    return f"numpy subsample vs sklearn {sklearn.__version__}: {differ} of {compared} splits differ"


def cpu_line() -> str:
    from weightspace import hardware

    flags = hardware.cpu_flags()
    bf16 = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no avx512_bf16/amx"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"CPU: {hardware.cpu_name()}, {os.cpu_count()} cores, {bf16}; "
        f"load average {load:.1f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, from: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--texts", help="a prepared split (.parquet, column text) to tokenize too")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="also check build+safetens against load_classifier's seeded head",
    )
    parser.add_argument(
        "--split-check",
        type=int,
        default=2000,
        metavar="N",
        help="random splits to compare numpy-subsample with sklearn on (0: none)",
    )
    args = parser.parse_args()
    names = ["current"] + [v for v in args.variants.split(",") if v and v != "current"]
    for variant, baseline in BASELINE.items():
        if variant in names and baseline not in names:
            names.insert(names.index(variant), baseline)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")

    import transformers

    from weightspace.model import base_model

    print(cpu_line())
    print(
        f"python {sys.version.split()[0]}, torch {__import__('torch').__version__}, "
        f"transformers {transformers.__version__}"
    )
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "base"
        base_model.materialise({"builtin": "all-MiniLM-L6-v2"}, base)
        make_texts(work / "texts.json", args.texts)
        if args.classifier:
            out = subprocess.run(
                [sys.executable, "-c", CLASSIFIER_CHECK, str(base)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
            )
            print(
                "classifier (build+safetens vs load_classifier, seed 7):",
                out.stdout.strip().splitlines()[-1],
            )
        if args.split_check and "numpy-subsample" in names:
            print(split_check(args.split_check))
        for name in names:  # warm-up: page cache, the scan cache; not counted
            one_start(name, base, work)
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                runs[name].append(one_start(name, base, work))
            print(f"  round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    reference: dict = {}  # each check's value in the first variant that computes it
    for name in names:
        for key, value in runs[name][0]["check"].items():
            reference.setdefault(key, value)
    print(
        f"\n{args.repeats} fresh processes per variant, interleaved; seconds from process start "
        "to a loaded tokenizer and encoder (and the drawn subset where there is one)"
    )
    print(
        f"{'variant':16s} {'min':>6s} {'median':>7s} {'saves(min/med)':>15s} {'ratio':>6s}  "
        + " ".join(f"{p.replace('model code', 'code')[:8]:>8s}" for p in PHASES)
        + f" {'CPU s':>6s} {'saves':>6s} {'RSS MB':>7s}  bitwise"
    )
    for name in names:
        baseline = BASELINE.get(name, "current") if BASELINE.get(name) in runs else "current"
        ref_min = min(x["total"] for x in runs[baseline])
        ref_med = statistics.median(x["total"] for x in runs[baseline])
        totals = [x["total"] for x in runs[name]]
        lo, med = min(totals), statistics.median(totals)
        cpu = statistics.median(x["cpu"] for x in runs[name])
        ref_cpu = statistics.median(x["cpu"] for x in runs[baseline])
        phases = [statistics.median(x["phases"][p] for x in runs[name]) for p in PHASES]
        checks = [x["check"] for x in runs[name]]
        differs = sorted({k for c in checks for k in c if c[k] != reference[k]})
        print(
            f"{name:16s} {lo:6.2f} {med:7.2f} {ref_min - lo:+7.2f}/{ref_med - med:+6.2f} "
            f"{med / ref_med:6.2f}  "
            + " ".join(f"{p:8.2f}" for p in phases)
            + f" {cpu:6.2f} {ref_cpu - cpu:+6.2f}"
            + f" {statistics.median(x['rss'] for x in runs[name]):7.0f}  "
            + ("identical" if not differs else "DIFFERS: " + ", ".join(differs))
        )
    print(
        "saves: the baseline's min - the variant's min / the baseline's median - the variant's "
        "median (s); ratio: the variant's median / the baseline's; CPU s: the process's median "
        "user + system seconds (steadier than wall time on a shared machine), saves: the "
        "baseline's median - the variant's; baseline: current, for "
        + ", ".join(f"{k}: {v}" for k, v in BASELINE.items())
    )


if __name__ == "__main__":
    main()
