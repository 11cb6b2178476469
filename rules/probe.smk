# Linear probing: every model's frozen-encoder features on every dataset, a new linear head per
# (model, dataset), and the matrix of test losses. One job per pair, so a new dataset or model
# adds its row and column of jobs and nothing already probed runs again.

PROBE = config["probe"]
PROBE_PROTOCOL_KEYS = ("optimizer", "max_iter", "tolerance", "l2", "seed", "standardize")
PROBE_FEATURE_RESOURCES = {"mem_mb": PROBE["mem_mb"], "runtime": PROBE["runtime"]}
if PROBE["gpu"]:
    PROBE_FEATURE_RESOURCES["gpu"] = PROBE["gpu"]


rule features:
    input:
        weights=model_weight_inputs,
        base=rules.base_model.output[0],
        train=f"{RESULTS}/data/{{dataset}}/train.parquet",
        test=f"{RESULTS}/data/{{dataset}}/test.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    output:
        f"{RESULTS}/features/{{model_id}}/{{dataset}}.npz",
    params:
        coefficients=lambda wc: model_recipe(wc.model_id)[1],
        pooling=PROBE["pooling"],
        batch_size=PROBE["batch_size"],
        max_length=lambda wc: dataset_max_length(wc.dataset),
        mixed_precision=PROBE["mixed_precision"],
    log:
        f"{RESULTS}/logs/features/{{model_id}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{model_id}}/{{dataset}}.tsv"
    threads: PROBE["threads"]
    resources:
        **PROBE_FEATURE_RESOURCES,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/features.py"


rule probe:
    input:
        f"{RESULTS}/features/{{model_id}}/{{dataset}}.npz",
    output:
        f"{RESULTS}/probe/{{model_id}}/{{dataset}}.json",
    params:
        protocol={k: PROBE[k] for k in PROBE_PROTOCOL_KEYS},
    log:
        f"{RESULTS}/logs/probe/{{model_id}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe/{{model_id}}/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/probe.py"


rule probe_matrix:
    input:
        probes=expand(f"{RESULTS}/probe/{{model_id}}/{{dataset}}.json", model_id=study_models(), dataset=DATASETS),
        distances=f"{RESULTS}/geometry/distances.parquet",
    output:
        matrix=report(f"{RESULTS}/probe/matrix.csv", caption="../report/probe_matrix.rst", category="Probe"),
        heatmap=report(f"{RESULTS}/figures/probe_loss_heatmap.png", caption="../report/probe_loss_heatmap.rst",
                       category="Probe"),
        vs_distance=report(f"{RESULTS}/figures/probe_vs_distance.png", caption="../report/probe_vs_distance.rst",
                           category="Probe"),
    params:
        tasks={d: study.task_of(config, d) for d in DATASETS},
    log:
        f"{RESULTS}/logs/probe_matrix.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe_matrix.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/probe_matrix.py"
