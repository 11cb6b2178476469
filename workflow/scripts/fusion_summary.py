"""Rule fusion_summary: runs -> summary.csv, wins.csv, wins_overview.csv, claims.csv, fusion.png."""

from weightspace import logs
from weightspace.report import fusion_tables

logs.to_file(snakemake.log[0])
fusion_tables.write(
    runs=snakemake.params.runs,
    metrics_files=snakemake.input.runs,
    summary_path=snakemake.output.summary,
    wins_path=snakemake.output.wins,
    overview_path=snakemake.output.overview,
    figure_path=snakemake.output.figure,
    claims_path=snakemake.output.claims,
    n_boot=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
