# Lines, planes and region samples between models, evaluated by the linear probe.


rule interpolation_summary:
    input:
        probes=traversal_results(),
        pretrained=model_results([study.PRETRAINED]),  # the centroid is compared with it
    output:
        **traversal_figures(),
        lines=f"{RESULTS}/interpolation/lines.csv",
        planes=f"{RESULTS}/interpolation/planes.csv",
        region=f"{RESULTS}/interpolation/region.csv",
        claims=f"{RESULTS}/interpolation/claims.csv",
    log:
        f"{RESULTS}/logs/interpolation_summary.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        points=[dict(p.as_row(), eval_datasets=list(p.eval_datasets)) for p in PLAN.points],
        bootstrap=config["geometry"]["bootstrap"],
        seed=config["geometry"]["seed"],
    script:
        "../workflow/scripts/interpolation_summary.py"
