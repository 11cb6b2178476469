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


rule merge:
    input:
        pretrained=f"{RESULTS}/weights/pretrained.safetensors",
        members=lambda wc: [
            weights_file(m)
            for m in PLAN.fused[f"merged.{wc.target}.{wc.scope}.{wc.method}"].members
        ],
    output:
        f"{RESULTS}/weights/merged.{{target}}.{{scope}}.{{method}}.safetensors",
    log:
        f"{RESULTS}/logs/merge/{{target}}.{{scope}}.{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge/{{target}}.{{scope}}.{{method}}.tsv"
    wildcard_constraints:
        target=study.DATASET_PATTERN,
        scope="task|all",
        method="task_arithmetic|ties|dare_linear|dare_ties",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        # PEFT stacks every member's task vector of one tensor in float64, with its masks: the embeddings
        # (half of MiniLM) of 14 members took 7.2 GB; ~6x the inputs' size holds it
        mem_mb=lambda wc, input, attempt: int((1000 + 6 * input.size_mb) * attempt),
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        settings=config["fusion"]["merges"],
    script:
        "../workflow/scripts/merge.py"


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
        start=study.START_PATTERN,
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


rule merge_summary:
    input:
        runs=[fusion_run_metrics(run) for run in MERGE_TWINS],
    output:
        runs=f"{RESULTS}/fusion/merge_runs.csv",
        comparison=report(
            f"{RESULTS}/fusion/merges.csv", caption="../report/merges.rst", category="Fusion"
        ),
    log:
        f"{RESULTS}/logs/merge_summary.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=[vars(run) for run in MERGE_TWINS],
        bootstrap=config["geometry"]["bootstrap"],
        seed=config["geometry"]["seed"],
    script:
        "../workflow/scripts/merge_summary.py"
