"""The summary page says what a study left out instead of showing empty tables."""

from __future__ import annotations

import pandas as pd

from weightspace.report import summary
from weightspace.stats import verdicts


def page(tmp_path, interpolation: bool, region: bool) -> str:
    claims = tmp_path / "claims.csv"
    # what a study without lines writes: its claims, not computable
    pd.DataFrame(
        [
            verdicts.not_computable(
                "interior_same_dataset",
                "Points between two models ...",
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
        config, tmp_path / "summary.md", "a base", [], [], interpolation_claims=str(claims)
    )


def test_a_study_without_lines_or_regions_says_so_and_how_to_add_them(tmp_path):
    text = page(tmp_path, interpolation=False, region=False)
    section = text.split("## Lines, the edge of the region, and its centre", 1)[1]
    assert "Not in this study" in section and "configs/default-full.yaml" in section
    assert "| claim |" not in section  # no empty claims table
    assert "**This run:** 0 headline claims" in text  # nor claims it did not study in the count


def test_a_study_with_lines_shows_their_claims_section(tmp_path):
    for interpolation, region in ((True, False), (False, True)):
        text = page(tmp_path, interpolation, region)
        assert "Not in this study" not in text
        assert (
            "**This run:** 1 headline claims: 0 hold, 0 do not hold, 1 inconclusive, "
            "0 not testable; 1 descriptions"
        ) in text
        assert (
            "Headline claims:" in text and "Descriptions (" in text and "| Holm threshold |" in text
        )
