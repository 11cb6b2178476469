"""Rule cluster_stats: cluster statistics and the paper's claims from the distance table."""

from weightspace import logs
from weightspace.geometry import clusters

logs.to_file(snakemake.log[0])
clusters.run(
    distances_path=snakemake.input.distances,
    table=list(snakemake.params.table),
    stats_path=snakemake.output.stats,
    claims_path=snakemake.output.claims,
    settings=dict(snakemake.params.settings),
    threads=snakemake.threads,
)
