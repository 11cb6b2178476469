"""Rule study_tables: datasets, fine-tuning metrics and the config, as report tables."""

from weightspace import logs
from weightspace.report import summary

logs.to_file(snakemake.log[0])
summary.study_tables(
    snakemake.input.metas,
    snakemake.input.metrics,
    snakemake.params.config,
    snakemake.output.datasets,
    snakemake.output.finetune,
    snakemake.output.config,
)
