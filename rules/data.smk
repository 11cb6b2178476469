# One preparation job per dataset: read its source (builtin package, hub, or files), clean,
# split, cap, and write results/data/{dataset}/. Its params are that dataset's entry merged with
# the data defaults, so editing one dataset re-prepares only that one. A files source's files
# are inputs, so editing them re-prepares it too.
from weightspace.data import prepare as data_prep  # noqa: E402


rule prepare_dataset:
    input:
        lambda wc: list((config["datasets"][wc.dataset].get("files") or {}).values()),
    output:
        train=f"{RESULTS}/data/{{dataset}}/train.parquet",
        validation=f"{RESULTS}/data/{{dataset}}/validation.parquet",
        test=f"{RESULTS}/data/{{dataset}}/test.parquet",
        probe=f"{RESULTS}/data/{{dataset}}/probe.parquet",
        meta=f"{RESULTS}/data/{{dataset}}/meta.json",
    log:
        f"{RESULTS}/logs/prepare_dataset/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_dataset/{{dataset}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        settings=lambda wc: data_prep.settings(
            config["datasets"][wc.dataset], config.get("data", {})
        ),
    script:
        "../workflow/scripts/prepare_dataset.py"
