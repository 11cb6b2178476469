"""Rule finetune: fine-tune the base on one dataset with one seed; write its encoder weights too."""

from pathlib import Path

from weightspace.startup import job_imports

with job_imports():  # transformers' scan once, no garbage collection among long-lived objects
    from weightspace import logs
    from weightspace.train import finetune

logs.to_file(snakemake.log[0], append=True)  # a retry after a time limit appends
w = snakemake.wildcards
# the run policy (checkpoints, validation) is read from the config, not the params: changing it
# reruns nothing
policy = {k: snakemake.config["finetune"].get(k) for k in finetune.RUN_POLICY}
settings = finetune.Settings.from_config(
    dict(snakemake.params.settings, **policy), seed=int(w.seed)
)
finetune.finetune(
    base_dir=snakemake.input.base,
    data_dir=Path(snakemake.input.data[0]).parent,
    out_dir=Path(snakemake.output.metrics).parent,
    settings=settings,
    threads=snakemake.threads,
    model_id=f"{w.dataset}.seed{w.seed}",
    weights_path=snakemake.output.weights,
)
