"""The report's HTML pages: tables with coloured verdicts, summary.md rendered with its images
embedded."""

from __future__ import annotations

import pandas as pd

from weightspace.report import html


def test_markdown_page_renders_tables_lists_and_embeds_images(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (tmp_path / "summary.md").write_text(
        "# Title\n\nSome **bold** and *italic* text with `code`.\n\n- one\n- two\n\n"
        "| claim | verdict |\n|---|---|\n| a \\| b | holds |\n| c | inconclusive |\n\n"
        "![A figure](figures/a.png)\n"
    )
    html.write_markdown_page(tmp_path / "summary.md", tmp_path / "summary.html", "Summary")
    page = (tmp_path / "summary.html").read_text()
    assert (
        "<h1>Title</h1>" in page and "<strong>bold</strong>" in page and "<em>italic</em>" in page
    )
    assert "<ul><li>one</li><li>two</li></ul>" in page and "<code>code</code>" in page
    assert (
        '<td class="holds">holds</td>' in page
        and '<td class="inconclusive">inconclusive</td>' in page
    )
    assert "<td>a | b</td>" in page
    assert 'src="data:image/png;base64,' in page and "figures/a.png" not in page


def test_table_pages(tmp_path):
    frame = pd.DataFrame({"claim": ["x <y>"], "effect": [0.123456], "verdict": ["does not hold"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "c.yaml").write_text("seeds: [0, 1]\n")
    html.write_pages(
        {
            "t_claims": (tmp_path / "t.csv", tmp_path / "t.html", "T"),
            "config": (tmp_path / "c.yaml", tmp_path / "c.html", "Config"),
        }
    )
    page = (tmp_path / "t.html").read_text()
    assert (
        "x &lt;y&gt;" in page
        and "<td>0.1235</td>" in page
        and '<td class="fails">does not hold</td>' in page
    )
    assert "when the 95% interval excludes 0" in page  # claims pages carry the verdict rule
    assert "<pre>seeds: [0, 1]\n</pre>" in (tmp_path / "c.html").read_text()
