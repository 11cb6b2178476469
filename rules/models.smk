# Brought models (config key models): a user's own fine-tunes of the base, checked against its encoder and
# written as encoder weights like any fine-tune's. Local folders were checked at start-up (rules/common.smk).


rule import_model:
    input:
        base=rules.base_model.output[0],
    output:
        f"{RESULTS}/weights/brought.{{name}}.safetensors",
    log:
        f"{RESULTS}/logs/import_model/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/import_model/{{name}}.tsv"
    wildcard_constraints:
        name=study.DATASET_PATTERN,
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        spec=lambda wc: config["models"][wc.name],
    script:
        "../workflow/scripts/import_model.py"
