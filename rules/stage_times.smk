# Where the time goes: CPU and wall time by stage, read from every job's benchmark file once the study's
# results exist. Its inputs are every target of the study except the pages that show the stage times (the
# summary, the report's HTML tables), so when it runs every job whose benchmark it reads has run.


localrules:
    stage_times,


rule stage_times:
    input:
        lambda wc: [
            t
            for t in all_targets()
            if "stage_times." not in t and not t.endswith((".html", "summary.md"))
        ],
    output:
        csv=f"{RESULTS}/tables/stage_times.csv",
        html=report(
            f"{RESULTS}/tables/stage_times.html",
            caption="../report/stage_times.rst",
            category="Run time",
        ),
    log:
        f"{RESULTS}/logs/stage_times.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        benchmarks=f"{RESULTS}/benchmarks",
    script:
        "../workflow/scripts/stage_times.py"
