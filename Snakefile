# weightspace: where fine-tuned language models live in weight space.
# Entry point: config, schema validation, the stages, and what a run produces.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/weights.smk"
include: "rules/geometry.smk"
include: "rules/probe.smk"
include: "rules/fusion.smk"
include: "rules/interpolation.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
