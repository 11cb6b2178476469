"""Rule import_model: a brought model's encoder weights, after checking it against the base."""

from weightspace import logs
from weightspace.model import brought

logs.to_file(snakemake.log[0])
brought.materialise(
    snakemake.wildcards.name, dict(snakemake.params.spec), snakemake.input.base, snakemake.output[0]
)
