"""Rule fuse: the element-wise mean of a region's encoder weights, a new base."""

from weightspace import logs
from weightspace.model import weights

logs.to_file(snakemake.log[0])
fused_id = f"fused.{snakemake.wildcards.target}.{snakemake.wildcards.scope}"
weights.save(
    snakemake.output[0],
    weights.average(snakemake.input),
    fused_id,
    members=",".join(snakemake.input),
)
