"""Pearson, Table 1 tests, tertile quantiles, OLS and FRAX proportions against base R
(fixtures written by tests/reference/proc_reference.R; R is not needed here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import age_gap_regression, pearson, table_one, tertile_cuts
from epi_spineage.stats.frax import mcnemar, wilson_ci

REF = Path(__file__).resolve().parents[1] / "reference"
BASE = pd.read_csv(REF / "proc_base.csv")
R = json.loads((REF / "proc_base.json").read_text())
RTOL = 1e-9


def test_pearson_matches_cor_test():
    ref = R["cor_test"]
    res = pearson(BASE["x"], BASE["y"])
    np.testing.assert_allclose(
        [res.estimate, res.statistic, res.ci_low, res.ci_high],
        [ref["estimate"], ref["statistic"], ref["ci_low"], ref["ci_high"]],
        rtol=RTOL,
    )
    np.testing.assert_allclose(res.p_value, ref["p_value"], rtol=RTOL)
    assert res.n == ref["n"] and res.n_dropped == len(BASE) - ref["n"]
    r90 = pearson(BASE["x"], BASE["y"], ci_level=0.9)
    np.testing.assert_allclose([r90.ci_low, r90.ci_high], [ref["ci_low_90"], ref["ci_high_90"]], rtol=RTOL)


def _one(var, data=BASE):
    t = table_one(data, "grp", [var])
    assert t["p_value"].nunique() == 1
    return t


@pytest.mark.parametrize("var,key", [("x", "t_test_x"), ("y", "t_test_y")])
def test_student_t_matches_t_test_var_equal(var, key):
    t = _one(var)
    assert (t["test"] == "Student t-test").all()
    np.testing.assert_allclose(t["p_value"].iloc[0], R[key]["p_value"], rtol=RTOL)
    # R's t.test(x ~ grp) is group 0 minus group 1, like ours
    np.testing.assert_allclose(t["statistic"].iloc[0], R[key]["statistic"], rtol=RTOL)
    if key == "t_test_x":
        g = t.set_index("group")
        np.testing.assert_allclose(
            [g.loc["0", "mean"], g.loc["0", "sd"], g.loc["1", "mean"], g.loc["1", "sd"]],
            [R[key]["mean0"], R[key]["sd0"], R[key]["mean1"], R[key]["sd1"]],
            rtol=RTOL,
        )


def test_anova_for_three_groups():
    t = table_one(BASE, "cat3", ["x"])
    assert t["test"].iloc[0] == "one-way ANOVA"
    np.testing.assert_allclose(
        [t["statistic"].iloc[0], t["p_value"].iloc[0]],
        [R["anova_x_cat3"]["statistic"], R["anova_x_cat3"]["p_value"]],
        rtol=RTOL,
    )


@pytest.mark.parametrize("var,key", [("bin", "chisq_bin_grp"), ("cat3", "chisq_cat3_grp")])
def test_pearson_chi_square_without_yates(var, key):
    t = _one(var)
    assert (t["test"] == "Pearson chi-square").all()
    np.testing.assert_allclose(
        [t["statistic"].iloc[0], t["p_value"].iloc[0]], [R[key]["statistic"], R[key]["p_value"]], rtol=RTOL
    )


@pytest.mark.parametrize("var,key,rows", [("rare", "fisher_rare_grp", None), ("cat3", "fisher_cat3_grp_first40", 40)])
def test_fisher_when_an_expected_count_is_below_5(var, key, rows):
    data = BASE if rows is None else BASE.iloc[:rows]
    t = _one(var, data)
    assert (t["test"] == "Fisher exact").all()
    np.testing.assert_allclose(t["p_value"].iloc[0], R[key]["p_value"], rtol=RTOL)


@pytest.mark.parametrize("col", ["pad", "x"])
@pytest.mark.parametrize("method", ["type7", "type2"])
def test_tertiles_match_r_quantile(col, method):
    cuts = tertile_cuts(BASE[col], method=method)
    np.testing.assert_allclose([cuts.lower, cuts.upper], R[f"quantile_{col}"][method], rtol=RTOL)
    assert cuts.n == int(BASE[col].notna().sum())


def test_ols_matches_lm():
    ref = R["lm"]
    res = age_gap_regression(BASE, outcome="y", covariates=["x", "sex", "bin", "z1"])
    c = res.coefficients
    assert list(c["term"]) == ref["terms"]
    for col in ("estimate", "std_error", "statistic", "ci_low", "ci_high"):
        np.testing.assert_allclose(c[col], ref[col], rtol=RTOL, err_msg=col)
    np.testing.assert_allclose(c["p_value"], ref["p_value"], rtol=RTOL)
    np.testing.assert_allclose([res.r2, res.adj_r2, res.sigma], [ref["r2"], ref["adj_r2"], ref["sigma"]], rtol=RTOL)
    assert res.n == ref["n"] and res.n_excluded == len(BASE) - ref["n"]


def test_mcnemar_and_wilson_match_r():
    t = R["mcnemar"]["table"]  # column-major 2x2: b = [0,1] = t[2], c = [1,0] = t[1]
    stat, p = mcnemar(t[2], t[1])
    np.testing.assert_allclose([stat, p], [R["mcnemar"]["statistic"], R["mcnemar"]["p_value"]], rtol=RTOL)
    for key in ("wilson", "wilson_zero"):
        ref = R[key]
        est, lo, hi = wilson_ci(ref["x"], ref["n"])
        np.testing.assert_allclose([lo, hi], [ref["ci_low"], ref["ci_high"]], rtol=RTOL, atol=1e-15)
        assert lo <= est <= hi
