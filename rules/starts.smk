# Where to start (config key where_to_start): per target, the candidate starts ranked by their probe loss on it,
# then fine-tunes from the top k and the pretrained start (use mode) or from every candidate (evaluate mode).
# The ranking is a checkpoint: which fine-tunes run follows from it. A start fine-tuned on a target once serves
# fusion and this stage alike (rule finetune_from).


checkpoint rank_starts:
    input:
        probes=lambda wc: model_results(PLAN.start_candidates[wc.target]),
    output:
        f"{RESULTS}/starts/{{target}}/ranking.csv",
    log:
        f"{RESULTS}/logs/rank_starts/{{target}}.log",
    wildcard_constraints:
        target=study.DATASET_PATTERN,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        candidates=lambda wc: dict(PLAN.start_candidates[wc.target]),
    script:
        "../workflow/scripts/rank_starts.py"


rule start_summary:
    input:
        rankings=expand(f"{RESULTS}/starts/{{target}}/ranking.csv", target=PLAN.start_targets),
        runs=start_run_metrics,
    output:
        runs=f"{RESULTS}/starts/runs.csv",
        targets=report(
            f"{RESULTS}/starts/targets.csv",
            caption="../report/start_targets.rst",
            category="Where to start",
        ),
        outcomes=report(
            f"{RESULTS}/starts/outcomes.csv",
            caption="../report/start_outcomes.rst",
            category="Where to start",
        ),
        figure=report(
            f"{RESULTS}/figures/where_to_start.png",
            caption="../report/where_to_start.rst",
            category="Where to start",
        ),
    log:
        f"{RESULTS}/logs/start_summary.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        top_k=PLAN.start_top_k,
        bootstrap=config["geometry"]["bootstrap"],
        seed=config["geometry"]["seed"],
    script:
        "../workflow/scripts/start_summary.py"
