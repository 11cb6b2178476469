# The base model, and one fine-tuning job per dataset x seed. A fine-tune writes its model's encoder
# weights (results/weights/{dataset}.seed{seed}.safetensors) itself: no extraction job per model.


rule base_model:
    output:
        directory(f"{RESULTS}/base"),
    log:
        f"{RESULTS}/logs/base_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_model.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=config["base_model"],
    script:
        "../workflow/scripts/base_model.py"


rule finetune:
    input:
        base=rules.base_model.output[0],
        data=multiext(
            f"{RESULTS}/data/{{dataset}}/",
            "train.parquet",
            "validation.parquet",
            "test.parquet",
            "meta.json",
        ),
    output:
        model=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/model.safetensors",
        config=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/config.json",
        log_csv=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/train_log.csv",
        metrics=f"{RESULTS}/finetune/{{dataset}}/seed{{seed}}/metrics.json",
        weights=f"{RESULTS}/weights/{{dataset}}.seed{{seed}}.safetensors",
    log:
        f"{RESULTS}/logs/finetune/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{dataset}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: config["finetune"].get("threads", 2)
    resources:
        **FINETUNE_RESOURCES,
    params:
        settings=lambda wc: finetune_settings(wc.dataset),
    script:
        "../workflow/scripts/finetune.py"
