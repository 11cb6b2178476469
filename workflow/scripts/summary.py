"""Rule summary: results/summary.md (and summary.html, for the report) from the tables it cites."""

from weightspace import logs
from weightspace.model import base_model
from weightspace.report import summary

logs.to_file(snakemake.log[0])
i = snakemake.input
summary.write(
    config=snakemake.params.config,
    out_path=snakemake.output.markdown,
    html_path=snakemake.output.html,
    base_description=base_model.base_info(i.base)["source"],
    meta_files=i.metas,
    metrics_files=i.metrics,
    geometry_claims=i.geometry_claims,
    interpolation_claims=i.interpolation_claims,
    fusion_claims=i.fusion_claims or None,
    fusion_overview=i.fusion_overview or None,
    probe_matrix=i.probe_matrix,
    stage_times=i.stage_times,
    tsne_table=i.tsne_table,
    merges=i.merges or None,
    start_outcomes=i.start_outcomes or None,
    start_targets=i.start_targets or None,
    figures={
        k: i[k]
        for k in (
            *("tsne", "heatmap", "probe", "interpolation", "planes", "region", "fusion"),
            "where_to_start",
        )
        if i[k]
    },
)
