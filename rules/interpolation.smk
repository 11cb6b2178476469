# Lines, planes and region samples between models, evaluated by the linear probe.


rule interpolation_summary:
    input:
        probes=probe_results(traversal.evaluations(config)),
        fusion=rules.fusion_summary.output.overview if fusion.runs(config) else [],
    output:
        lines=report(f"{RESULTS}/interpolation/lines.csv", caption="../report/lines.rst", category="Interpolation"),
        planes=report(f"{RESULTS}/interpolation/planes.csv", caption="../report/planes.rst", category="Interpolation"),
        region=report(f"{RESULTS}/interpolation/region.csv", caption="../report/region.rst", category="Interpolation"),
        claims=report(f"{RESULTS}/interpolation/claims.csv", caption="../report/interpolation_claims.rst",
                      category="Claims"),
        line_figure=report(f"{RESULTS}/figures/interpolation.png", caption="../report/interpolation.rst",
                           category="Interpolation"),
        plane_figure=report(f"{RESULTS}/figures/planes.png", caption="../report/planes_figure.rst",
                            category="Interpolation"),
        region_figure=report(f"{RESULTS}/figures/region.png", caption="../report/region_figure.rst",
                             category="Interpolation"),
    params:
        points=[dict(p.as_row(), eval_datasets=list(p.eval_datasets)) for p in traversal.all_points(config)],
    log:
        f"{RESULTS}/logs/interpolation_summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../workflow/scripts/interpolation_summary.py"
