"""Rule probe_l2: a dataset's L2 strength, by cross-validation on the pretrained model's training features."""
from pathlib import Path

from weightspace import evaluation, logs

logs.to_file(snakemake.log[0])
base = Path(snakemake.input.base)  # the base folder, or its base.json
evaluation.run_select_l2(
    base_dir=base.parent if base.is_file() else base,
    cache_dir=snakemake.params.cache_dir,
    out_path=snakemake.output[0],
    weights_path=snakemake.input.weights,
    dataset=dict(snakemake.params.dataset),
    # read from the config, not the rule's params: switching it reruns nothing
    settings=dict(snakemake.params.settings, keep_features=snakemake.config["probe"]["keep_features"]),
    threads=snakemake.threads,
)
