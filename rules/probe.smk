# Linear probing, in jobs sized by their work: one evaluation job per stored model (its features and
# probes on every dataset) and one per traversal group (the mixes of a line, a plane or a region, built in
# memory from their stored endpoints). Each probe chooses its L2 by cross-validation on its own model's
# training features, so a job needs nothing but its models and datasets. Inside, features and probe
# results are cached by content (results/probe/cache): adding a dataset computes only the pairs that
# involve it, and a rerun reads what is already there. The number of jobs grows as models + datasets.

PROBE = config["probe"]
PROBE_PROTOCOL_KEYS = (
    "optimizer",
    "max_iter",
    "tolerance",
    "l2",
    "l2_grid",
    "cv_folds",
    "seed",
    "standardize",
)
PROBE_SETTINGS = {
    "pooling": PROBE["pooling"],
    "batch_size": PROBE["batch_size"],
    "mixed_precision": PROBE["mixed_precision"],
    "protocol": {k: PROBE[k] for k in PROBE_PROTOCOL_KEYS if k in PROBE},
}
PROBE_CACHE = f"{RESULTS}/probe/cache"
PROBE_RESOURCES = {  # a retry (time limit, preemption, out of memory) asks for more of both
    "mem_mb": lambda wc, attempt: PROBE["mem_mb"] * attempt,
    "runtime": lambda wc, attempt: PROBE["runtime"] * attempt,
}
if PROBE["gpu"]:
    PROBE_RESOURCES["gpu"] = PROBE["gpu"]


rule evaluate_model:
    input:
        weights=f"{RESULTS}/weights/{{model_id}}.safetensors",
        base=rules.base_model.output[0],
        data=lambda wc: probe_data_files(PLAN.probed[wc.model_id]),
    output:
        f"{RESULTS}/probe/models/{{model_id}}.json",
    log:
        f"{RESULTS}/logs/evaluate_model/{{model_id}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_model/{{model_id}}.tsv"
    conda:
        CONDA_ENV
    threads: PROBE["threads"]
    resources:
        **PROBE_RESOURCES,
    params:
        pairs=lambda wc: [(wc.model_id, d) for d in PLAN.probed[wc.model_id]],
        datasets=lambda wc: {d: evaluation_dataset(d) for d in PLAN.probed[wc.model_id]},
        settings=PROBE_SETTINGS,
        cache_dir=PROBE_CACHE,
    script:
        "../workflow/scripts/evaluate.py"


rule evaluate_group:
    input:
        weights=lambda wc: [weights_file(m) for m in PLAN.group_members(wc.group)],
        base=rules.base_model.output[0],
        data=lambda wc: probe_data_files(PLAN.group_datasets(wc.group)),
    output:
        f"{RESULTS}/probe/groups/{{group}}.json",
    log:
        f"{RESULTS}/logs/evaluate_group/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_group/{{group}}.tsv"
    wildcard_constraints:
        group=traversal.GROUP_PATTERN,
    conda:
        CONDA_ENV
    threads: PROBE["threads"]
    resources:
        **PROBE_RESOURCES,
    params:
        pairs=lambda wc: PLAN.group_pairs(wc.group),
        recipes=lambda wc: group_recipes(wc.group),
        datasets=lambda wc: {d: evaluation_dataset(d) for d in PLAN.group_datasets(wc.group)},
        settings=PROBE_SETTINGS,
        cache_dir=PROBE_CACHE,
    script:
        "../workflow/scripts/evaluate.py"


rule probe_matrix:
    input:
        probes=model_results(PLAN.stored_models),
        distances=f"{RESULTS}/geometry/distances.parquet",
    output:
        matrix=report(
            f"{RESULTS}/probe/matrix.csv", caption="../report/probe_matrix.rst", category="Probe"
        ),
        heatmap=report(
            f"{RESULTS}/figures/probe_loss_heatmap.png",
            caption="../report/probe_loss_heatmap.rst",
            category="Probe",
        ),
        vs_distance=report(
            f"{RESULTS}/figures/probe_vs_distance.png",
            caption="../report/probe_vs_distance.rst",
            category="Probe",
        ),
    log:
        f"{RESULTS}/logs/probe_matrix.log",
    benchmark:
        f"{RESULTS}/benchmarks/probe_matrix.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tasks=dict(PLAN.task_of),
    script:
        "../workflow/scripts/probe_matrix.py"
