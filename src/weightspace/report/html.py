"""Standalone HTML pages of the study's tables and of summary.md, so that Snakemake's report shows
them inline.

A small Markdown subset (headings, lists, pipe tables, images, paragraphs, **bold**, *italic*,
`code`, [links](...)) is all summary.md uses; images are embedded as data URIs so the page
shows them wherever it is opened.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from weightspace.atomic import write_text

STYLE = """<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
td.holds { background: #d9f2d9 !important; } td.fails { background: #f8d7d7 !important; }
td.inconclusive { background: #fff3cd !important; }
td.untestable { background: #e2e3e5 !important; }
img { max-width: 100%; }
p.caption { color: #555; max-width: 60em; }
</style>"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"{STYLE}</head><body>\n{body}\n</body></html>\n"
    )


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return html.escape(str(value))


def _verdict_class(value) -> str:
    return {
        "holds": ' class="holds"',
        "does not hold": ' class="fails"',
        "inconclusive": ' class="inconclusive"',
        "not testable": ' class="untestable"',
    }.get(str(value), "")


def table_html(frame: pd.DataFrame) -> str:
    """A table, numbers to 4 significant digits, verdict cells coloured."""
    if frame.empty:
        return "<p><em>(none in this run)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f"<td{_verdict_class(v) if c == 'verdict' else ''}>{_cell(v)}</td>"
            for c, v in zip(frame.columns, values)
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def write_table(path, frame: pd.DataFrame, title: str, caption: str = "") -> None:
    body = f"<h1>{html.escape(title)}</h1>\n"
    if caption:
        body += f'<p class="caption">{html.escape(caption)}</p>\n'
    write_text(path, _page(title, body + table_html(frame)))


def write_csv_page(csv_path, html_path, title: str, caption: str = "") -> None:
    write_table(html_path, pd.read_csv(csv_path), title, caption)


def write_text_page(text_path, html_path, title: str) -> None:
    """A text file (the config) as a preformatted page."""
    body = f"<h1>{html.escape(title)}</h1>\n<pre>{html.escape(Path(text_path).read_text())}</pre>"
    write_text(html_path, _page(title, body))


def _inline(text: str, root: Path | None) -> str:
    def image(match):
        alt, src = match.group(1), match.group(2)
        path = (root / src) if root is not None else Path(src)
        if path.exists() and path.suffix.lower() in (".png", ".svg"):
            kind = "png" if path.suffix.lower() == ".png" else "svg+xml"
            src = f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(alt)}" src="{src}">'

    out = html.escape(text, quote=False)
    out = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, out)
    out = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return out


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(text: str, root: Path | None = None) -> str:
    """The Markdown subset summary.md uses, as HTML (images under ``root`` embedded)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip(), root)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            header, body = (
                _split_row(block[0]),
                [r for r in block[1:] if not re.match(r"^\s*\|?\s*:?-{3}", r)],
            )
            head = "".join(f"<th>{_inline(c, root)}</th>" for c in header)
            verdict_col = header.index("verdict") if "verdict" in header else -1
            rows = []
            for r in body:
                cells = _split_row(r)
                rows.append(
                    "<tr>"
                    + "".join(
                        f"<td{_verdict_class(c) if j == verdict_col else ''}>"
                        f"{_inline(c, root)}</td>"
                        for j, c in enumerate(cells)
                    )
                    + "</tr>"
                )
            out.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            )
        elif re.match(r"^\s*[-*] ", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                item = re.sub(r"^\s*[-*] ", "", lines[i])
                items.append(f"<li>{_inline(item, root)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            block = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].startswith(("#", "|"))
                and not re.match(r"^\s*[-*] ", lines[i])
            ):
                block.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(block), root)}</p>")
    return "\n".join(out)


def write_markdown_page(markdown_path, html_path, title: str) -> None:
    source = Path(markdown_path)
    write_text(html_path, _page(title, markdown_to_html(source.read_text(), source.parent)))


def write_pages(pages: dict[str, tuple]) -> None:
    """name -> (table path, page path, title): CSV tables as tables (claims with the verdict rule as
    caption), anything else (the config) as text."""
    from weightspace.stats.verdicts import CAPTION

    for name, (source, target, title) in pages.items():
        if str(source).endswith(".csv"):
            write_csv_page(source, target, title, CAPTION if name.endswith("claims") else "")
        else:
            write_text_page(source, target, title)
