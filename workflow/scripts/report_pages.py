"""Rule report_pages: each table of the study as an HTML page for Snakemake's report."""

from weightspace import logs
from weightspace.report import html

logs.to_file(snakemake.log[0])
html.write_pages(
    {
        name: (snakemake.input[name], snakemake.output[name], title)
        for name, title in snakemake.params.titles.items()
    }
)
