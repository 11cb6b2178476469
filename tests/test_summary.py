"""The summary page says what a study left out instead of showing empty tables."""

from __future__ import annotations

from weightspace import summary


def page(tmp_path, interpolation: bool, region: bool) -> str:
    claims = tmp_path / "claims.csv"
    claims.write_text("claim,effect,low,high,n,p_value,verdict,paper\n")
    config = {"datasets": {}, "seeds": [0], "base_model": {"builtin": "x"}, "finetune": {},
              "interpolation": {"enabled": interpolation}, "region": {"enabled": region}}
    return summary.write(config, tmp_path / "summary.md", "a base", [], [], interpolation_claims=str(claims))


def test_a_study_without_lines_or_regions_says_so_and_how_to_add_them(tmp_path):
    text = page(tmp_path, interpolation=False, region=False)
    section = text.split("## Lines, the edge of the region, and its centre", 1)[1]
    assert "Not in this study" in section and "configs/default-full.yaml" in section
    assert "| claim |" not in section  # no empty claims table


def test_a_study_with_lines_shows_their_claims_section(tmp_path):
    for interpolation, region in ((True, False), (False, True)):
        text = page(tmp_path, interpolation, region)
        assert "Not in this study" not in text
