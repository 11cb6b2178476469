"""Rule merge: a fused base's members merged by a PEFT method (task arithmetic, TIES, DARE)."""

from weightspace import logs
from weightspace.model import merging

logs.to_file(snakemake.log[0])
w = snakemake.wildcards
settings = snakemake.params.settings
merging.merge_to_file(
    snakemake.output[0],
    snakemake.input.pretrained,
    snakemake.input.members,
    w.method,
    scale=settings["scale"][w.method],
    density=settings["density"],
    seed=settings["seed"],
    model_id=f"merged.{w.target}.{w.scope}.{w.method}",
)
