# Fusion: fused bases (the mean of a region's models) and fine-tuning from them vs the pretrained base.


rule fuse:
    input:
        lambda wc: [weights_file(m) for m in PLAN.fused[f"fused.{wc.target}.{wc.scope}"].members],
    output:
        f"{RESULTS}/weights/fused.{{target}}.{{scope}}.safetensors",
    log:
        f"{RESULTS}/logs/fuse/{{target}}.{{scope}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fuse/{{target}}.{{scope}}.tsv"
    wildcard_constraints:
        target=study.DATASET_PATTERN,
        scope="task|all",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    script:
        "../workflow/scripts/fuse.py"


# One job per (target, start, mode, size) runs its seeds one after another in one process: a few-shot run is
# seconds of training, less than a process start and model load (~10 s here); each seed keeps its own
# directory, checkpoint and metrics.
rule finetune_from:
    input:
        base=rules.base_model.output[0],
        init=f"{RESULTS}/weights/{{start}}.safetensors",
        data=multiext(
            f"{RESULTS}/data/{{target}}/",
            "train.parquet",
            "validation.parquet",
            "test.parquet",
            "meta.json",
        ),
    output:
        metrics=expand(
            f"{RESULTS}/fusion/runs/{{{{target}}}}/{{{{start}}}}/{{{{mode}}}}/n{{{{size}}}}/seed{{seed}}/metrics.json",
            seed=PLAN.fusion_seeds,
        ),
        log_csv=expand(
            f"{RESULTS}/fusion/runs/{{{{target}}}}/{{{{start}}}}/{{{{mode}}}}/n{{{{size}}}}/seed{{seed}}/train_log.csv",
            seed=PLAN.fusion_seeds,
        ),
    log:
        f"{RESULTS}/logs/finetune_from/{{target}}/{{start}}/{{mode}}/n{{size}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_from/{{target}}/{{start}}/{{mode}}/n{{size}}.tsv"
    wildcard_constraints:
        target=study.DATASET_PATTERN,
        start=r"pretrained|fused\.[a-z][a-z0-9_]*\.(task|all)",
        mode="full|bitfit",
        size=r"all|[0-9]+",
    conda:
        CONDA_ENV
    threads: config["finetune"].get("threads", 2)
    resources:
        **FUSION_RESOURCES,
    params:
        settings=lambda wc: fusion_settings(wc.target, wc.mode, wc.size),
        seeds=PLAN.fusion_seeds,
    script:
        "../workflow/scripts/finetune_from.py"


rule fusion_summary:
    input:
        runs=[fusion_run_metrics(run) for run in PLAN.fusion_runs],
    output:
        summary=f"{RESULTS}/fusion/summary.csv",
        wins=f"{RESULTS}/fusion/wins.csv",
        overview=f"{RESULTS}/fusion/wins_overview.csv",
        claims=f"{RESULTS}/fusion/claims.csv",
        figure=report(
            f"{RESULTS}/figures/fusion.png", caption="../report/fusion.rst", category="Fusion"
        ),
    log:
        f"{RESULTS}/logs/fusion_summary.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=[vars(run) for run in PLAN.fusion_runs],
        bootstrap=config["geometry"]["bootstrap"],
        seed=config["geometry"]["seed"],
    script:
        "../workflow/scripts/fusion_summary.py"
