"""Rule prepare_dataset: read, clean, split and cap one dataset into results/data/{dataset}/."""

from pathlib import Path

from weightspace import logs
from weightspace.data import prepare

logs.to_file(snakemake.log[0])
prepare.prepare_dataset(
    name=snakemake.wildcards.dataset,
    spec=dict(snakemake.params.settings),  # already merged with the data defaults
    defaults=None,
    out_dir=Path(snakemake.output.meta).parent,
)
