"""Rule interpolation_summary: probe results of every traversal point -> tables, figures, claims."""
from weightspace import interpolation_report, logs

logs.to_file(snakemake.log[0])
interpolation_report.write(
    points=snakemake.params.points,
    probe_files=list(snakemake.input.probes) + list(snakemake.input.pretrained),
    out=dict(snakemake.output.items()),
    n_boot=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
