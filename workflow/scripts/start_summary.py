"""Rule start_summary: fine-tunes from the ranked starts -> runs, per-target and pooled outcomes,
figure."""

from weightspace import logs
from weightspace.report import start_tables

logs.to_file(snakemake.log[0])
start_tables.write(
    rankings=snakemake.input.rankings,
    metrics_files=snakemake.input.runs,
    runs_path=snakemake.output.runs,
    targets_path=snakemake.output.targets,
    outcomes_path=snakemake.output.outcomes,
    figure_path=snakemake.output.figure,
    top_k=snakemake.params.top_k,
    n_boot=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
