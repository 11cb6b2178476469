"""Rules extract_weights / extract_pretrained_weights: encoder weights, head removed, float32."""
from pathlib import Path

from weightspace import logs, weights

logs.to_file(snakemake.log[0])
model_dir = Path(snakemake.input.model).parent if "model" in snakemake.input.keys() else None
weights.extract(snakemake.input.base, model_dir, snakemake.output[0])
