"""A few-shot fine-tune's training rows: finetune.subsample draws, in numpy, exactly the rows (in
their order) that scikit-learn's train_test_split drew, and imports no scikit-learn."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from weightspace.train.finetune import subsample

sklearn_split = pytest.importorskip("sklearn.model_selection")


def sklearn_subsample(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """subsample as it was: scikit-learn's train_test_split."""
    if not size or size >= len(frame):
        return frame
    counts = frame["label"].value_counts()
    stratify = frame["label"] if counts.min() >= 2 and size >= len(counts) else None
    subset, _ = sklearn_split.train_test_split(
        frame, train_size=size, random_state=seed, stratify=stratify
    )
    return subset.reset_index(drop=True)


def random_frame(rng: random.Random) -> pd.DataFrame:
    n = rng.choice([3, 5, 10, 16, 50, 64, 65, 100, 257, 1000, 3000])
    k = rng.choice([1, 2, 3, 4, 6, 20])
    shape = rng.choice(["balanced", "skewed", "rare"])
    if shape == "balanced":
        labels = [rng.randrange(k) for _ in range(n)]
    elif shape == "skewed":  # a few labels hold most rows
        labels = [min(int(rng.expovariate(1.0) * k / 2), k - 1) for _ in range(n)]
    else:  # one label with a single row or two: stratifying is refused or tight
        labels = [rng.randrange(max(k - 1, 1)) for _ in range(n)]
        for i in rng.sample(range(n), min(n, rng.choice([1, 2]))):
            labels[i] = k
    if rng.random() < 0.2:
        labels = [f"class {label}" for label in labels]
    texts = [f"text {i} {rng.random():.6f}" for i in range(n)]
    return pd.DataFrame({"text": texts, "label": labels, "row": range(n)})


def outcome(draw, frame, size, seed):
    try:
        return draw(frame, size, seed)
    except ValueError:
        return None


def test_the_rows_and_their_order_are_scikit_learns():
    rng = random.Random(26)
    compared = {"stratified": 0, "shuffled": 0, "refused": 0, "whole": 0}
    for _ in range(1500):
        frame = random_frame(rng)
        n = len(frame)
        if rng.random() < 0.1:  # no subset: the whole frame
            size = rng.choice([None, 0, n, n + 5])
        else:  # a few-shot size, a random one, the extremes
            few = min(rng.choice([8, 16, 32, 64]), n - 1)
            size = rng.choice([few, few, rng.randint(1, n - 1), rng.randint(1, n - 1), 2, n - 1])
        seed = rng.choice([0, 1, 42, rng.randrange(2**31)])
        theirs = outcome(sklearn_subsample, frame, size, seed)
        ours = outcome(subsample, frame, size, seed)
        if theirs is None:
            assert ours is None, (n, size, seed)
            compared["refused"] += 1
            continue
        assert ours is not None, (n, size, seed)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        assert ours["row"].tolist() == theirs["row"].tolist()
        if not size or size >= n:
            assert ours is frame
            compared["whole"] += 1
        elif frame["label"].value_counts().min() >= 2 and size >= frame["label"].nunique():
            compared["stratified"] += 1
        else:
            compared["shuffled"] += 1
    # every path was exercised, stratified most
    assert compared["stratified"] > 500 and compared["shuffled"] > 100, compared
    assert compared["refused"] > 5 and compared["whole"] > 30, compared


def test_a_few_shot_subset_keeps_every_label_and_depends_on_the_seed():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(600)], "label": np.arange(600) % 6})
    subsets = [subsample(frame, 64, seed) for seed in range(3)]
    for subset in subsets:
        assert len(subset) == 64 and set(subset["label"]) == set(range(6))
        assert subset.index.tolist() == list(range(64))
        assert subset["label"].value_counts().min() >= 10
    assert subsets[0]["text"].tolist() != subsets[1]["text"].tolist()
    assert subsample(frame, 64, 1).equals(subsets[1])


def test_the_fine_tune_path_imports_no_scikit_learn_nor_scipy():
    """What the finetune and finetune_from scripts import, then a subset drawn: in a fresh process,
    neither scikit-learn nor scipy is imported."""
    code = (
        "import json, sys\n"
        "import pandas as pd\n"
        "from weightspace import logs\n"
        "from weightspace.train import finetune\n"
        "frame = pd.DataFrame({'text': list('abcdefghij') * 10, 'label': [0, 1] * 50})\n"
        "subset = finetune.subsample(frame, 8, 3)\n"
        "print(json.dumps({'rows': len(subset), 'loaded': sorted(\n"
        "    {m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'})}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"rows": 8, "loaded": []}
