"""What a config makes: the study plan (models, fusion runs, traversal points and groups, probed
datasets), its cost and which claims its design can decide. Pure: no I/O, no Snakemake."""
