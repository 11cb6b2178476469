"""Rule extract_pretrained_weights: the base's encoder weights, float32, read and written tensor by
tensor."""

from weightspace import logs
from weightspace.model import weights

logs.to_file(snakemake.log[0])
weights.extract(snakemake.input.base, None, snakemake.output[0])
