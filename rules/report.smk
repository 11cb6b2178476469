# The study on one page (results/summary.md and summary.html) and the tables the report shows, each rendered as an
# HTML page (Snakemake's report shows .html files inline; a CSV would only be a download button).


rule study_tables:
    input:
        metas=expand(f"{RESULTS}/data/{{dataset}}/meta.json", dataset=PLAN.datasets),
        metrics=expand(
            f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/metrics.json",
            dataset=PLAN.datasets,
            seed=PLAN.seeds,
        ),
    output:
        datasets=f"{RESULTS}/tables/datasets.csv",
        finetune=f"{RESULTS}/tables/finetune_metrics.csv",
        config=f"{RESULTS}/tables/config.yaml",
    log:
        f"{RESULTS}/logs/study_tables.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=config,
    script:
        "../workflow/scripts/study_tables.py"


# page name -> (the table it renders, its title, report category, caption)
REPORT_PAGES = {
    "geometry_claims": (
        rules.cluster_stats.output.claims,
        "Weight geometry: the paper's claims",
        "Claims",
        "geometry_claims.rst",
    ),
    "interpolation_claims": (
        rules.interpolation_summary.output.claims,
        "Lines and regions: the paper's claims",
        "Claims",
        "interpolation_claims.rst",
    ),
    "cluster_stats": (
        rules.cluster_stats.output.stats,
        "Cluster statistics",
        "Geometry",
        "cluster_stats.rst",
    ),
    "probe_matrix": (
        f"{RESULTS}/probe/matrix.csv",
        "Linear-probe results, every model on every dataset",
        "Probe",
        "probe_matrix.rst",
    ),
    "datasets": (rules.study_tables.output.datasets, "Datasets", "Setup", "datasets.rst"),
    "finetune_metrics": (
        rules.study_tables.output.finetune,
        "Fine-tuned models",
        "Setup",
        "finetune_metrics.rst",
    ),
    "config": (rules.study_tables.output.config, "The run's configuration", "Setup", "config.rst"),
}
# the traversal studies' tables, where their study is on (study name -> page)
TRAVERSAL_PAGES = {
    "line": {
        "lines": (
            rules.interpolation_summary.output.lines,
            "Interpolation lines",
            "Interpolation",
            "lines.rst",
        )
    },
    "plane": {
        "planes": (
            rules.interpolation_summary.output.planes,
            "Planes through three models",
            "Interpolation",
            "planes.rst",
        )
    },
    "region": {
        "region": (
            rules.interpolation_summary.output.region,
            "Inside the regions",
            "Interpolation",
            "region.rst",
        )
    },
}
for study_name in sorted(PLAN.traversal_studies):
    REPORT_PAGES.update(TRAVERSAL_PAGES[study_name])
if PLAN.fusion_runs:
    REPORT_PAGES.update(
        {
            "fusion_claims": (
                rules.fusion_summary.output.claims,
                "Fusion: the paper's claim",
                "Claims",
                "fusion_claims.rst",
            ),
            "fusion_summary": (
                rules.fusion_summary.output.summary,
                "Fusion: every run",
                "Fusion",
                "fusion_summary.rst",
            ),
            "fusion_wins": (
                rules.fusion_summary.output.wins,
                "Fusion: gain per target",
                "Fusion",
                "fusion_wins.rst",
            ),
        }
    )


rule report_pages:
    input:
        **{name: page[0] for name, page in REPORT_PAGES.items()},
    output:
        **{
            name: report(
                f"{RESULTS}/tables/{name}.html", caption=f"../report/{page[3]}", category=page[2]
            )
            for name, page in REPORT_PAGES.items()
        },
    log:
        f"{RESULTS}/logs/report_pages.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        titles={name: page[1] for name, page in REPORT_PAGES.items()},
    script:
        "../workflow/scripts/report_pages.py"


rule summary:
    input:
        metas=rules.study_tables.input.metas,
        metrics=rules.study_tables.input.metrics,
        base=rules.base_model.output[0],
        geometry_claims=rules.cluster_stats.output.claims,
        interpolation_claims=rules.interpolation_summary.output.claims,
        fusion_claims=rules.fusion_summary.output.claims if PLAN.fusion_runs else [],
        fusion_overview=rules.fusion_summary.output.overview if PLAN.fusion_runs else [],
        probe_matrix=f"{RESULTS}/probe/matrix.csv",
        tsne=f"{RESULTS}/figures/tsne.png",
        tsne_table=f"{RESULTS}/geometry/tsne.csv",
        heatmap=f"{RESULTS}/figures/distance_heatmap.png",
        probe=f"{RESULTS}/figures/probe_loss_heatmap.png",
        interpolation=traversal_figure("line_figure"),
        planes=traversal_figure("plane_figure"),
        region=traversal_figure("region_figure"),
        fusion=rules.fusion_summary.output.figure if PLAN.fusion_runs else [],
        stage_times=f"{RESULTS}/tables/stage_times.csv",
        merges=rules.merge_summary.output.comparison if PLAN.merge_runs else [],
        start_outcomes=rules.start_summary.output.outcomes if PLAN.start_targets else [],
        start_targets=rules.start_summary.output.targets if PLAN.start_targets else [],
        where_to_start=rules.start_summary.output.figure if PLAN.start_targets else [],
    output:
        markdown=f"{RESULTS}/summary.md",
        html=report(f"{RESULTS}/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=config,
    script:
        "../workflow/scripts/summary.py"
