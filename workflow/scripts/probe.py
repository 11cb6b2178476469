"""Rule probe: a new linear head on a model's cached features of a dataset; test loss and accuracy."""
from weightspace import logs, probe

logs.to_file(snakemake.log[0])
probe.run(
    features_path=snakemake.input[0],
    out_path=snakemake.output[0],
    protocol=probe.Protocol.from_config(dict(snakemake.params.protocol)),
    model_id=snakemake.wildcards.model_id,
    dataset=snakemake.wildcards.dataset,
    threads=snakemake.threads,
)
