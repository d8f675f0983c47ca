"""Cox models vs R survival::coxph (estimates, SE, z, p, CI to 1e-6), concordance and the PH test.

Fixtures written by tests/reference/survival_reference.R (R not needed here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import cox_per_sd, group_hazard_ratios, subgroup_hazard_ratios

REF = Path(__file__).resolve().parents[1] / "reference"
RTOL = 1e-6


def _load(name):
    data = pd.read_csv(REF / f"survival_{name}.csv")
    with open(REF / f"survival_{name}.json") as fh:
        gold = json.load(fh)
    return data, gold


CASES = [(name, spec["name"]) for name in ("lung", "sim1", "sim2") for spec in _load(name)[1]["cox"]]


@pytest.fixture(scope="module")
def fixtures():
    return {name: _load(name) for name in ("lung", "sim1", "sim2")}


def _fit(fixtures, name, spec_name):
    data, gold = fixtures[name]
    spec = next(s for s in gold["cox"] if s["name"] == spec_name)
    strata = spec["strata"] if isinstance(spec["strata"], str) else None
    covs = spec["covariates"] if isinstance(spec["covariates"], list) else [spec["covariates"]]
    res = cox_per_sd(data, "time", "status", spec["exposure"], covs, ties=spec["ties"], strata=strata)
    return res, spec


@pytest.mark.parametrize("name,spec_name", CASES)
def test_cox_matches_coxph(fixtures, name, spec_name):
    res, spec = _fit(fixtures, name, spec_name)
    s = res.summary
    assert len(s) == len(spec["terms"])
    np.testing.assert_allclose(s["sd"].iloc[0], spec["sd"], rtol=1e-12)
    np.testing.assert_allclose(s["log_hr"], spec["coef"], rtol=RTOL)
    np.testing.assert_allclose(s["std_error"], spec["se"], rtol=RTOL)
    np.testing.assert_allclose(s["statistic"], spec["z"], rtol=RTOL)
    np.testing.assert_allclose(s["p_value"], spec["p"], rtol=RTOL)
    np.testing.assert_allclose(s["estimate"], spec["hr"], rtol=RTOL)
    np.testing.assert_allclose(s["ci_low"], spec["lower"], rtol=RTOL)
    np.testing.assert_allclose(s["ci_high"], spec["upper"], rtol=RTOL)
    np.testing.assert_allclose([res.loglik_null, res.loglik], spec["loglik"], rtol=1e-9)
    assert res.n == spec["n"] and res.events == spec["nevent"] and res.n_excluded == spec["n_excluded"]
    assert (s["n_excluded"] == spec["n_excluded"]).all()
    assert res.converged
    assert s["scale"].iloc[0] == "per SD" and (s["scale"].iloc[1:] != "per SD").all()


@pytest.mark.parametrize("name,spec_name", CASES)
def test_concordance_matches_r(fixtures, name, spec_name):
    res, spec = _fit(fixtures, name, spec_name)
    np.testing.assert_array_equal(res.concordance_counts, spec["concordance_count"])
    np.testing.assert_allclose(res.concordance, spec["concordance"], rtol=1e-9)


@pytest.mark.parametrize("name,spec_name", [c for c in CASES if "strata" not in c[1]])
def test_ph_test_matches_survival2_zph(fixtures, name, spec_name):
    res, spec = _fit(fixtures, name, spec_name)
    old = spec["zph_old"]
    np.testing.assert_allclose(res.ph_test["statistic"], old["statistic"], rtol=1e-6)
    np.testing.assert_allclose(res.ph_test["p_value"], old["p"], rtol=1e-6)
    np.testing.assert_allclose(res.ph_test["rho"].iloc[:-1], old["rho"], rtol=1e-6)
    assert res.ph_test["term"].iloc[-1] == "GLOBAL"


def test_group_hazard_ratios_match_coxph(fixtures):
    data, gold = fixtures["sim1"]
    g = gold["group_hr"]
    res = group_hazard_ratios(data, "time", "status", "grp", reference="A")
    assert list(res["group"]) == ["A", "B", "C", "D"]
    assert res["estimate"].iloc[0] == 1.0 and np.isnan(res["ci_low"].iloc[0])
    other = res.iloc[1:]
    np.testing.assert_allclose(other["log_hr"], g["coef"], rtol=RTOL)
    np.testing.assert_allclose(other["std_error"], g["se"], rtol=RTOL)
    np.testing.assert_allclose(other["p_value"], g["p"], rtol=RTOL)
    np.testing.assert_allclose(other["ci_low"], g["lower"], rtol=RTOL)
    np.testing.assert_allclose(other["ci_high"], g["upper"], rtol=RTOL)
    assert res["n_group"].sum() == len(data)


def test_subgroup_hazard_ratios_and_interaction(fixtures):
    data, gold = fixtures["sim1"]
    sg = gold["subgroup"]
    res = subgroup_hazard_ratios(data, "time", "status", "x", by="sex", covariates=["age", "sex"])
    assert list(res["level"]) == ["F", "M"]
    np.testing.assert_allclose(res["sd"], sg["sd"], rtol=1e-12)
    np.testing.assert_allclose(np.log(res["estimate"]), [r["coef"] for r in sg["rows"]], rtol=RTOL)
    np.testing.assert_allclose(res["std_error"], [r["se"] for r in sg["rows"]], rtol=RTOL)
    np.testing.assert_allclose(res["p_interaction"].iloc[0], sg["p_interaction"], rtol=RTOL)
