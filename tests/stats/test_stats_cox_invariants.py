"""Properties of the Cox layer: scaling, per-SD definition, complete cases, errors and warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import CoxResult, cox_per_sd, subgroup_hazard_ratios
from epi_spineage.stats._concordance import harrell_c
from epi_spineage.stats.cox import (
    MODEL_COVARIATES,
    CoxConvergenceWarning,
    CoxModelError,
    CoxTermWarning,
    NoEventsError,
    ZeroVarianceError,
    cause_specific_cox,
)


def _cohort(seed=0, n=800, tie_step=0.25):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "pad_years": rng.normal(-0.5, 5, n),
            "age_years": rng.normal(68, 7, n),
            "sex": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
            "prevalent_vf": rng.binomial(1, 0.2, n),
            "height_cm": rng.normal(158, 8, n),
        }
    )
    lp = 0.06 * df["pad_years"] + 0.05 * (df["age_years"] - 68) + 0.3 * (df["sex"] == "M") + 0.5 * df["prevalent_vf"]
    te = rng.exponential(8 * np.exp(-lp))
    td = rng.exponential(20, n)
    tc = rng.uniform(2, 9, n)
    tt = np.minimum.reduce([te, td, tc])
    df["time"] = np.maximum(np.ceil(tt / tie_step) * tie_step, tie_step)
    df["etype"] = np.where(tt == te, 1, np.where(tt == td, 2, 0))
    df["event"] = (df["etype"] == 1).astype(int)
    return df


def test_result_shape_and_columns():
    df = _cohort()
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "sex"], model="model 1", analysis="fracture")
    assert isinstance(res, CoxResult)
    s = res.summary
    for col in (
        "analysis",
        "model",
        "term",
        "estimate",
        "log_hr",
        "std_error",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "ci_level",
        "scale",
        "n",
        "events",
        "n_excluded",
        "method",
    ):
        assert col in s.columns
    assert list(s["term"]) == ["pad_years", "age_years", "sex[M]"]
    assert (s["ci_low"] <= s["estimate"]).all() and (s["estimate"] <= s["ci_high"]).all()
    assert 0.5 < res.concordance < 1 and res.converged and res.warnings == []
    assert res.exposure == "pad_years" and res.sd == s["sd"].iloc[0]
    frame = res.to_frame()
    assert {"concordance", "ph_global_p_value"} <= set(frame.columns) and len(frame) == 3
    assert s["model"].iloc[0] == "model 1"


def test_per_sd_equals_exp_beta_raw_times_sd_and_rescaling():
    df = _cohort(1)
    sd = df["pad_years"].std(ddof=1)
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    raw = cox_per_sd(df, "time", "event", "pad_years", ["age_years"], sd=1.0)
    np.testing.assert_allclose(res.summary["sd"].iloc[0], sd, rtol=1e-14)
    np.testing.assert_allclose(res.summary["estimate"].iloc[0], np.exp(raw.summary["log_hr"].iloc[0] * sd), rtol=1e-8)
    # rescaling a covariate by c divides its coefficient by c and leaves the rest alone
    c = 12.0
    scaled = cox_per_sd(df.assign(age_years=df["age_years"] * c), "time", "event", "pad_years", ["age_years"])
    np.testing.assert_allclose(scaled.summary["log_hr"].iloc[1], res.summary["log_hr"].iloc[1] / c, rtol=1e-8)
    np.testing.assert_allclose(scaled.summary["log_hr"].iloc[0], res.summary["log_hr"].iloc[0], rtol=1e-8)
    np.testing.assert_allclose(scaled.summary["p_value"], res.summary["p_value"], rtol=1e-6)
    # a shift of the exposure changes nothing
    shifted = cox_per_sd(df.assign(pad_years=df["pad_years"] + 3), "time", "event", "pad_years", ["age_years"])
    np.testing.assert_allclose(shifted.summary["log_hr"], res.summary["log_hr"], rtol=1e-8)


def test_sd_over_all_with_exposure_and_complete_cases():
    df = _cohort(2)
    df.loc[:49, "age_years"] = np.nan  # covariate missing: excluded from the model ...
    df.loc[50:59, "pad_years"] = np.nan  # exposure missing: excluded and not in the SD
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    assert res.n_excluded == 60 and res.n == len(df) - 60
    # ... but still counted in the SD (all participants with the exposure)
    np.testing.assert_allclose(res.sd, df["pad_years"].std(ddof=1), rtol=1e-14)
    m2 = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "prevalent_vf"])
    assert m2.sd == res.sd
    given = cox_per_sd(df, "time", "event", "pad_years", ["age_years"], sd=2.5)
    assert given.summary["sd"].iloc[0] == 2.5


def test_breslow_equals_efron_without_ties_and_differs_with():
    df = _cohort(3, tie_step=1e-9)
    assert df["time"].is_unique
    e = cox_per_sd(df, "time", "event", "pad_years", ["age_years"], ties="efron")
    b = cox_per_sd(df, "time", "event", "pad_years", ["age_years"], ties="breslow")
    np.testing.assert_allclose(e.summary["log_hr"], b.summary["log_hr"], rtol=1e-10)
    tied = _cohort(3, tie_step=1.0)
    e = cox_per_sd(tied, "time", "event", "pad_years", ["age_years"], ties="efron")
    b = cox_per_sd(tied, "time", "event", "pad_years", ["age_years"], ties="breslow")
    assert abs(e.summary["log_hr"].iloc[0] - b.summary["log_hr"].iloc[0]) > 1e-4
    assert "breslow" in b.summary["method"].iloc[0]


def test_matches_lifelines_efron():
    from lifelines import CoxPHFitter

    df = _cohort(4, n=1000)
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "prevalent_vf"])
    d = df[["time", "event", "age_years", "prevalent_vf"]].assign(z=df["pad_years"] / df["pad_years"].std())
    cph = CoxPHFitter().fit(d[["time", "event", "z", "age_years", "prevalent_vf"]], "time", "event")
    # lifelines stops at a looser tolerance, hence 1e-5
    np.testing.assert_allclose(res.summary["log_hr"], cph.params_.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.summary["std_error"], cph.standard_errors_.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.concordance, cph.concordance_index_, rtol=1e-9)


def test_concordance_matches_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(10):
        n = int(rng.integers(2, 50))
        t = rng.integers(1, 6, n).astype(float)
        e = rng.random(n) < 0.6
        r = rng.integers(0, 4, n).astype(float)
        conc = disc = tied = 0
        for i in range(n):
            if not e[i]:
                continue
            for j in range(n):
                if j != i and (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                    conc += r[i] > r[j]
                    disc += r[i] < r[j]
                    tied += r[i] == r[j]
        _, counts = harrell_c(t, e, r)
        assert tuple(counts) == (conc, disc, tied)


def test_typed_errors_and_warnings():
    df = _cohort(6)
    with pytest.raises(NoEventsError):
        cox_per_sd(df.assign(event=0), "time", "event", "pad_years", ["age_years"])
    with pytest.raises(ZeroVarianceError):
        cox_per_sd(df.assign(pad_years=1.0), "time", "event", "pad_years", ["age_years"])
    with pytest.raises(ZeroVarianceError):
        cox_per_sd(df, "time", "event", "pad_years", ["age_years"], sd=0.0)
    with pytest.warns(CoxTermWarning):
        const = cox_per_sd(df.assign(age_years=70.0), "time", "event", "pad_years", ["age_years", "prevalent_vf"])
    assert list(const.summary["term"]) == ["pad_years", "age_years", "prevalent_vf"]
    assert np.isnan(const.summary["estimate"].iloc[1]) and const.summary["scale"].iloc[1] == "per unit"
    alone = cox_per_sd(df, "time", "event", "pad_years", ["prevalent_vf"])
    np.testing.assert_allclose(const.summary["log_hr"].iloc[[0, 2]], alone.summary["log_hr"], rtol=1e-12)
    # the SD (over everyone with PAD) is positive, but PAD is constant among the complete cases
    flat = df.assign(pad_years=1.0)
    flat.loc[0, ["pad_years", "age_years"]] = [2.0, np.nan]
    with pytest.raises(CoxModelError):
        cox_per_sd(flat, "time", "event", "pad_years", ["age_years"])
    with pytest.raises(UserError):
        cox_per_sd(df, "time", "event", "pad_years", ["age_years"], ties="exact")
    # monotone likelihood: every event has the exposure's top values -> infinite coefficient
    mono = df.copy()
    mono["flag"] = mono["event"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cox_per_sd(mono, "time", "event", "pad_years", ["flag"])
    assert any(issubclass(w.category, CoxConvergenceWarning) for w in caught)
    assert res.warnings


def test_cause_specific_censors_competing_events():
    df = _cohort(7)
    cs = cause_specific_cox(df, "time", "etype", "pad_years", ["age_years"], cause=1)
    direct = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    np.testing.assert_allclose(cs.summary["log_hr"], direct.summary["log_hr"], rtol=1e-12)
    assert "cause-specific" in cs.summary["method"].iloc[0]


def test_subgroups_share_the_cohort_sd():
    df = _cohort(8)
    res = subgroup_hazard_ratios(df, "time", "event", "pad_years", by="sex", covariates=["age_years", "sex"])
    assert list(res["level"]) == ["F", "M"]
    assert (res["sd"] == df["pad_years"].std(ddof=1)).all()
    assert 0 <= res["p_interaction"].iloc[0] <= 1 and res["interaction_df"].iloc[0] == 1
    assert res["n"].sum() == len(df)


def test_model_covariate_sets_follow_methods():
    f = MODEL_COVARIATES["fracture"]
    assert f["model 1"] == ["age_years", "sex"]
    assert set(f["model 2"]) - set(f["model 1"]) == {
        "prevalent_vf",
        "height_dec5_cm",
        "prior_fracture",
        "prosthesis",
        "rheumatoid_arthritis",
        "glucocorticoid",
    }
    assert set(f["model 3"]) - set(f["model 2"]) == {"osteoporosis"}
    m = MODEL_COVARIATES["mortality"]
    assert set(m["model 2"]) - set(m["model 1"]) == {"prevalent_vf", "albumin_dec", "hemoglobin_dec", "creatinine_inc"}


def test_stratified_fit_differs_and_runs():
    df = _cohort(9)
    df["site"] = np.random.default_rng(9).choice(["a", "b"], len(df))
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years"], strata="site")
    assert "stratified" in res.summary["method"].iloc[0]
    assert res.converged and len(res.summary) == 2


def test_model_set_shares_one_sd_and_uses_own_complete_cases():
    from epi_spineage.stats.cox import cox_model_set

    df = _cohort(10)
    df.loc[:19, "prevalent_vf"] = np.nan
    models = {"model 1": ["age_years", "sex"], "model 2": ["age_years", "sex", "prevalent_vf"]}
    table, results = cox_model_set(df, "time", "event", "pad_years", models, analysis="fracture_any")
    assert set(results) == {"model 1", "model 2"}
    assert results["model 1"].sd == results["model 2"].sd == df["pad_years"].std(ddof=1)
    assert results["model 1"].n_excluded == 0 and results["model 2"].n_excluded == 20
    assert list(table["model"].unique()) == ["model 1", "model 2"] and (table["analysis"] == "fracture_any").all()
    with pytest.raises(UserError, match="unknown model set"):
        cox_model_set(df, "time", "event", "pad_years", "no such set")


def test_group_hazard_ratios_numeric_groups_and_reference():
    from epi_spineage.errors import UserError
    from epi_spineage.stats import group_hazard_ratios

    df = _cohort(11)
    df["g4"] = (df["prevalent_vf"] * 2 + (df["sex"] == "M")).astype(float)
    df.loc[:4, "g4"] = np.nan
    res = group_hazard_ratios(df, "time", "event", "g4", reference=0)
    assert res["group"].iloc[0] == "0.0" and res["estimate"].iloc[0] == 1.0 and len(res) == 4
    assert res["n"].iloc[0] == len(df) - 5 and res["n_group"].sum() == len(df) - 5
    with pytest.raises(UserError):
        group_hazard_ratios(df, "time", "event", "g4", reference=7)
