"""Rule features: one pass of a model's frozen encoder over a dataset's train and test splits."""
from pathlib import Path

from weightspace import features, logs

logs.to_file(snakemake.log[0])
base = Path(snakemake.input.base)  # the base folder, or its base.json
features.extract(
    base_dir=base.parent if base.is_file() else base,
    weight_paths=list(snakemake.input.weights),
    coefficients=list(snakemake.params.coefficients),
    data_dir=Path(snakemake.input.meta).parent,
    out_path=snakemake.output[0],
    pooling=snakemake.params.pooling,
    batch_size=snakemake.params.batch_size,
    max_length=snakemake.params.max_length,
    threads=snakemake.threads,
    mixed_precision=snakemake.params.mixed_precision,
    model_id=snakemake.wildcards.model_id,
)
