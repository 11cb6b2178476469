"""Rule base_model: copy the configured base into results/base (safetensors only)."""

from weightspace import logs
from weightspace.model import base_model

logs.to_file(snakemake.log[0])
base_model.materialise(dict(snakemake.params.spec), snakemake.output[0])
