"""Rule stage_times: the jobs' benchmark files -> CPU and wall time by stage (CSV and an HTML
page)."""

from weightspace import logs
from weightspace.report import stage_times

logs.to_file(snakemake.log[0])
stage_times.write(snakemake.params.benchmarks, snakemake.output.csv, snakemake.output.html)
