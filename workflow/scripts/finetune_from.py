"""Rule finetune_from: fine-tune a start (pretrained or fused) on a fusion target, each fusion seed
in turn."""

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
for seed, metrics in zip(snakemake.params.seeds, snakemake.output.metrics, strict=True):
    # a retry resumes each seed from its own checkpoint (a finished seed's is gone: it reruns,
    # bitwise the same)
    finetune.finetune(
        base_dir=snakemake.input.base,
        data_dir=Path(snakemake.input.data[0]).parent,
        out_dir=Path(metrics).parent,
        settings=finetune.Settings.from_config(
            dict(snakemake.params.settings, **policy), seed=int(seed)
        ),
        threads=snakemake.threads,
        init_weights=snakemake.input.init,
        model_id=f"{w.start}->{w.target}.seed{seed}",  # one log holds every seed
        save_model=False,
    )
