"""Multiple imputation: Rubin's rules vs R mice::pool (tests/reference/mi_reference.R) to 1e-10, the
imputation's bookkeeping and reproducibility, and a small MAR recovery check (complete cases biased,
MI not)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import cox_per_sd, impute_mice, mi_cox_per_sd, pool_rubin
from epi_spineage.stats.imputation import nelson_aalen_at

REF = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def cases():
    with open(REF / "mi_reference.json") as fh:
        return {c["name"]: c for c in json.load(fh)["cases"]}


def _close(got, ref, rtol=1e-10):
    ref = np.atleast_1d(np.asarray(ref, dtype=float))
    np.testing.assert_allclose(np.asarray(got, dtype=float), ref, rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("name", ["cox", "lm"])
def test_pool_equals_mice_pool(cases, name):
    c = cases[name]
    P = c["pooled"]
    out = pool_rubin(c["estimates"], c["variances"], c["dfcom"], terms=P["term"])
    assert list(out["term"]) == P["term"]
    for col in [
        "estimate",
        "std_error",
        "statistic",
        "df",
        "ci_low",
        "ci_high",
        "riv",
        "lambda",
        "fmi",
        "ubar",
        "b",
        "t",
        "dfcom",
    ]:
        _close(out[col], P[col])
    _close(out["p_value"], P["p_value"], rtol=1e-9)  # tail areas near 1e-11 lose a digit to the t CDF


def test_cox_dfcom_is_events_minus_coefficients(cases):
    # mice:::get.dfcom for a coxph fit: nevent - length(coef) (broom's glance has no df.residual)
    c = cases["cox"]
    assert c["dfcom"] == c["nevent"] - c["n_coef"]


@pytest.mark.parametrize("name", ["scalar_inf", "scalar_small", "scalar_nob"])
def test_pool_scalar(cases, name):
    c = cases[name]
    dfcom = np.inf if c["dfcom"] == "Inf" else c["dfcom"]
    out = pool_rubin(c["estimates"], c["variances"], dfcom).iloc[0]
    P = c["pooled"]
    for col in ["estimate", "ubar", "t", "df", "fmi"]:
        _close(out[col], P[col])
    if P["b"] == 0:  # no between-imputation variance: lambda floored at 1e-4 for the df, as mice
        assert out["b"] == 0 and out["riv"] == 0
    else:
        _close(out["b"], P["b"])
        _close(out["riv"], P["riv"])


def test_pool_bad_input():
    with pytest.raises(UserError):
        pool_rubin([1.0], [0.1])
    with pytest.raises(UserError):
        pool_rubin([1.0, 2.0], [0.1, 0.2, 0.3])
    with pytest.raises(UserError):
        pool_rubin([1.0, 2.0], [0.1, 0.2], dfcom=0)


def test_nelson_aalen_with_ties():
    t = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 4.0])
    e = np.array([1, 0, 1, 1, 1, 0])
    h1 = 1 / 6
    h2 = h1 + 1 / 4
    h3 = h2 + 2 / 3
    np.testing.assert_allclose(nelson_aalen_at(t, e), [h1, h1, h2, h3, h3, h3])


def _mar_cohort(n: int, seed: int) -> pd.DataFrame:
    """Exposure x (observed), confounder z with logit P(missing) = -1.5 + 2 event + x: MAR given the
    observed x and outcome, under which complete cases are biased. Planted HR per unit: x 1.5, z 1.5."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = 0.5 * x + rng.normal(size=n)
    sex = rng.choice(["F", "M"], n)
    t = rng.exponential(1.0 / (0.1 * np.exp(np.log(1.5) * x + np.log(1.5) * z)))
    c = rng.uniform(1.0, 8.0, n)
    ev = (t <= c).astype(int)
    miss = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(-1.5 + 2.0 * ev + x)))
    return pd.DataFrame(
        {"time": np.minimum(t, c), "event": ev, "x": x, "z": np.where(miss, np.nan, z), "sex": sex, "z_full": z}
    )


def test_impute_bookkeeping_and_reproducible():
    d = _mar_cohort(400, 1)
    d.loc[d.index[:7], "sex"] = None
    a = impute_mice(d, ["x", "z", "sex"], time="time", event="event", m=3, n_iter=3, seed=5)
    b = impute_mice(d, ["x", "z", "sex"], time="time", event="event", m=3, n_iter=3, seed=5)
    c = impute_mice(d, ["x", "z", "sex"], time="time", event="event", m=3, n_iter=3, seed=6)
    assert len(a.datasets) == 3
    for da, db in zip(a.datasets, b.datasets):
        pd.testing.assert_frame_equal(da, db)
    assert not a.datasets[0]["z"].equals(c.datasets[0]["z"])
    obs = d["z"].notna()
    for ds in a.datasets:
        assert ds["z"].notna().all() and ds["sex"].notna().all()
        np.testing.assert_array_equal(ds.loc[obs, "z"], d.loc[obs, "z"])  # observed values untouched
        assert set(ds["sex"]) == {"F", "M"}
        pd.testing.assert_frame_equal(ds.drop(columns=["z", "sex"]), d.drop(columns=["z", "sex"]))
    # the draws carry the signal of the observed predictors (corr(x, z) is about 0.36 where z is missing)
    r = [np.corrcoef(ds.loc[~obs, "z"], ds.loc[~obs, "z_full"])[0, 1] for ds in a.datasets]
    assert np.mean(r) > 0.1
    # sets differ from each other where imputed (posterior draws, not one fill-in)
    assert not np.allclose(a.datasets[0].loc[~obs, "z"], a.datasets[1].loc[~obs, "z"])
    miss = a.missing.set_index("variable")
    assert miss.loc["z", "n_missing"] == int((~obs).sum())
    assert miss.loc["sex", "n_missing"] == 7
    assert miss.loc["z", "share_missing"] == pytest.approx((~obs).mean())
    assert a.predictors == ["x", "z", "sex", "Cox(time, event)"]  # the outcome enters as a Cox model
    assert a.method.startswith("SMC-FCS")


def test_pmm_method_bookkeeping():
    # the White-Royston approximation (R mice's pmm with the event indicator and H(T)) stays available
    d = _mar_cohort(300, 3)
    d.loc[d.index[:5], "sex"] = None
    a = impute_mice(d, ["x", "z", "sex"], time="time", event="event", m=2, n_iter=2, seed=5, method="pmm")
    obs = d["z"].notna()
    for ds in a.datasets:
        assert ds["z"].notna().all() and set(ds["sex"]) == {"F", "M"}
        assert set(ds.loc[~obs, "z"]) <= set(d.loc[obs, "z"])  # pmm gives observed donors' values
    assert "event" in a.predictors and "H(time)" in a.predictors
    assert a.method.startswith("MICE")


def test_impute_bad_input():
    d = _mar_cohort(50, 2)
    with pytest.raises(UserError):
        impute_mice(d, ["x", "z"], time="time", event=None)
    with pytest.raises(UserError):
        impute_mice(d.assign(g=list("abc") * 16 + ["a", "b"]), ["x", "z", "g"])
    with pytest.raises(UserError):
        impute_mice(d, ["x", "z"], m=1)
    with pytest.raises(UserError):
        impute_mice(d, ["x", "z"], time="time", event="event", method="norm")


def test_mi_recovers_planted_hr_where_complete_cases_are_biased():
    d = _mar_cohort(2000, 11)
    truth = np.log(1.5)
    full = np.log(cox_per_sd(d, "time", "event", "x", ["z_full"], sd=1.0).summary.loc[0, "estimate"])
    cc = cox_per_sd(d, "time", "event", "x", ["z"], sd=1.0).summary.iloc[0]
    mi = impute_mice(d, ["x", "z"], time="time", event="event", m=10, n_iter=5, seed=1)
    pooled = mi_cox_per_sd(mi, "time", "event", "x", ["z"], sd=1.0)
    row = pooled.iloc[0]
    # complete cases: biased towards 1, the CI excludes the truth
    assert cc["ci_high"] < 1.5
    assert abs(np.log(cc["estimate"]) - truth) > 0.2
    # MI: covers the truth, near the estimate had z been complete, far closer than complete cases
    assert row["ci_low"] <= 1.5 <= row["ci_high"]
    assert abs(row["log_hr"] - full) < 0.06
    assert abs(row["log_hr"] - truth) < abs(np.log(cc["estimate"]) - truth) - 0.2
    assert row["n"] == 2000 and row["n_imputed"] == int(d["z"].isna().sum())
    assert row["dfcom"] == row["events"] - 2
    assert row["m"] == 10 and 0 < row["fmi"] < 1


def test_pmm_donors_are_the_k_nearest():
    from epi_spineage.stats.imputation import _pmm_donors

    rng = np.random.default_rng(0)
    obs = np.array([9.0, 0.0, 5.0, 3.0, 4.0, 7.0, 1.0])  # unsorted on purpose
    picks = _pmm_donors(obs, np.full(3000, 4.2), 3, rng)
    assert set(obs[picks]) == {3.0, 4.0, 5.0}
    assert _pmm_donors(obs, np.array([-5.0, 100.0]), 1, rng).tolist() == [1, 0]
    assert set(obs[_pmm_donors(obs, np.full(500, 4.2), 50, rng)]) == set(obs)  # k above the donor count


def test_breslow_baseline_at_zero_is_nelson_aalen():
    from epi_spineage.stats.imputation import _Outcome

    rng = np.random.default_rng(3)
    t = rng.integers(1, 30, 200).astype(float)  # many ties
    e = (rng.random(200) < 0.6).astype(float)
    out = _Outcome(t, e)
    np.testing.assert_allclose(out.breslow(np.zeros(200)), nelson_aalen_at(t, e), rtol=1e-12)
    # with a linear predictor: the risk-set sums weight each row by exp(lp)
    lp = rng.normal(size=200)
    want = np.array([sum(e[k] / np.exp(lp[t >= t[k]]).sum() for k in range(200) if t[k] <= ti) for ti in t])
    np.testing.assert_allclose(out.breslow(lp), want, rtol=1e-10)


@pytest.mark.parametrize("event", [0, 1])
def test_compatible_draw_matches_the_cox_conditional(event):
    # The SMC-FCS step for a continuous z draws from N(z; mu, s^2) * h(T | z)^D * S(T | z), with
    # h = h0 exp(b z), S = exp(-H exp(b z)): tilt the normal by D b s^2, then accept with exp(-H exp(b z)).
    # Its draws must have the moments of that density (numerical integration on a grid).
    from epi_spineage.stats.imputation import _draw_normal_times_survival

    mu, s, b, H = 0.3, 1.1, 0.6, 0.9
    k = 40_000
    draws, stuck = _draw_normal_times_survival(
        np.full(k, mu + event * b * s**2), s, np.full((k, 1), H), np.array([b]), np.random.default_rng(7)
    )
    grid = np.linspace(-9, 9, 20_001)
    dens = np.exp(-0.5 * ((grid - mu) / s) ** 2 + event * b * grid - H * np.exp(b * grid))
    dens /= dens.sum()
    mean = (grid * dens).sum()
    sd = np.sqrt(((grid - mean) ** 2 * dens).sum())
    assert stuck == 0
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(k)
    assert abs(draws.std() / sd - 1) < 0.02
    # and not the untilted normal (what an approximate imputation model would centre on)
    assert abs(mean - mu) > 0.1


def test_between_imputation_variance_is_not_understated():
    # Known answer: z ~ N(0, 1) with half missing completely at random and nothing else observed. The
    # proper pooled variance of the mean is about 1 / n_obs (the observed rows are all the information);
    # imputing without drawing the parameters would give (1 + n_mis / n) / n = 0.75 / n_obs here.
    rng = np.random.default_rng(4)
    n = 400
    z = rng.normal(size=n)
    z[rng.permutation(n)[: n // 2]] = np.nan
    d = pd.DataFrame({"z": z})
    mi = impute_mice(d, ["z"], m=100, n_iter=3, seed=2)
    est = [ds["z"].mean() for ds in mi.datasets]
    var = [ds["z"].var(ddof=1) / n for ds in mi.datasets]
    pooled = pool_rubin(est, var, n - 1).iloc[0]
    target = np.nanvar(z, ddof=1) / (n // 2)
    assert 0.85 < pooled["t"] / target < 1.2
    assert 0.3 < pooled["fmi"] < 0.7  # half the information is missing


def test_simulator_mar_recovery():
    # The package's simulator with DXA missing at random given age, sex and any fracture (30%), one PAD
    # effect for every site (any fracture exactly PH): complete cases lose the age effect (missingness
    # depends on age and on the outcome it drives), MI of the T-score covers every planted log HR.
    # Over seeds: benchmarks/mi_coverage.py --design simulator (docs/methods.md#multiple-imputation).
    from dataclasses import replace

    from epi_spineage.synth.cohort import DERIVATION, simulate_cohort

    spec = replace(DERIVATION, dxa_missing_mechanism="mar", site_hr_per_sd_pad=None)
    d, truth = simulate_cohort(spec, 6000, np.random.default_rng(4))
    d["female"] = (d["sex"] == "F").astype(float)
    d["pad_years"] = d["spine_age_years"] - d["age_years"]
    covs = ["age_years", "female", "prevalent_vf", "prior_fracture", "glucocorticoid", "rheumatoid_arthritis"]
    covs.append("tscore_femoral_neck")
    args = ("fracture_any_years", "fracture_any", "pad_years", covs)
    planted = truth["outcomes"]["fracture_any"]["covariates"]
    cc = cox_per_sd(d, *args, sd=1.0).summary.set_index("term")
    mi = impute_mice(d, ["pad_years", *covs], time="fracture_any_years", event="fracture_any", m=5, seed=1)
    pooled = mi_cox_per_sd(mi, *args, sd=1.0).set_index("term")
    assert mi.missing.set_index("variable").loc["tscore_femoral_neck", "share_missing"] == pytest.approx(0.3, abs=0.02)
    b_age = planted["age_years"]
    assert np.log(cc.loc["age_years", "ci_high"]) < b_age  # complete cases: biased towards 0
    assert abs(pooled.loc["age_years", "log_hr"] - b_age) < abs(np.log(cc.loc["age_years", "estimate"]) - b_age)
    for term in ("pad_years", "age_years", "female", "tscore_femoral_neck"):
        lo, hi = np.log(pooled.loc[term, ["ci_low", "ci_high"]].astype(float))
        assert lo <= planted[term] <= hi, term


def test_collinear_columns_still_impute():
    # an aliased column makes the Cox variance singular: the coefficient draw must not fail on it
    d = _mar_cohort(300, 8)
    d["x2"] = 2.0 * d["x"]
    mi = impute_mice(d, ["x", "x2", "z"], time="time", event="event", m=2, n_iter=2, seed=3)
    for ds in mi.datasets:
        assert ds["z"].notna().all() and np.isfinite(ds["z"]).all()
