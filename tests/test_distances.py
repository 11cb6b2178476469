"""Streamed Gram-matrix distances against direct numpy, the content-keyed cache, and the geometry
rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file
from scipy.spatial.distance import cdist

from weightspace import WeightspaceError
from weightspace.geometry import distances

SHAPES = {
    "embeddings.word_embeddings.weight": (50, 8),
    "embeddings.LayerNorm.weight": (8,),
    "encoder.layer.0.attention.self.query.weight": (8, 8),
    "encoder.layer.0.attention.output.dense.weight": (8, 8),
    "encoder.layer.0.intermediate.dense.weight": (300, 8),
    "encoder.layer.0.output.dense.weight": (8, 16),
    "encoder.layer.1.attention.self.query.weight": (8, 8),
    "encoder.layer.1.output.dense.bias": (8,),
    "pooler.dense.weight": (8, 8),
}
GROUPS = {
    "embeddings": r"^embeddings\.",
    "attention": r"\.attention\.",
    "feed_forward": r"\.layer\.[0-9]+\.(intermediate|output)\.",
}
MEMBERS = {  # what each group must hold, written out by hand
    "embeddings": ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight"],
    "attention": [
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.output.dense.weight",
        "encoder.layer.1.attention.self.query.weight",
    ],
    "feed_forward": [
        "encoder.layer.0.intermediate.dense.weight",
        "encoder.layer.0.output.dense.weight",
        "encoder.layer.1.output.dense.bias",
    ],
    "all": list(SHAPES),
}


def make_weights(rng, base=None, scale=0.05):
    if base is None:
        return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    return {k: (v + scale * rng.normal(size=v.shape)).astype(np.float32) for k, v in base.items()}


def write(path, tensors):
    save_file(tensors, str(path))
    return str(path)


def flat(tensors, names):
    return np.concatenate([tensors[n].astype(np.float64).ravel() for n in names])


@pytest.fixture()
def study(tmp_path):
    """pretrained + 5 perturbed models, files on disk, the arrays kept for direct computation."""
    rng = np.random.default_rng(0)
    pre = make_weights(rng)
    models = {"pretrained": pre}
    for i in range(5):
        models[f"d{i % 2}.seed{i}"] = make_weights(rng, pre, scale=0.01 * (i + 1))
    paths = [write(tmp_path / f"{m}.safetensors", t) for m, t in models.items()]
    return models, paths


def direct(models, names, metric, space):
    X = np.stack([flat(t, names) for t in models.values()])
    if space == "task_vector":
        X = X - X[0]
    D = cdist(X, X, metric="euclidean" if metric == "euclidean" else "cosine")
    if space == "task_vector" and metric == "cosine":
        D[0, :] = np.nan
        D[:, 0] = np.nan
    return D


def test_parameter_groups_select_by_regex():
    groups = distances.parameter_groups(list(SHAPES), GROUPS)
    assert {g: sorted(m) for g, m in groups.items()} == {g: sorted(m) for g, m in MEMBERS.items()}
    layers = distances.parameter_groups(list(SHAPES), {}, per_layer=True)
    assert sorted(layers) == ["all", "layer0", "layer1"]
    assert len(layers["layer0"]) == 4


# 1024 elements a model (many blocks) or one block a tensor
@pytest.mark.parametrize("block_mb", [1e-9, 256])
def test_distances_match_direct_numpy(study, block_mb):
    models, paths = study
    frame, info = distances.pairwise_distances(
        list(models), paths, groups=GROUPS, block_mb=block_mb
    )
    assert info["files_read"] == len(paths) and info["pairs_computed"] == 6 * 7 // 2
    assert set(frame.columns) == {"model_a", "model_b", "metric", "space", "group", "distance"}
    assert len(frame) == 36 * 2 * 2 * 4
    for group, names in MEMBERS.items():
        for metric in ("euclidean", "cosine"):
            for space in ("raw", "task_vector"):
                got = distances.square(frame, metric, space, group).to_numpy()
                want = direct(models, names, metric, space)
                np.testing.assert_allclose(
                    got,
                    want,
                    rtol=1e-9,
                    atol=1e-12,
                    equal_nan=True,
                    err_msg=f"{group} {metric} {space}",
                )


def test_euclidean_is_the_same_on_raw_weights_and_task_vectors(study):
    models, paths = study
    frame, _ = distances.pairwise_distances(list(models), paths, metrics=["euclidean"])
    raw = distances.square(frame, "euclidean", "raw").to_numpy()
    tv = distances.square(frame, "euclidean", "task_vector").to_numpy()
    np.testing.assert_allclose(raw, tv, rtol=1e-9)


def test_identical_files_share_a_row_and_have_distance_zero(study, tmp_path):
    models, paths = study
    copy = write(tmp_path / "copy.safetensors", models["d1.seed1"])
    frame, info = distances.pairwise_distances(
        [*models, "copy"], [*paths, copy], metrics=["euclidean"], spaces=["raw"]
    )
    D = distances.square(frame, "euclidean", "raw")
    assert info["distinct_files"] == len(paths)
    assert D.loc["copy", "d1.seed1"] == 0.0
    assert D.loc["copy", "pretrained"] == pytest.approx(D.loc["d1.seed1", "pretrained"], rel=1e-12)


class Counter:
    """Counts opened weights files, bytes read from each, and hashed files: what the run really
    read."""

    def __init__(self, monkeypatch):
        self.opened: list[str] = []
        self.hashed: list[str] = []
        self.bytes_read: dict[str, int] = {}
        counter, real_digest = self, distances.file_digest

        class Counting(distances.WeightsFile):
            def __init__(self, path):
                counter.opened.append(str(path))
                super().__init__(path)

            def read_rows(self, name, r0, r1, buffers=None):
                out = super().read_rows(name, r0, r1, buffers)
                counter.bytes_read[self.path] = counter.bytes_read.get(self.path, 0) + out.nbytes
                return out

        def counting_digest(path):
            self.hashed.append(str(path))
            return real_digest(path)

        monkeypatch.setattr(distances, "WeightsFile", Counting)
        monkeypatch.setattr(distances, "file_digest", counting_digest)


def data_bytes(path):
    return sum(end - start for _, _, start, end in distances.read_header(path).values())


def test_cache_reads_nothing_when_no_file_changed(study, tmp_path, monkeypatch):
    models, paths = study
    cache = tmp_path / "cache"
    first, _ = distances.pairwise_distances(list(models), paths, groups=GROUPS, cache_dir=cache)
    assert (cache / "gram.npz").exists() and (cache / "digests.json").exists()
    counter = Counter(monkeypatch)
    second, info = distances.pairwise_distances(list(models), paths, groups=GROUPS, cache_dir=cache)
    assert counter.opened == [] and counter.hashed == []  # no weights file touched
    assert info["files_read"] == 0 and info["pairs_computed"] == 0 and info["pairs_reused"] == 21
    pd.testing.assert_frame_equal(first, second)


def test_cache_computes_only_the_new_models_rows(study, tmp_path, monkeypatch):
    models, paths = study
    cache = tmp_path / "cache"
    distances.pairwise_distances(list(models), paths, groups=GROUPS, cache_dir=cache)
    # poison one cached old pair: if the old pair is reused rather than recomputed, the poison shows
    with np.load(cache / "gram.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["C.all"][1, 2] = arrays["C.all"][2, 1] = arrays["C.all"][1, 2] - 1.0
    np.savez(cache / "gram.npz", **arrays)

    rng = np.random.default_rng(7)
    extra = make_weights(rng, models["pretrained"], scale=0.02)
    new_path = write(tmp_path / "d2.seed0.safetensors", extra)
    ids, files = [*models, "d2.seed0"], [*paths, new_path]
    counter = Counter(monkeypatch)
    frame, info = distances.pairwise_distances(ids, files, groups=GROUPS, cache_dir=cache)
    assert counter.hashed == [new_path]  # the old files' digests come from the digest cache
    assert info["new_files"] == 1 and info["pairs_computed"] == 7 and info["pairs_reused"] == 21
    # the new rows need the old models' blocks: every file is opened once and each byte read once
    assert sorted(counter.opened) == sorted(files)
    assert counter.bytes_read == {p: data_bytes(p) for p in files}
    G = frame[(frame.metric == "euclidean") & (frame.space == "raw") & (frame.group == "all")]
    D = distances.square(G, "euclidean", "raw").to_numpy()
    want = direct({**models, "d2.seed0": extra}, list(SHAPES), "euclidean", "raw")
    np.testing.assert_allclose(D[-1], want[-1], rtol=1e-9)  # new pairs: computed
    # old pair: from the cache
    assert D[1, 2] == pytest.approx(np.sqrt(want[1, 2] ** 2 + 2.0), rel=1e-9)
    np.testing.assert_allclose(D[3:6, 3:6], want[3:6, 3:6], rtol=1e-9)


def test_a_file_whose_content_changed_is_recomputed(study, tmp_path):
    models, paths = study
    cache = tmp_path / "cache"
    distances.pairwise_distances(list(models), paths, cache_dir=cache, spaces=["raw"])
    changed = make_weights(np.random.default_rng(11), models["pretrained"], scale=0.5)
    write(paths[2], changed)  # same path, new content
    frame, info = distances.pairwise_distances(list(models), paths, cache_dir=cache, spaces=["raw"])
    assert info["new_files"] == 1 and info["files_hashed"] == 1
    updated = dict(models)
    updated[list(models)[2]] = changed
    for metric in ("euclidean", "cosine"):
        np.testing.assert_allclose(
            distances.square(frame, metric, "raw").to_numpy(),
            direct(updated, list(SHAPES), metric, "raw"),
            rtol=1e-9,
            atol=1e-12,
        )


def test_cache_of_other_groups_is_not_used(study, tmp_path):
    models, paths = study
    cache = tmp_path / "cache"
    distances.pairwise_distances(
        list(models), paths, cache_dir=cache, groups={"embeddings": r"^embeddings\."}
    )
    frame, info = distances.pairwise_distances(list(models), paths, cache_dir=cache, groups=GROUPS)
    assert info["pairs_computed"] == 21 and info["pairs_reused"] == 0
    np.testing.assert_allclose(
        distances.square(frame, "euclidean", "raw", "attention").to_numpy(),
        direct(models, MEMBERS["attention"], "euclidean", "raw"),
        rtol=1e-9,
    )


def test_near_identical_models_keep_their_tiny_distance(tmp_path):
    """Centred on a reference, the Gram does not lose a one-ulp difference to cancellation against
    ||a||²."""
    rng = np.random.default_rng(3)
    a = {k: (100 * v).astype(np.float32) for k, v in make_weights(rng).items()}  # large norms
    b = {k: v.copy() for k, v in a.items()}
    b["pooler.dense.weight"][0, 0] = np.nextafter(
        b["pooler.dense.weight"][0, 0], np.float32(np.inf)
    )
    paths = [
        write(tmp_path / "a.safetensors", a),
        write(tmp_path / "b.safetensors", b),
        write(tmp_path / "c.safetensors", a),
    ]
    frame, _ = distances.pairwise_distances(["a", "b", "c"], paths, spaces=["raw"])
    D = distances.square(frame, "euclidean", "raw")
    assert (frame["distance"].dropna() >= 0).all()
    assert D.loc["a", "c"] == 0.0
    step = abs(float(b["pooler.dense.weight"][0, 0]) - float(a["pooler.dense.weight"][0, 0]))
    assert D.loc["a", "b"] == pytest.approx(step, rel=1e-6)
    assert D.loc["b", "c"] == pytest.approx(step, rel=1e-6)


def test_cosine_of_nearly_parallel_models_keeps_its_digits(tmp_path):
    """Fine-tuned models are nearly parallel (1 - cos ~ 1e-5 here): 1 - G_ab/(|a||b|) would lose ~8
    digits."""
    rng = np.random.default_rng(0)
    p = (0.05 * rng.standard_normal(200_000)).astype(np.float32)
    a = p + (1e-3 * rng.standard_normal(p.size)).astype(np.float32)
    b = a + (3e-4 * rng.standard_normal(p.size)).astype(np.float32)
    paths = [
        write(tmp_path / f"{n}.safetensors", {"w": x.reshape(400, 500)})
        for n, x in (("pretrained", p), ("a", a), ("b", b))
    ]
    frame, _ = distances.pairwise_distances(["pretrained", "a", "b"], paths, metrics=["cosine"])
    A, B, P = (x.astype(np.float64) for x in (a, b, p))
    for space, (u, v) in (("raw", (A, B)), ("task_vector", (A - P, B - P))):
        # no cancellation
        exact = 0.5 * np.sum((u / np.linalg.norm(u) - v / np.linalg.norm(v)) ** 2)
        got = distances.square(frame, "cosine", space).loc["a", "b"]
        assert got == pytest.approx(exact, rel=1e-11), space


def test_bad_inputs_are_named(study, tmp_path):
    models, paths = study
    other = {k: v for k, v in models["pretrained"].items() if k != "pooler.dense.weight"}
    odd = write(tmp_path / "odd.safetensors", other)
    with pytest.raises(WeightspaceError, match="odd.safetensors"):
        distances.pairwise_distances([*models, "odd"], [*paths, odd])
    with pytest.raises(WeightspaceError, match="geometry.groups.ffn"):
        distances.pairwise_distances(list(models), paths, groups={"ffn": "nomatch"})
    with pytest.raises(WeightspaceError, match="pretrained"):
        distances.pairwise_distances(list(models)[1:], paths[1:], spaces=["task_vector"])
    with pytest.raises(WeightspaceError, match="missing.safetensors"):
        distances.pairwise_distances(["pretrained"], [str(tmp_path / "missing.safetensors")])


# ---------------------------------------------------------------- the rules, on their own


@pytest.mark.workflow
def test_geometry_rules_produce_every_output(tmp_path):
    """rules/geometry.smk with common.smk on ready-made weights files: every output, log and
    benchmark."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    layout = {"alpha": "sentiment", "beta": "sentiment", "gamma": "nli"}
    config = {
        "base_model": {"path": "unused"},
        "seeds": [0, 1],
        "datasets": {d: {"task": t, "files": {"train": "unused.csv"}} for d, t in layout.items()},
        "finetune": {"batch_size": 8, "learning_rate": 1e-3},
        "geometry": {"bootstrap": 50, "tsne": {"max_iter": 250}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    from snakemake.utils import validate

    from weightspace.plan import fusion

    filled = yaml.safe_load(yaml.safe_dump(config))
    # fills the defaults, as the workflow does
    validate(filled, str(repo / "schemas" / "config.schema.yaml"))
    fused = [f.model_id for f in fusion.fused_bases(filled)]
    rng = np.random.default_rng(0)
    pre = make_weights(rng)
    weights = tmp_path / "results" / "weights"
    weights.mkdir(parents=True)
    write(weights / "pretrained.safetensors", pre)
    for _d, dataset in enumerate(layout):
        centre = make_weights(rng, pre, scale=0.1)
        for seed in (0, 1):
            write(
                weights / f"{dataset}.seed{seed}.safetensors", make_weights(rng, centre, scale=0.01)
            )
    for model_id in fused:
        write(weights / f"{model_id}.safetensors", make_weights(rng, pre, scale=0.05))
    n = 7 + len(fused)
    (tmp_path / "Snakefile").write_text(
        f'configfile: "config.yaml"\ninclude: "{repo}/rules/common.smk"\n'
        f'include: "{repo}/rules/geometry.smk"\n'
        "rule geometry:\n    default_target: True\n"
        "    input: rules.cluster_stats.output, rules.projection.output\n"
    )
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    run = subprocess.run(
        [snakemake, "--cores", "2", "--directory", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-5000:]

    results = tmp_path / "results"
    long = pd.read_parquet(results / "geometry" / "distances.parquet")
    assert set(long["group"]) == {"all", "embeddings", "attention", "feed_forward"}
    assert len(long) == n * n * 2 * 2 * 4
    for metric in ("euclidean", "cosine"):
        for space in ("raw", "task_vector"):
            square = pd.read_csv(
                results / "geometry" / "square" / f"{metric}_{space}.csv", index_col=0
            )
            assert square.shape == (n, n) and square.index[0] == "pretrained"
    stats = pd.read_csv(results / "geometry" / "cluster_stats.csv")
    assert {"distance", "silhouette", "adjusted_rand", "purity", "nn1_accuracy"} <= set(
        stats["statistic"]
    )
    claims = pd.read_csv(results / "geometry" / "claims.csv")
    # 8 clustering claims per metric and space, the 2 task-vector cosine claims once; primary rows
    # first
    assert (
        len(claims) == 8 * 4 + 2
        and claims["primary"].iloc[:10].all()
        and not claims["primary"].iloc[10:].any()
    )
    assert (
        claims["verdict"]
        .isin(["holds", "does not hold", "inconclusive", "not testable", "description"])
        .all()
    )
    assert claims.iloc[0]["claim_id"] == "dataset_closer_than_task" and claims.iloc[0]["headline"]
    # seeds 0.01 apart, datasets 0.1 apart
    assert claims.iloc[0]["effect"] > 0 and claims.iloc[0]["ci_low"] > 0
    # the same claims from the matrix the workflow wrote, by the command a researcher runs on any
    # matrix
    ids = list(
        pd.read_csv(results / "geometry" / "square" / "euclidean_raw.csv", index_col=0).index
    )
    labels = pd.DataFrame(
        [
            {
                "model_id": m,
                "kind": "finetuned" if m.split(".seed")[0] in layout else "pretrained",
                "dataset": m.split(".seed")[0] if m.split(".seed")[0] in layout else None,
                "task": layout.get(m.split(".seed")[0]),
            }
            for m in ids
            if not m.startswith("fused.")
        ]
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    square_ft = pd.read_csv(results / "geometry" / "square" / "euclidean_raw.csv", index_col=0)
    keep = list(labels["model_id"])
    square_ft.loc[keep, keep].to_csv(tmp_path / "matrix.csv")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightspace",
            "claims",
            "--matrix",
            str(tmp_path / "matrix.csv"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "cli"),
            "--bootstrap",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    mine = pd.read_csv(tmp_path / "cli" / "claims.csv")
    keys = ["metric", "space", "claim_id"]
    # the primary matrix's rows and the task-vector descriptions derived from it
    workflow = claims[
        ((claims["metric"] == "euclidean") & (claims["space"] == "raw"))
        | claims["claim_id"].str.startswith("task_vectors")
    ]
    pd.testing.assert_frame_equal(
        mine.sort_values(keys).reset_index(drop=True),
        workflow.sort_values(keys).reset_index(drop=True),
        check_dtype=False,
    )
    assert (
        tmp_path / "cli" / "tsne.png"
    ).stat().st_size > 10_000 and "dataset geometry" in cli.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightspace",
            "claims",
            "--matrix",
            str(tmp_path / "labels.csv"),
            "--labels",
            str(tmp_path / "labels.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 1 and "error: matrix file" in bad.stderr and "Traceback" not in bad.stderr
    )
    # PCA places every model; t-SNE only the fine-tuned ones (the pretrained hub warps its
    # neighbourhoods)
    pca = pd.read_csv(results / "geometry" / "pca.csv")
    assert len(pca) == n and set(pca["kind"]) == {"pretrained", "finetuned"} | (
        {"fused"} if fused else set()
    )
    tsne = pd.read_csv(results / "geometry" / "tsne.csv")
    assert len(tsne) == 6 and set(tsne["kind"]) == {"finetuned"}
    assert tsne["nn1_dataset_plane"].between(0, 1).all()
    for name in ("tsne.png", "distance_heatmap.png"):
        assert (results / "figures" / name).stat().st_size > 10_000
    assert (results / "geometry" / "cache" / "gram.npz").exists()
    for rule in ("distances", "cluster_stats", "projection"):
        assert (results / "benchmarks" / "geometry" / f"{rule}.tsv").exists()
        assert (results / "logs" / "geometry" / f"{rule}.log").exists()
    assert "Gram matrices" in (results / "logs" / "geometry" / "distances.log").read_text()
