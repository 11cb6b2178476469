"""weightspace: map where fine-tuned language models live in weight space.

The library behind the Snakemake workflow; it knows nothing of Snakemake.
"""

__version__ = "0.1.0"


class WeightspaceError(Exception):
    """A problem with the user's input or config, worded for the user."""
