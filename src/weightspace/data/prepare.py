"""Dataset preparation: read one source (builtin, hub or files), clean, split, cap, write
results/data/{name}/.

The output of a dataset is train/validation/test parquet files with columns `text`,
optional `text_pair`, and `label` (int64, 0..num_labels-1), plus `meta.json` (label names,
counts, what was dropped, where the data came from and its checksum). meta.json is written
last: its presence marks a finished preparation.

Cleaning: rows without a label or with an empty (whitespace-only) text are dropped, then
exact duplicates (text + text_pair) within a split, then examples already in an earlier
split (train < validation < test), so nothing of the test set leaks into training. Missing
validation/test splits are carved from train (seeded, stratified); caps subsample each split
the same way. Every problem with the input is a WeightspaceError naming the dataset, the
file and the column.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from weightspace import WeightspaceError
from weightspace.digest import file_digest

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")  # the splits a source may have
# and what preparation writes: `probe` holds training examples the fine-tunes never see, for the
# linear probe (a fine-tuned encoder has memorised its own training split: a probe fitted there
# is overconfident on test)
PREPARED_SPLITS = SPLITS + ("probe",)
FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")
DEFAULTS = {"validation_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0}
DROP_REASONS = ("missing_label", "empty", "duplicate", "in_earlier_split")
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ---------------------------------------------------------------- settings


def settings(spec: dict, defaults: dict | None = None) -> dict:
    """A dataset entry merged with the config's `data:` defaults
    (the entry wins; caps merge per split).

    max_length is left out: it is a tokenisation setting of the training stages, and changing
    it must not re-prepare (and so retrain) the data.
    """
    defaults = dict(defaults or {})
    merged = {
        **DEFAULTS,
        **{k: v for k, v in defaults.items() if k != "max_examples"},
        **dict(spec),
    }
    caps = {**dict(defaults.get("max_examples") or {}), **dict(spec.get("max_examples") or {})}
    merged["max_examples"] = caps
    merged.pop("max_length", None)
    if merged.get("label_map"):  # YAML may give integer keys: values are matched as text
        merged["label_map"] = {str(k).strip(): v for k, v in merged["label_map"].items()}
    # a canonical order: Snakemake compares params, and reordering keys in the YAML must not rerun
    return _canonical(merged)


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    return value


# ---------------------------------------------------------------- reading sources


@dataclass
class _Raw:
    """One split as read from the source, and how to name it in messages."""

    frame: pd.DataFrame
    where: str  # "train file /x/train.csv", "hub dataset glue[sst2] split 'validation'", ...


@dataclass
class _Source:
    splits: dict[str, _Raw]
    description: dict
    checksum: dict
    columns: dict  # our column -> the source's column name (text_pair may be None)
    label_names: list | None = None  # class names declared by the source (hub ClassLabel)
    notes: list = field(default_factory=list)


def file_format(path: Path, fmt: str | None = None) -> str | None:
    """The format named in the config, or the one the extension says
    (compression suffixes skipped)."""
    if fmt:
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return EXTENSIONS.get(suffixes[-1]) if suffixes else None


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    if fmt in ("csv", "tsv"):
        # strings as written: 'NA' or 'null' is text, only an empty field is missing
        return pd.read_csv(
            path,
            sep="," if fmt == "csv" else "\t",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
        )
    if fmt in ("json", "jsonl"):
        return pd.read_json(path, lines=fmt == "jsonl", dtype=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    raise ValueError(f"unknown format {fmt}")


def _columns(spec: dict) -> dict:
    """Our column -> the source's (hub and files sources; builtins come as text, label)."""
    columns = {"text": "text", "text_pair": None, "label": "label"}
    columns.update(spec.get("columns") or {})
    return columns


def _load_files(name: str, spec: dict) -> _Source:
    splits, formats, checksums = {}, {}, {}
    for split, given in spec["files"].items():
        path = Path(given)
        where = f"{split} file {path}"
        if not path.is_file():
            raise WeightspaceError(
                f"dataset '{name}': {where} does not exist "
                f"(config key datasets.{name}.files.{split})"
            )
        fmt = file_format(path, spec.get("format"))
        if fmt not in FORMATS:
            raise WeightspaceError(
                f"dataset '{name}': cannot tell the format of {where} from its extension; "
                f"set datasets.{name}.format to one of {', '.join(FORMATS)}"
            )
        try:
            frame = read_table(path, fmt)
        except Exception as exc:  # corrupt, truncated, wrong format: say which file
            raise WeightspaceError(
                f"dataset '{name}': cannot read {where} as {fmt} ({type(exc).__name__}: {exc})"
            ) from exc
        splits[split] = _Raw(frame, where)
        formats[split] = fmt
        checksums[str(path)] = file_digest(path)
    return _Source(
        splits=splits,
        columns=_columns(spec),
        checksum={"sha256": checksums},
        description={
            "kind": "files",
            "files": {s: str(p) for s, p in spec["files"].items()},
            "format": formats,
        },
    )


def _load_builtin(name: str, spec: dict) -> _Source:
    from weightspace.data import registry

    try:
        raw = registry.load(spec["builtin"])
        paths = registry.files(spec["builtin"])
        description = {"kind": "builtin", **registry.describe(spec["builtin"])}
    except WeightspaceError as exc:
        raise WeightspaceError(f"dataset '{name}': {exc}") from exc
    shown = ", ".join(map(str, paths))
    splits = {
        split: _Raw(frame, f"{split} split of builtin '{spec['builtin']}' ({shown})")
        for split, frame in raw.items()
    }
    checksum = {
        "sha256": {label: file_digest(path) for label, path in zip(description["files"], paths)}
    }
    return _Source(
        splits=splits,
        description=description,
        checksum=checksum,
        columns={"text": "text", "text_pair": None, "label": "label"},
    )


def _load_hub(name: str, spec: dict) -> _Source:
    """Hugging Face datasets (users with internet). Split map: ours -> the source's."""
    import datasets

    from weightspace.model import hub as hub_pins

    hub, subset, revision = spec["hub"], spec.get("subset"), spec.get("revision")
    shown = (
        f"hub dataset {hub}"
        + (f"[{subset}]" if subset else "")
        + (f"@{revision}" if revision else "")
    )
    # one commit for every split, recorded in meta.json
    # (None where the hub cannot say, e.g. offline)
    commit = hub_pins.resolve_commit(hub, revision, repo_type="dataset")
    kwargs = {"revision": commit or revision} if commit or revision else {}
    try:
        loaded = datasets.load_dataset(hub, subset, **kwargs)
    except Exception as exc:
        raise WeightspaceError(
            f"dataset '{name}': cannot load {shown} ({type(exc).__name__}: {exc}); "
            "hub datasets need internet (and HF_HUB_OFFLINE unset) or a local cache"
        ) from exc
    available = list(loaded.keys())
    mapping = dict(spec.get("splits") or {s: s for s in SPLITS if s in available})
    if "train" not in mapping:
        raise WeightspaceError(
            f"dataset '{name}': {shown} has no split 'train' (splits: {', '.join(available)}); "
            f"map one with datasets.{name}.splits.train"
        )
    columns = _columns(spec)
    splits, names, notes, fingerprints = _hub_splits(name, loaded, mapping, columns, shown)
    description = {
        "kind": "hub",
        "hub": hub,
        "subset": subset,
        "revision": revision,
        "commit": commit,
        "splits": mapping,
    }
    checksum = {"hub": shown, "commit": commit, "fingerprints": fingerprints}
    return _Source(
        splits=splits,
        description=description,
        checksum=checksum,
        columns=columns,
        label_names=names,
        notes=notes,
    )


def _hub_splits(
    name: str, loaded, mapping: dict, columns: dict, shown: str
) -> tuple[dict[str, _Raw], list | None, list, dict]:
    """(splits, class names, notes, fingerprints) of the mapped splits of a loaded hub dataset; a
    split other than train without any label is left out (made from train instead), with a note."""
    import datasets

    available = list(loaded.keys())
    splits, names, notes, fingerprints = {}, None, [], {}
    for ours, theirs in mapping.items():
        if theirs not in loaded:
            raise WeightspaceError(
                f"dataset '{name}': {shown} has no split '{theirs}' "
                f"(config key datasets.{name}.splits.{ours}); splits: {', '.join(available)}"
            )
        part = loaded[theirs]
        frame = part.to_pandas()
        feature = (getattr(part, "features", None) or {}).get(columns["label"])
        if isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
            # ClassLabel marks unlabelled examples (e.g. GLUE test sets) with -1
            frame[columns["label"]] = frame[columns["label"]].where(frame[columns["label"]] >= 0)
        if (
            ours != "train"
            and columns["label"] in frame
            and frame[columns["label"]].isna().all()
            and len(frame)
        ):
            notes.append(f"{shown} split '{theirs}' has no labels: {ours} made from train instead")
            log.warning(notes[-1])
            continue
        splits[ours] = _Raw(frame, f"{ours} split of {shown} (split '{theirs}')")
        fingerprints[theirs] = getattr(part, "_fingerprint", None)
    return splits, names, notes, fingerprints


def load_source(name: str, spec: dict) -> _Source:
    kinds = [k for k in ("builtin", "hub", "files") if spec.get(k)]
    if len(kinds) != 1:
        raise WeightspaceError(
            f"dataset '{name}': give exactly one of builtin, hub, files (found: {kinds or 'none'})"
        )
    unknown = set(spec.get("files") or {}) - set(SPLITS) | set(spec.get("splits") or {}) - set(
        SPLITS
    )
    if unknown:
        raise WeightspaceError(
            f"dataset '{name}': unknown split(s) {sorted(unknown)}; splits are {', '.join(SPLITS)}"
        )
    if kinds == ["files"] and "train" not in spec["files"]:
        raise WeightspaceError(
            f"dataset '{name}': config key datasets.{name}.files.train is missing"
        )
    return {"builtin": _load_builtin, "hub": _load_hub, "files": _load_files}[kinds[0]](name, spec)


# ---------------------------------------------------------------- cleaning


def _select(name: str, split: str, raw: _Raw, columns: dict) -> pd.DataFrame:
    """Our columns from the source's. A text column named as a list joins those columns with a space
    (e.g. COPA's premise and question); a row with any of them empty counts as empty."""
    wanted = {key: col for key, col in columns.items() if col}
    for key, col in wanted.items():
        for one in [col] if isinstance(col, str) else col:
            if one not in raw.frame.columns:
                raise WeightspaceError(
                    f"dataset '{name}': {raw.where} has no column '{one}' "
                    f"(config key datasets.{name}.columns.{key}); "
                    f"columns found: {', '.join(map(str, raw.frame.columns))}"
                )
    frame = pd.DataFrame(index=raw.frame.index)
    for key, col in wanted.items():
        if isinstance(col, str):
            frame[key] = raw.frame[col]
        else:
            parts = [raw.frame[c] for c in col]
            blank = pd.concat([_is_blank(p) for p in parts], axis=1).any(axis=1)
            joined = parts[0].astype(str).str.strip()
            for part in parts[1:]:
                joined = joined + " " + part.astype(str).str.strip()
            frame[key] = joined.where(~blank)
    return frame


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


def _clean(frame: pd.DataFrame, pairs: bool) -> tuple[pd.DataFrame, dict]:
    """Drop rows without a label, empty texts and duplicates within the split; count each."""
    dropped = dict.fromkeys(DROP_REASONS, 0)
    no_label = frame["label"].isna()
    dropped["missing_label"] = int(no_label.sum())
    frame = frame[~no_label]
    text_columns = ["text", "text_pair"] if pairs else ["text"]
    blank = pd.Series(False, index=frame.index)
    for column in text_columns:
        blank |= _is_blank(frame[column])
    dropped["empty"] = int(blank.sum())
    frame = frame[~blank].copy()
    for column in text_columns:
        frame[column] = frame[column].astype(str)
    duplicate = frame.duplicated(subset=text_columns, keep="first")
    dropped["duplicate"] = int(duplicate.sum())
    return frame[~duplicate].reset_index(drop=True), dropped


def _label_key(value) -> str:
    """How a label value is written, for matching a label_map key (1, 1.0 and '1' are all '1')."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _apply_label_map(labels: pd.Series, label_map: dict | None) -> pd.Series:
    if not label_map:
        return labels
    return labels.map(lambda v: label_map.get(_label_key(v), v))


def _mixed_kinds_error(name: str, where: str, column: str, values) -> WeightspaceError:
    shown = ", ".join(repr(v) for v in sorted({str(v) for v in values})[:12])
    return WeightspaceError(
        f"dataset '{name}': {where}, column '{column}': the labels mix numbers and names "
        f"({shown}), which would make each spelling its own class; say how to merge them with "
        f"datasets.{name}.label_map (e.g. label_map: {{0: neg, 1: pos}}) or fix the file"
    )


def _label_values(
    name: str, split: str, raw: _Raw, column: str, labels: pd.Series
) -> tuple[str, pd.Series]:
    """('int', ints) or ('str', strings): integer-looking labels are ints,
    anything else a class name.

    A column that mixes numbers and names (0, 1, pos, neg) is refused: see label_map.
    """
    if pd.api.types.is_bool_dtype(labels):
        return "str", labels.astype(str)
    if pd.api.types.is_integer_dtype(labels):
        return "int", labels.astype("int64")
    if pd.api.types.is_float_dtype(labels):
        if (labels % 1 != 0).any():
            example = labels[labels % 1 != 0].iloc[0]
            raise WeightspaceError(
                f"dataset '{name}': {raw.where}, column '{column}': "
                "labels must be class names or integers, "
                f"found non-integer numbers such as {example} (regression is not supported)"
            )
        return "int", labels.astype("int64")
    text = labels.astype(str).str.strip()
    if len(text) and text.map(lambda v: bool(_INTEGER.match(v))).all():
        return "int", text.astype("int64")
    numeric = text.map(lambda v: bool(_NUMBER.match(v)))
    if numeric.any() and not numeric.all():
        raise _mixed_kinds_error(name, raw.where, column, text.unique())
    return "str", text


def _sort_key(kind: str):
    return (lambda v: int(v)) if kind == "int" else (lambda v: str(v))


# ---------------------------------------------------------------- splitting and caps


def _split_off(
    frame: pd.DataFrame, size: int, seed: int, what: str, notes: list
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, taken): `size` rows taken, stratified by label where the class counts allow.

    Labels with a single example cannot be stratified: they stay in `rest` (the larger part);
    when the split is too small to hold every label, it falls back to a seeded random split.
    """
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    single = frame["label"].isin(counts.index[counts < 2])
    pool, aside = frame[~single], frame[single]
    n_classes = pool["label"].nunique()
    try:
        if not (n_classes and n_classes <= size <= len(pool) - n_classes):
            raise ValueError("too few examples per label")
        rest, taken = train_test_split(
            pool, test_size=size, random_state=seed, stratify=pool["label"]
        )
        rest = pd.concat([rest, aside])
        if len(aside):
            notes.append(
                f"{what}: {int(single.sum())} example(s) of labels seen once "
                "kept out of the stratified split"
            )
    except ValueError:
        rest, taken = train_test_split(frame, test_size=size, random_state=seed)
        notes.append(f"{what}: too few examples per label to stratify; seeded random split")
    return rest.sort_index(), taken.sort_index()


def _carve(
    name: str, frame: pd.DataFrame, fraction: float, base: int, seed: int, split: str, notes: list
) -> tuple[pd.DataFrame, pd.DataFrame]:
    size = max(1, round(fraction * base))
    if len(frame) - size < 1:
        raise WeightspaceError(
            f"dataset '{name}': only {len(frame)} training examples left after cleaning, "
            f"too few to make a {split} split of {fraction:.0%}; give a {split} file or more data"
        )
    return _split_off(frame, size, seed, f"{split} made from train", notes)


def _cap(frame: pd.DataFrame, cap: int | None, seed: int, split: str, notes: list) -> pd.DataFrame:
    if not cap or len(frame) <= cap:
        return frame
    return _split_off(frame, int(cap), seed, f"{split} capped at {cap}", notes)[1]


def _probe_split(
    train: pd.DataFrame, used: pd.DataFrame, caps: dict, seed: int, notes: list
) -> tuple[pd.DataFrame, str]:
    """(the probe's training examples, where they come from): 'held_out', training examples beyond
    the fine-tunes' cap (at most max_examples.probe, by default as many as train); 'train' where
    none are left."""
    rest = train.drop(index=used.index)
    if len(rest) == 0:
        notes.append(
            "probe: no training examples beyond the fine-tunes' split; "
            "the probe trains on that split "
            "(a model's probe loss on its own dataset then rewards memorisation)"
        )
        return used, "train"
    cap = caps.get("probe", caps.get("train"))
    return _cap(rest, cap, seed, "probe", notes), "held_out"


# ---------------------------------------------------------------- the whole preparation


def prepare(
    name: str, spec: dict, defaults: dict | None = None
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The prepared splits (text, [text_pair], label ids) and their meta, in memory.

    The steps: load the source; select and clean each split it has; drop what an earlier split
    holds; settle the labels; carve the missing splits from train; cap; the meta.
    """
    config = settings(spec, defaults)
    if "task" not in config:
        raise WeightspaceError(f"dataset '{name}': config key datasets.{name}.task is missing")
    source = load_source(name, config)
    pairs = bool(source.columns.get("text_pair"))
    notes = list(source.notes)
    seed = int(config["split_seed"])
    key_columns = ["text", "text_pair"] if pairs else ["text"]

    frames, dropped, kinds = _select_and_clean(name, source, config, pairs)
    _drop_earlier_splits(frames, dropped, key_columns)
    _check_usable(name, source, frames, dropped)
    label_names, ids = _label_ids(name, source, frames, kinds)
    made = _carve_missing(name, frames, config, seed, notes)
    available = {split: len(frames[split]) for split in SPLITS}
    capped, probe_source = _cap_splits(frames, config, seed, notes)
    out = {}
    for split in PREPARED_SPLITS:
        frame = capped[split].sort_index().reset_index(drop=True)
        frame["label"] = frame["label"].map(ids).astype("int64")
        out[split] = frame[key_columns + ["label"]]
    for note in notes:
        log.info("%s: %s", name, note)
    meta = _meta(
        name,
        config,
        source,
        out,
        label_names,
        probe_source=probe_source,
        available=available,
        dropped=dropped,
        made=made,
        notes=notes,
    )
    return out, meta


def _select_and_clean(
    name: str, source: _Source, config: dict, pairs: bool
) -> tuple[dict[str, pd.DataFrame], dict[str, dict], dict[str, str]]:
    """(frames, dropped, kinds) of every split the source has: our columns, cleaned, the label_map
    applied; the counts dropped per reason; each non-empty split's label kind ('int' or 'str')."""
    columns = source.columns
    frames, dropped, kinds = {}, {}, {}
    for split in SPLITS:
        if split not in source.splits:
            continue
        raw = source.splits[split]
        frame, dropped[split] = _clean(_select(name, split, raw, columns), pairs)
        frame["label"] = _apply_label_map(frame["label"], config.get("label_map"))
        if len(frame):
            kinds[split], frame["label"] = _label_values(
                name, split, raw, columns["label"], frame["label"]
            )
        frames[split] = frame
    return frames, dropped, kinds


def _drop_earlier_splits(frames: dict, dropped: dict, key_columns: list[str]) -> None:
    """Nothing of an earlier split again in a later one (no test leakage); counted in ``dropped``.
    Replaces the frames in ``frames``."""
    seen: set = set()
    for split in SPLITS:
        if split not in frames:
            continue
        keys = pd.Series(
            list(zip(*(frames[split][c] for c in key_columns))),
            index=frames[split].index,
            dtype=object,
        )
        again = keys.isin(seen)
        dropped[split]["in_earlier_split"] = int(again.sum())
        frames[split] = frames[split][~again].reset_index(drop=True)
        seen.update(keys[~again])


def _check_usable(name: str, source: _Source, frames: dict, dropped: dict) -> None:
    """Every split the source has keeps at least one example after cleaning."""
    columns = source.columns
    for split, frame in frames.items():
        if len(frame) == 0:
            d = dropped[split]
            raise WeightspaceError(
                f"dataset '{name}': {source.splits[split].where} has no usable examples in column "
                f"'{columns['text']}' after cleaning (dropped {d['missing_label']} without a label "
                f"in column '{columns['label']}', {d['empty']} empty texts, "
                f"{d['duplicate']} duplicates, {d['in_earlier_split']} already in an earlier split)"
            )


def _label_ids(name: str, source: _Source, frames: dict, kinds: dict) -> tuple[list[str], dict]:
    """(label names, label value -> id): one kind for all splits; names from the training split (or
    the source's class names). String labels are made strings in ``frames``."""
    if len(set(kinds.values())) > 1:  # e.g. train labelled 0/1, test pos/neg
        where = "; ".join(f"{source.splits[s].where}: {kinds[s]}" for s in kinds)
        values = [v for f in frames.values() for v in f["label"].astype(str).unique()]
        raise _mixed_kinds_error(
            name, f"splits of different label kinds ({where})", source.columns["label"], values
        )
    kind = "int" if all(k == "int" for k in kinds.values()) else "str"
    if kind == "str":
        for frame in frames.values():
            frame["label"] = frame["label"].astype(str)
    label_column, train_where = source.columns["label"], source.splits["train"].where
    train_values = sorted(frames["train"]["label"].unique().tolist(), key=_sort_key(kind))
    if len(train_values) < 2:
        raise WeightspaceError(
            f"dataset '{name}': {train_where}, column '{label_column}': only one label value "
            f"({train_values[0]!r}) after cleaning; a classifier needs at least two"
        )
    for split in ("validation", "test"):
        if split in frames:
            unseen = sorted(
                set(frames[split]["label"].unique().tolist()) - set(train_values),
                key=_sort_key(kind),
            )
            if unseen:
                raise WeightspaceError(
                    f"dataset '{name}': {source.splits[split].where}, column '{label_column}': "
                    f"label values {', '.join(map(repr, unseen[:10]))} "
                    f"do not occur in the {train_where}"
                )
    if source.label_names is not None and kind == "int":
        label_names = [str(n) for n in source.label_names]
        bad = [v for v in train_values if not 0 <= v < len(label_names)]
        if bad:
            raise WeightspaceError(
                f"dataset '{name}': {train_where}, column '{label_column}': "
                f"label ids {bad[:10]} are outside the source's {len(label_names)} class names"
            )
        return label_names, {v: v for v in train_values}
    return [str(v) for v in train_values], {v: i for i, v in enumerate(train_values)}


def _carve_missing(name: str, frames: dict, config: dict, seed: int, notes: list) -> list[str]:
    """Missing test and validation splits carved from train (fractions of the cleaned source's
    train size), in ``frames``; the splits made."""
    base = len(frames["train"])
    made = []
    if "test" not in frames:
        frames["train"], frames["test"] = _carve(
            name, frames["train"], config["test_fraction"], base, seed, "test", notes
        )
        made.append("test")
    if "validation" not in frames:
        frames["train"], frames["validation"] = _carve(
            name, frames["train"], config["validation_fraction"], base, seed, "validation", notes
        )
        made.append("validation")
    return made


def _cap_splits(frames: dict, config: dict, seed: int, notes: list) -> tuple[dict, str]:
    """(the splits capped at max_examples, the probe split included; where the probe's examples
    come from)."""
    caps = config.get("max_examples") or {}
    capped = {split: _cap(frames[split], caps.get(split), seed, split, notes) for split in SPLITS}
    capped["probe"], probe_source = _probe_split(
        frames["train"], capped["train"], caps, seed, notes
    )
    return capped, probe_source


def _meta(
    name: str,
    config: dict,
    source: _Source,
    out: dict[str, pd.DataFrame],
    label_names: list[str],
    probe_source: str,
    available: dict,
    dropped: dict,
    made: list,
    notes: list,
) -> dict:
    """meta.json of a prepared dataset."""
    totals = {reason: sum(d[reason] for d in dropped.values()) for reason in DROP_REASONS}
    return {
        "name": name,
        "task": config["task"],
        "num_labels": len(label_names),
        "label_names": label_names,
        "has_text_pair": bool(source.columns.get("text_pair")),
        "counts": {split: len(out[split]) for split in SPLITS},
        "label_counts": {
            split: {
                label_names[i]: int(n)
                for i, n in sorted(out[split]["label"].value_counts().items())
            }
            for split in SPLITS
        },
        # probe.parquet: see _probe_split
        "probe_split": {"from": probe_source, "count": len(out["probe"])},
        "available": available,
        "dropped": {**totals, "by_split": dropped},
        "splits_made": made,
        "notes": notes,
        "columns": {k: v for k, v in source.columns.items() if v},
        "source": source.description,
        "checksum": source.checksum,
        "config": config,
    }


def write_prepared(splits: dict[str, pd.DataFrame], meta: dict, out_dir: str | Path) -> None:
    from weightspace.atomic import write_json, write_parquet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # an old meta.json would vouch for half-replaced splits if this run were killed midway
    (out_dir / "meta.json").unlink(missing_ok=True)
    for split in PREPARED_SPLITS:
        write_parquet(out_dir / f"{split}.parquet", splits[split])
    write_json(out_dir / "meta.json", meta)


def prepare_dataset(name: str, spec: dict, defaults: dict | None, out_dir: str | Path) -> dict:
    """Prepare one dataset into out_dir ({train,validation,test,probe}.parquet, meta.json last);
    return its meta."""
    splits, meta = prepare(name, spec, defaults)
    write_prepared(splits, meta, out_dir)
    log.info(
        "%s: %s examples (train/validation/test), probe split %d (%s), %d labels, dropped %s",
        name,
        "/".join(str(meta["counts"][s]) for s in SPLITS),
        meta["probe_split"]["count"],
        meta["probe_split"]["from"],
        meta["num_labels"],
        {k: v for k, v in meta["dropped"].items() if k != "by_split"},
    )
    return meta
