# Encoder weights (head removed, float32): the unit of the geometry.


rule extract_weights:
    input:
        base=rules.base_model.output[0],
        model=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/model.safetensors",
        config=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/config.json",
    output:
        f"{RESULTS}/weights/{{dataset}}.seed{{seed}}.safetensors",
    log:
        f"{RESULTS}/logs/extract_weights/{{dataset}}.seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_weights/{{dataset}}.seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/extract_weights.py"


rule extract_pretrained_weights:
    input:
        base=rules.base_model.output[0],
    output:
        f"{RESULTS}/weights/pretrained.safetensors",
    log:
        f"{RESULTS}/logs/extract_weights/pretrained.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_weights/pretrained.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/extract_weights.py"
