"""Every builtin dataset loads offline from its real installed package; two prepare into valid
files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from weightspace import digest
from weightspace.data import prepare, registry

pytestmark = pytest.mark.packaged

# raw rows as read (before cleaning), labels, and unique texts (DATA.md's counts) of the pinned
# packages
EXPECTED = {
    "rotten_tomatoes": ({"train": 12808}, 2, 12752),
    "amazon_fine_foods": ({"train": 4000, "test": 1000}, 2, 4973),
    "vader_amazon": ({"train": 2985}, 2, 2977),
    "vader_nyt_editorials": ({"train": 2970}, 2, 2931),
    "vader_movies": ({"train": 10072}, 2, 10070),
    "vader_tweets": ({"train": 3432}, 2, 3432),
    "crowdflower_tweets": ({"train": 38158}, 3, 37243),
    "trec_coarse": ({"train": 15452}, 6, 5381),
    "trec_fine": ({"train": 15452}, 50, 5381),
    "newsgroups": ({"train": 11314, "test": 7532}, 20, None),
    "sms_spam": ({"train": 5574}, 2, 5171),
}


def test_every_builtin_is_covered():
    assert set(EXPECTED) == set(registry.names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_loads_offline_with_plausible_contents(name):
    sizes, num_labels, unique = EXPECTED[name]
    splits = registry.load(name)
    assert {s: len(f) for s, f in splits.items()} == sizes
    every = pd.concat(splits.values())
    assert list(every.columns) == ["text", "label"]
    assert every["label"].nunique() == num_labels >= 2
    assert every["label"].value_counts().min() >= 2  # no stray label from a misparsed line
    texts = every["text"].dropna().astype(str)
    assert texts.str.strip().ne("").mean() > 0.95 and texts.str.len().median() > 20
    if unique is not None:
        assert texts.nunique() == unique
    info = registry.describe(name)
    assert info["version"] and info["citation"] and info["license"]
    assert all(path.is_file() for path in registry.files(name))


def test_known_labels_and_recipes():
    # 'plot' dropped
    assert set(registry.load("rotten_tomatoes")["train"]["label"]) == {"fresh", "rotten"}
    assert set(registry.load("vader_tweets")["train"]["label"]) == {"negative", "positive"}
    assert set(registry.load("trec_coarse")["train"]["label"]) == {
        "ABBR",
        "DESC",
        "ENTY",
        "HUM",
        "LOC",
        "NUM",
    }
    assert "HUM:ind" in set(registry.load("trec_fine")["train"]["label"])
    assert set(registry.load("sms_spam")["train"]["label"]) == {"ham", "spam"}
    assert set(registry.load("amazon_fine_foods")["test"]["label"]) == {"great", "other"}


@pytest.mark.parametrize(
    "name, made", [("trec_coarse", ["test", "validation"]), ("amazon_fine_foods", ["validation"])]
)
def test_prepare_real_builtin_writes_valid_files(tmp_path, name, made):
    defaults = {"max_examples": {"train": 120, "validation": 30, "test": 60}, "split_seed": 0}
    meta = prepare.prepare_dataset(
        name, {"task": "topic", "builtin": name}, defaults, tmp_path / name
    )
    written = json.loads((tmp_path / name / "meta.json").read_text())
    assert written["counts"] == {"train": 120, "validation": 30, "test": 60} == meta["counts"]
    assert (
        written["splits_made"] == made
        and written["source"]["package"] == registry.get(name).package
    )
    (path,) = registry.files(name)[:1]
    assert written["checksum"]["sha256"][written["source"]["files"][0]] == digest.file_digest(path)
    texts = []
    for split in prepare.SPLITS:
        frame = pd.read_parquet(tmp_path / name / f"{split}.parquet")
        assert list(frame.columns) == ["text", "label"] and frame["label"].dtype == "int64"
        assert frame["label"].between(0, written["num_labels"] - 1).all()
        assert frame["text"].str.strip().ne("").all() and not frame["text"].duplicated().any()
        texts.append(set(frame["text"]))
    assert not texts[0] & texts[2] and not texts[1] & texts[2] and not texts[0] & texts[1]
    train = pd.read_parquet(tmp_path / name / "train.parquet")
    assert train["label"].nunique() == written["num_labels"]  # stratified caps keep every class
