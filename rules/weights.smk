# Encoder weights (head removed, float32): the unit of the geometry. A fine-tuned model's are written by its
# fine-tuning job (rules/finetune.smk); the pretrained base's by this one job.


rule extract_pretrained_weights:
    input:
        base=rules.base_model.output[0],
    output:
        f"{RESULTS}/weights/pretrained.safetensors",
    log:
        f"{RESULTS}/logs/extract_weights/pretrained.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_weights/pretrained.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/extract_weights.py"
