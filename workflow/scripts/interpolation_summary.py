"""Rule interpolation_summary: probe results of every traversal point -> tables, figures, claims."""
from weightspace import interpolation_report, logs

logs.to_file(snakemake.log[0])
interpolation_report.write(
    points=snakemake.params.points,
    probe_files=snakemake.input.probes,
    fusion_overview_path=snakemake.input.fusion or None,
    out=dict(snakemake.output.items()),
)
