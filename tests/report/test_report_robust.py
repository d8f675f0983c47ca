"""Odd data never crash the report: empty groups, one sex, all censored, a handful of events.

A step that cannot run on the data is skipped with a reason in the data-quality section
(``AnalysisNotPossible``); any other exception is a programming error and fails these tests.
"""

from __future__ import annotations

import pytest

from epi_spineage.report.analyses import run_study
from epi_spineage.report.config import StudyConfig


@pytest.fixture(scope="module")
def small_study():
    from epi_spineage.report import demo_study

    der, ext, _ = demo_study(3, 600, 300)
    return der, ext


def test_empty_four_group_does_not_crash(small_study):
    # issue 11 item 9: a cut of 60 years leaves both "accelerated" groups empty; the mortality step
    # used to raise AttributeError (.str accessor) inside group_hazard_ratios
    der, ext = small_study
    res = run_study(der, ext, StudyConfig(fixed_cut_years=60.0))
    q = res.data_quality
    assert (q["item"].str.contains("accelerated") | q["detail"].str.contains("accelerated")).any()
