"""Rule merge_summary: each merged base against the mean of the same members, paired."""

from weightspace import logs
from weightspace.report import fusion_tables

logs.to_file(snakemake.log[0])
fusion_tables.write_merges(
    runs=snakemake.params.runs,
    metrics_files=snakemake.input.runs,
    runs_path=snakemake.output.runs,
    comparison_path=snakemake.output.comparison,
    n_boot=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
