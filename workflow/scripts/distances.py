"""Rule distances: pairwise distances of every study model's encoder weights (streamed, cached)."""

from pathlib import Path

from weightspace import logs
from weightspace.geometry import distances

logs.to_file(snakemake.log[0])
distances.run(
    weights=list(snakemake.input.weights),
    model_ids=list(snakemake.params.model_ids),
    long_path=snakemake.output.long,
    square_dir=Path(snakemake.output.squares[0]).parent,
    settings=dict(snakemake.params.settings),
    cache_dir=snakemake.params.cache_dir,
    threads=snakemake.threads,
)
