"""Rule interpolation_summary: probe results of every traversal point -> tables, figures, claims."""

from weightspace import logs
from weightspace.geometry import interpolation

logs.to_file(snakemake.log[0])
interpolation.write(
    points=snakemake.params.points,
    probe_files=list(snakemake.input.probes) + list(snakemake.input.pretrained),
    out=dict(snakemake.output.items()),
    n_boot=snakemake.params.bootstrap,
    seed=snakemake.params.seed,
)
