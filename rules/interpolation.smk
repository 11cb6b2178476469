# Lines, planes and region samples between models, evaluated by the linear probe.

# figure output -> (the traversal study it draws, file, report caption); a study that is off draws none
TRAVERSAL_FIGURES = {
    "line_figure": ("line", "interpolation.png", "interpolation.rst"),
    "plane_figure": ("plane", "planes.png", "planes_figure.rst"),
    "region_figure": ("region", "region.png", "region_figure.rst"),
}


def traversal_figures():
    return {
        name: report(
            f"{RESULTS}/figures/{file}", caption=f"../report/{caption}", category="Interpolation"
        )
        for name, (study_name, file, caption) in TRAVERSAL_FIGURES.items()
        if study_name in PLAN.traversal_studies()
    }


def traversal_figure(name):
    """A traversal figure's path where its study has points, else no input."""
    study_name, file, _ = TRAVERSAL_FIGURES[name]
    return f"{RESULTS}/figures/{file}" if study_name in PLAN.traversal_studies() else []


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
