"""Rule finetune: fine-tune the base on one dataset with one seed."""
from pathlib import Path

from weightspace import finetune, logs

logs.to_file(snakemake.log[0], append=True)  # a retry after a time limit appends
settings = finetune.Settings.from_config(dict(snakemake.params.settings), seed=int(snakemake.wildcards.seed))
finetune.finetune(
    base_dir=snakemake.input.base,
    data_dir=Path(snakemake.input.data[0]).parent,
    out_dir=Path(snakemake.output.metrics).parent,
    settings=settings,
    threads=snakemake.threads,
    model_id=f"{snakemake.wildcards.dataset}.seed{snakemake.wildcards.seed}",
)
