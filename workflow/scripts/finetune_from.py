"""Rule finetune_from: fine-tune a start (pretrained or fused) on a fusion target."""
from pathlib import Path

from weightspace import finetune, logs

logs.to_file(snakemake.log[0], append=True)  # a retry after a time limit appends
w = snakemake.wildcards
# the checkpoint policy is read from the config, not the rule's params: changing it reruns nothing
policy = {k: snakemake.config["finetune"].get(k) for k in finetune.CHECKPOINT_POLICY}
settings = finetune.Settings.from_config(dict(snakemake.params.settings, **policy), seed=int(w.seed))
finetune.finetune(
    base_dir=snakemake.input.base,
    data_dir=Path(snakemake.input.data[0]).parent,
    out_dir=Path(snakemake.output.metrics).parent,
    settings=settings,
    threads=snakemake.threads,
    init_weights=snakemake.input.init,
    model_id=f"{w.start}->{w.target}",
    save_model=False,
)
