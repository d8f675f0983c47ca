"""validate_cohort's consistency checks between outcomes (issue 11 item 3; docs/guides/cohort.md#validation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.synth import simulate_study
from epi_spineage.tables import validate_cohort

SITES = ("fracture_vertebral", "fracture_nonvertebral", "fracture_hip")


def _cohort(n=30):
    """Consistent outcomes: no fracture, every follow-up ends at 6 years, nobody died."""
    df = pd.DataFrame(
        {
            "participant_id": [f"P{i:03d}" for i in range(n)],
            "cohort": "derivation",
            "age_years": np.linspace(50, 85, n),
            "sex": ["F", "M"] * (n // 2),
            "fracture_any": 0,
            "fracture_any_years": 6.0,
            "death": 0,
            "death_years": 6.0,
        }
    )
    for site in SITES:
        df[site] = 0
        df[f"{site}_years"] = 6.0
    return df


def test_consistent_cohort_passes_and_allowed_cases_are_not_errors():
    df = _cohort()
    assert validate_cohort(df) == []
    # a fracture on the day of death: equal times are allowed
    df.loc[1, ["fracture_hip", "fracture_hip_years", "fracture_any", "fracture_any_years"]] = [1, 3.0, 1, 3.0]
    df.loc[1, ["death", "death_years"]] = [1, 3.0]
    df.loc[1, ["fracture_vertebral_years", "fracture_nonvertebral_years"]] = 3.0
    # a censored death time before fracture follow-up ends: registries end on different dates
    df.loc[2, "death_years"] = 4.0
    # a site fracture after another (site time later than the any-fracture time)
    first = ["fracture_vertebral", "fracture_vertebral_years", "fracture_any", "fracture_any_years"]
    df.loc[3, first] = [1, 2.0, 1, 2.0]
    df.loc[3, ["fracture_hip", "fracture_hip_years"]] = [1, 5.0]
    assert validate_cohort(df) == []


def test_fracture_follow_up_beyond_death_is_an_error_naming_the_rows():
    df = _cohort()
    df.loc[[4, 7], ["death", "death_years"]] = [1, 3.0]  # fracture follow-up runs 3 years past these deaths
    problems = validate_cohort(df, raise_on_error=False)
    assert problems == [
        "fracture_any_years, fracture_vertebral_years, fracture_nonvertebral_years, "
        "fracture_hip_years: 2 row(s) with follow-up beyond the death time "
        "(death = 1, death_years earlier) (rows 5, 8)"
    ]


def test_site_fracture_without_any_fracture_and_site_before_any_are_errors():
    df = _cohort()
    df.loc[[0, 9], ["fracture_vertebral", "fracture_vertebral_years"]] = [1, 2.0]  # fracture_any stays 0
    df.loc[10, ["fracture_any", "fracture_any_years"]] = [1, 4.0]
    df.loc[10, ["fracture_hip", "fracture_hip_years"]] = [1, 2.5]  # a hip fracture before the first fracture
    text = "\n".join(validate_cohort(df, raise_on_error=False))
    assert "fracture_any: 2 row(s) with a site fracture (fracture_vertebral) but fracture_any = 0 (rows 1, 10)" in text
    assert "fracture_vertebral_years: 2 row(s) earlier than fracture_any_years" in text
    assert "fracture_hip_years: 1 row(s) earlier than fracture_any_years (row 11)" in text


def test_event_after_death_is_an_error():
    df = _cohort()
    df.loc[5, ["death", "death_years"]] = [1, 2.0]
    df.loc[5, ["fracture_any", "fracture_any_years", "fracture_hip", "fracture_hip_years"]] = [1, 2.5, 1, 2.5]
    df.loc[5, ["fracture_vertebral_years", "fracture_nonvertebral_years"]] = 2.0
    text = "\n".join(validate_cohort(df, raise_on_error=False))
    assert "fracture_any_years, fracture_hip_years: 1 row(s) with follow-up beyond the death time" in text


@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_cohorts_are_consistent(seed):
    study = simulate_study(seed, n_derivation=2000, n_external=800)
    for df in (study.derivation, study.external):
        assert validate_cohort(df, raise_on_error=False) == []
