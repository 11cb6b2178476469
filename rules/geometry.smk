# Weight geometry: pairwise distances (one streamed Gram matrix, cached by file content),
# cluster statistics and the paper's claims, t-SNE / PCA maps and the distance heatmap.


rule distances:
    input:
        weights=[weights_file(m) for m in PLAN.stored_models],
    output:
        long=f"{RESULTS}/geometry/distances.parquet",
        squares=GEOMETRY_SQUARES,
    log:
        f"{RESULTS}/logs/geometry/distances.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/distances.tsv"
    conda:
        "../envs/weightspace.yaml"
    threads: 2
    resources:
        mem_mb=distances_mem_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        model_ids=PLAN.stored_models,
        settings={
            key: GEOMETRY[key] for key in ("metrics", "spaces", "groups", "per_layer", "block_mb")
        },
        cache_dir=f"{RESULTS}/geometry/cache",
    script:
        "../workflow/scripts/distances.py"


rule cluster_stats:
    input:
        distances=rules.distances.output.long,
    output:
        stats=f"{RESULTS}/geometry/cluster_stats.csv",
        claims=f"{RESULTS}/geometry/claims.csv",
    log:
        f"{RESULTS}/logs/geometry/cluster_stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/cluster_stats.tsv"
    conda:
        "../envs/weightspace.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        table=geometry_table(),
        settings=geometry_settings(),
    script:
        "../workflow/scripts/cluster_stats.py"


rule projection:
    input:
        distances=rules.distances.output.long,
    output:
        tsne=f"{RESULTS}/geometry/tsne.csv",
        pca=f"{RESULTS}/geometry/pca.csv",
        tsne_figure=report(
            f"{RESULTS}/figures/tsne.png", caption="../report/tsne.rst", category="Geometry"
        ),
        heatmap=report(
            f"{RESULTS}/figures/distance_heatmap.png",
            caption="../report/distance_heatmap.rst",
            category="Geometry",
        ),
    log:
        f"{RESULTS}/logs/geometry/projection.log",
    benchmark:
        f"{RESULTS}/benchmarks/geometry/projection.tsv"
    conda:
        "../envs/weightspace.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        table=geometry_table(),
        settings=geometry_settings(),
    script:
        "../workflow/scripts/projection.py"
