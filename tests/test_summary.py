"""The summary page says what a study left out instead of showing empty tables."""

from __future__ import annotations

import pandas as pd

from weightspace.report import summary
from weightspace.stats import verdicts


def page(tmp_path, interpolation: bool, region: bool, figures: dict | None = None) -> str:
    claims = tmp_path / "claims.csv"
    # what a study without lines writes: its claims, not computable
    pd.DataFrame(
        [
            verdicts.not_computable(
                "interior_same_dataset",
                "Interior of same-dataset lines",
                "no lines",
                "lines",
                "Gueta et al. 2023, Fig. 4",
                family="lines and regions",
                headline=True,
            ),
            verdicts.not_computable(
                "interior_cross_task",
                "Points between models of two tasks ...",
                "no lines",
                "lines",
                "Gueta et al. 2023",
            ),
        ]
    ).to_csv(claims, index=False)
    config = {
        "datasets": {},
        "seeds": [0],
        "base_model": {"builtin": "x"},
        "finetune": {},
        "interpolation": {"enabled": interpolation},
        "region": {"enabled": region},
    }
    return summary.write(
        config,
        tmp_path / "summary.md",
        "a base",
        [],
        [],
        interpolation_claims=str(claims),
        figures=figures,
    )


def test_a_study_without_lines_or_regions_says_so_and_how_to_add_them(tmp_path):
    text = page(tmp_path, interpolation=False, region=False)
    section = text.split("## Lines, the edge of the region, and its centre", 1)[1]
    assert "Not in this study" in section and "`interpolation.enabled`" in section
    assert "| claim |" not in section  # no empty claims table
    assert "**This run:** 0 headline claims" in text  # nor claims it did not study in the count
    # the top of the page names every stage that is off and the key that turns it on
    off = text.split("**Not in this study:**", 1)[1].split("\n", 1)[0]
    assert "lines and extrapolation (off: `interpolation.enabled: true`" in off
    assert "regions" in off and "`region.enabled: true`" in off and "planes" in off
    assert "fusion" not in off and "probe matrix" not in off  # on by default


def test_the_first_screen_is_the_claims_table_then_the_headline_figures(tmp_path):
    figures = {}
    for key in ("tsne", "interpolation", "probe", "fusion", "heatmap"):
        figures[key] = str(tmp_path / f"{key}.png")
        (tmp_path / f"{key}.png").write_bytes(b"png")
    text = page(tmp_path, interpolation=True, region=True, figures=figures)
    first = text.split("## The paper's claims in this run", 1)[1].split("**How a verdict", 1)[0]
    header = first.split("\n")[2]
    assert header == "| family | claim | paper | effect | 95% interval | p | verdict |"
    assert "| lines and regions | Interior of same-dataset lines |" in first
    images = [line for line in first.split("\n") if line.startswith("![")]
    assert [line.rsplit("(", 1)[1] for line in images] == [
        "tsne.png)",
        "interpolation.png)",
        "probe.png)",
        "fusion.png)",
    ]
    assert text.index("## The paper's claims") < text.index("## Setup")
    assert "heatmap.png" not in first  # the distances are drawn in their own section


def test_a_stage_without_its_figure_file_draws_nothing(tmp_path):
    text = page(tmp_path, interpolation=True, region=True, figures={"tsne": "/nonexistent.png"})
    assert "![" not in text


def test_a_study_with_lines_shows_their_claims_section(tmp_path):
    for interpolation, region in ((True, False), (False, True)):
        text = page(tmp_path, interpolation, region)
        section = text.split("## Lines, the edge of the region, and its centre", 1)[1]
        assert "Not in this study" not in section
        assert (
            "**This run:** 1 headline claims: 0 hold, 0 do not hold, 1 inconclusive, "
            "0 not testable; 1 descriptions"
        ) in text
        assert (
            "Headline claims:" in text and "Descriptions (" in text and "| Holm threshold |" in text
        )
