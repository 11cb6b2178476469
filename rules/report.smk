# The study on one page (results/summary.md) and the tables the report shows.


rule study_tables:
    input:
        metas=expand(f"{RESULTS}/data/{{dataset}}/meta.json", dataset=DATASETS),
        metrics=expand(f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/metrics.json", dataset=DATASETS, seed=SEEDS),
    output:
        datasets=report(f"{RESULTS}/tables/datasets.csv", caption="../report/datasets.rst", category="Setup"),
        finetune=report(f"{RESULTS}/tables/finetune_metrics.csv", caption="../report/finetune_metrics.rst",
                        category="Setup"),
        config=report(f"{RESULTS}/tables/config.yaml", caption="../report/config.rst", category="Setup"),
    params:
        config=config,
    log:
        f"{RESULTS}/logs/study_tables.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/study_tables.py"


rule summary:
    input:
        metas=rules.study_tables.input.metas,
        metrics=rules.study_tables.input.metrics,
        base=rules.base_model.output[0],
        geometry_claims=f"{RESULTS}/geometry/claims.csv",
        interpolation_claims=rules.interpolation_summary.output.claims,
        fusion_overview=rules.fusion_summary.output.overview if fusion.runs(config) else [],
        tsne=f"{RESULTS}/figures/tsne.png",
        heatmap=f"{RESULTS}/figures/distance_heatmap.png",
        probe=f"{RESULTS}/figures/probe_loss_heatmap.png",
        interpolation=rules.interpolation_summary.output.line_figure,
        fusion=rules.fusion_summary.output.figure if fusion.runs(config) else [],
    output:
        report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
    params:
        config=config,
    log:
        f"{RESULTS}/logs/summary.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/summary.py"
