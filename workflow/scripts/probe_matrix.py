"""Rule probe_matrix: every model's probe result on every dataset -> matrix.csv and two figures."""

from weightspace import logs
from weightspace.report import probe_figures

logs.to_file(snakemake.log[0])
probe_figures.write(
    probe_paths=list(snakemake.input.probes),
    tasks=dict(snakemake.params.tasks),
    distances_path=snakemake.input.distances,
    matrix_path=snakemake.output.matrix,
    heatmap_path=snakemake.output.heatmap,
    distance_figure_path=snakemake.output.vs_distance,
)
