# weightspace: where fine-tuned language models live in weight space.
# Entry point: config, schema validation, the stages, and what a run produces.
from snakemake.utils import min_version

min_version("9.0")


# The study: a --configfile given on the command line is the whole study, and every key it leaves out takes
# its default from schemas/config.schema.yaml (filled in by the validation in rules/common.smk). Without one,
# the embedded default study, config.yaml. (--config key=value overrides either.)
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/models.smk"
include: "rules/weights.smk"
include: "rules/geometry.smk"
include: "rules/probe.smk"
include: "rules/fusion.smk"
include: "rules/interpolation.smk"
include: "rules/starts.smk"
include: "rules/report.smk"
include: "rules/stage_times.smk"


# On a cluster these run in Snakemake's own process on the submitting host, not as jobs: the cheap aggregates
# (seconds each: a job would wait longer in the queue than it runs) and, below, downloads from the Hugging Face
# hub (compute nodes are often offline; they fill HF_HOME, which belongs on the shared filesystem).
localrules:
    cluster_stats,
    projection,
    probe_matrix,
    fusion_summary,
    merge_summary,
    rank_starts,
    start_summary,
    interpolation_summary,
    study_tables,
    report_pages,
    summary,


if "hub" in config["base_model"]:
    workflow.localrules("base_model")
if any("hub" in entry for entry in config["datasets"].values()):
    workflow.localrules("prepare_dataset")
if any("hub" in entry for entry in config["models"].values()):
    workflow.localrules("import_model")


rule all:
    default_target: True
    input:
        all_targets(),
