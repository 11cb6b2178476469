# Weight geometry: pairwise distances (one streamed Gram matrix, cached by file content),
# cluster statistics and the paper's claims, t-SNE / PCA maps and the distance heatmap.

GEOMETRY = config["geometry"]
GEOMETRY_SQUARES = expand(
    f"{RESULTS}/geometry/square/{{metric}}_{{space}}.csv", metric=GEOMETRY["metrics"], space=GEOMETRY["spaces"]
)


def geometry_weights():
    return [f"{RESULTS}/weights/{model_id}.safetensors" for model_id in study_models()]


def geometry_table():
    return study.model_table(config, study_models())


def geometry_settings():
    return {key: GEOMETRY[key] for key in ("primary", "bootstrap", "tsne", "seed")}


def distances_mem_mb(wildcards, attempt):
    """n×n float64 matrices per group, the long table (~150 bytes a row), the block of every model (X, its
    float32 read buffer and the reference: < 2 × block_mb), the interpreter with numpy and pandas."""
    n = len(study_models())
    groups = 1 + len(GEOMETRY["groups"]) + (12 if GEOMETRY["per_layer"] else 0)
    rows = n * n * groups * len(GEOMETRY["metrics"]) * len(GEOMETRY["spaces"])
    return int((600 + 2 * GEOMETRY["block_mb"] + (n * n * groups * 8 * 4 + rows * 150) / 2**20) * attempt)


rule distances:
    input:
        weights=geometry_weights(),
    output:
        long=f"{RESULTS}/geometry/distances.parquet",
        squares=GEOMETRY_SQUARES,
    params:
        model_ids=study_models(),
        settings={key: GEOMETRY[key] for key in ("metrics", "spaces", "groups", "per_layer", "block_mb")},
        cache_dir=f"{RESULTS}/geometry/cache",
    log:
        f"{RESULTS}/logs/geometry/distances.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/distances.tsv"
    threads: 2
    resources:
        mem_mb=distances_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    conda:
        "../envs/weightspace.yaml"
    script:
        "../workflow/scripts/distances.py"


rule cluster_stats:
    input:
        distances=rules.distances.output.long,
    output:
        stats=report(f"{RESULTS}/geometry/cluster_stats.csv", caption="../report/cluster_stats.rst",
                     category="Geometry"),
        claims=report(f"{RESULTS}/geometry/claims.csv", caption="../report/geometry_claims.rst",
                      category="Geometry"),
    params:
        table=geometry_table(),
        settings=geometry_settings(),
    log:
        f"{RESULTS}/logs/geometry/cluster_stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/cluster_stats.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../envs/weightspace.yaml"
    script:
        "../workflow/scripts/cluster_stats.py"


rule projection:
    input:
        distances=rules.distances.output.long,
    output:
        tsne=f"{RESULTS}/geometry/tsne.csv",
        pca=f"{RESULTS}/geometry/pca.csv",
        tsne_figure=report(f"{RESULTS}/figures/tsne.png", caption="../report/tsne.rst", category="Geometry"),
        heatmap=report(f"{RESULTS}/figures/distance_heatmap.png", caption="../report/distance_heatmap.rst",
                       category="Geometry"),
    params:
        table=geometry_table(),
        settings=geometry_settings(),
    log:
        f"{RESULTS}/logs/geometry/projection.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/projection.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../envs/weightspace.yaml"
    script:
        "../workflow/scripts/projection.py"
