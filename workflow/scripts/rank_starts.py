"""Rule rank_starts: a target's candidate starts ranked by their probe loss on it."""

from weightspace import logs
from weightspace.atomic import write_csv
from weightspace.probe import store
from weightspace.train import start_outcomes

logs.to_file(snakemake.log[0])
ranking = start_outcomes.rank_candidates(
    snakemake.wildcards.target, snakemake.params.candidates, store.read(snakemake.input.probes)
)
write_csv(snakemake.output[0], ranking)
