"""Rules evaluate_model and evaluate_group: features and probes of a job's (model, dataset) pairs,
cached by content."""

from pathlib import Path

from weightspace.startup import job_imports

with job_imports():  # transformers' scan once, no garbage collection among long-lived objects
    import torch  # noqa: F401 (every evaluation job needs it: its cache keys name the precision)

    from weightspace import logs
    from weightspace.probe import evaluation

logs.to_file(snakemake.log[0])
base = Path(snakemake.input.base)  # the base folder, or its base.json
wildcards = dict(snakemake.wildcards.items())
if "model_id" in wildcards:  # a stored model: its one weights file
    recipes = {wildcards["model_id"]: ([snakemake.input.weights], [1.0])}
else:  # a traversal group: mixes of stored weights, built in memory
    recipes = dict(snakemake.params.recipes)
evaluation.run(
    base_dir=base.parent if base.is_file() else base,
    cache_dir=snakemake.params.cache_dir,
    out_path=snakemake.output[0],
    pairs=list(snakemake.params.pairs),
    recipes=recipes,
    datasets=dict(snakemake.params.datasets),
    # read from the config, not the rule's params: switching it reruns nothing
    settings=dict(
        snakemake.params.settings, keep_features=snakemake.config["probe"]["keep_features"]
    ),
    threads=snakemake.threads,
    job=wildcards.get("model_id") or wildcards.get("group"),
)
