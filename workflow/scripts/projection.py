"""Rule projection: t-SNE and PCA of the models, the projection figure and the distance heatmap."""

from weightspace import logs
from weightspace.geometry import projection

logs.to_file(snakemake.log[0])
projection.run(
    distances_path=snakemake.input.distances,
    table=list(snakemake.params.table),
    tsne_path=snakemake.output.tsne,
    pca_path=snakemake.output.pca,
    tsne_figure=snakemake.output.tsne_figure,
    heatmap_figure=snakemake.output.heatmap,
    settings=dict(snakemake.params.settings),
    threads=snakemake.threads,
)
