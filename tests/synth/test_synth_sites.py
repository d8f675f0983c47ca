"""Site-specific PAD effects: vertebral and non-vertebral fractures carry the published model-1 contrast
(derivation vertebral < non-vertebral, external vertebral > non-vertebral), each exactly PH and
recovered by a Cox fit on its generating covariates; without site HRs every site shares one HR."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from epi_spineage.synth.cohort import (
    DERIVATION,
    EXTERNAL,
    PUBLISHED_MODEL1_HR,
    published_site_hrs,
    simulate_cohort,
)

from ._cox import cox_breslow, design


def test_published_site_hrs_rule():
    ext = published_site_hrs(1.28, "external")
    assert ext == pytest.approx({"vertebral": 1.41, "nonvertebral": 1.20})
    der = published_site_hrs(1.55, "derivation")
    pub = PUBLISHED_MODEL1_HR["derivation"]
    # same log-HR ratios as the published table
    assert np.log(der["vertebral"]) / np.log(1.55) == pytest.approx(np.log(pub["vertebral"]) / np.log(pub["overall"]))
    assert der["vertebral"] < 1.55 < der["nonvertebral"]


@pytest.mark.parametrize("spec", [DERIVATION, EXTERNAL])
def test_site_hrs_recovered(spec):
    df, truth = simulate_cohort(spec, 20_000, np.random.default_rng(77))
    est = {}
    for outcome in ("fracture_vertebral", "fracture_nonvertebral"):
        t = truth["outcomes"][outcome]
        cov = list(t["covariates"])
        d = df.dropna(subset=[c for c in cov if c in df.columns])
        beta, se = cox_breslow(d[outcome + "_years"], d[outcome], design(d, cov))
        z = (beta[0] - t["log_hr_per_year_pad"]) / se[0]
        assert abs(z) < 3.5, (outcome, beta[0], t["log_hr_per_year_pad"], se[0])
        est[outcome] = beta[0]
    site = truth["fracture_sites"]["hr_per_sd_pad"]
    assert site == spec.site_hr_per_sd_pad
    if spec is DERIVATION:
        assert site["vertebral"] < site["nonvertebral"]
    else:
        assert site["vertebral"] > site["nonvertebral"]


def test_shared_hr_option_is_exact_for_every_site():
    spec = replace(DERIVATION, site_hr_per_sd_pad=None)
    _, truth = simulate_cohort(spec, 200, np.random.default_rng(1))
    hrs = {o: v["hr_per_sd_pad"] for o, v in truth["outcomes"].items() if o.startswith("fracture")}
    assert set(hrs.values()) == {spec.fracture_hr_per_sd_pad}
    assert all("least_false" not in v for v in truth["outcomes"].values())


def test_any_fracture_truth_is_the_least_false_fit():
    _, truth = simulate_cohort(DERIVATION, 100, np.random.default_rng(2))
    t = truth["outcomes"]["fracture_any"]
    lf = t["least_false"]
    assert lf["exact_ph"] is False and lf["n_reference"] == 200_000
    assert t["log_hr_per_year_pad"] == t["covariates"]["pad_years"]
    # between the two site effects
    v = truth["outcomes"]["fracture_vertebral"]["log_hr_per_year_pad"]
    nv = truth["outcomes"]["fracture_nonvertebral"]["log_hr_per_year_pad"]
    assert v < t["log_hr_per_year_pad"] < nv
    assert isinstance(pd.Series(t["covariates"]).sum(), float)
