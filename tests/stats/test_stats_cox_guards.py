"""Guards of the Cox layer (issue 11 items 4 and 5; docs/methods.md#cox-guards): the events-per-parameter
rule, not-estimable fits and rows (NaN + note, never a number), constant or missing covariates dropped
and listed."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import (
    cause_specific_cox,
    cox_model_set,
    cox_per_sd,
    group_hazard_ratios,
    subgroup_hazard_ratios,
)
from epi_spineage.stats.cox import CoxTermWarning
from tests.stats.test_stats_cox_invariants import _cohort

NUMBERS = ["estimate", "log_hr", "std_error", "statistic", "p_value", "ci_low", "ci_high"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _few_events(n_events=3, n_cov=10, n=120, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"pad_years": rng.normal(0, 5, n), "time": rng.uniform(1, 10, n), "event": 0})
    df.loc[rng.choice(n, n_events, replace=False), "event"] = 1
    covs = [f"c{j}" for j in range(n_cov)]
    for c in covs:
        df[c] = rng.normal(0, 1, n)
    return df, covs


def test_three_events_and_ten_covariates_are_not_estimable_under_the_rule():
    df, covs = _few_events()
    res = cox_per_sd(df, "time", "event", "pad_years", covs, min_events_per_parameter=5)
    s = res.summary
    assert s[NUMBERS].isna().all().all()
    assert (s["note"] == "not estimable: 3 events for 11 parameters (fewer than 5 per parameter)").all()
    assert not res.estimable and res.note.startswith("not estimable: 3 events for 11 parameters")
    # without the rule (R's behaviour) a number comes out, and it is the kind issue 11 saw: useless
    raw = _quiet(cox_per_sd, df, "time", "event", "pad_years", covs)
    assert np.isfinite(raw.summary["log_hr"].iloc[0])


@pytest.mark.parametrize("events, estimable", [(10, True), (9, False)])
def test_both_sides_of_the_rule(events, estimable):
    # two parameters: 10 events are exactly 5 per parameter (kept), 9 fall below (not estimable)
    df, covs = _few_events(n_events=events, n_cov=1, n=200, seed=events)
    res = _quiet(cox_per_sd, df, "time", "event", "pad_years", covs, min_events_per_parameter=5)
    assert res.estimable is estimable
    assert bool(np.isfinite(res.summary["estimate"].iloc[0])) is estimable
    if estimable:
        assert res.summary["note"].isna().all() and res.note is None
        off = cox_per_sd(df, "time", "event", "pad_years", covs)
        pd.testing.assert_frame_equal(off.summary, res.summary)  # the rule changes nothing it accepts
    else:
        assert "9 events for 2 parameters" in res.summary["note"].iloc[0]


def test_rule_off_by_default_keeps_the_numbers_and_has_a_note_column():
    df = _cohort(3)
    res = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "sex"])
    assert "note" in res.summary.columns and res.summary["note"].isna().all()
    assert res.estimable and res.dropped_terms == () and res.note is None
    assert "note" in res.to_frame().columns
    with pytest.raises(UserError, match="min_events_per_parameter"):
        cox_per_sd(df, "time", "event", "pad_years", ["age_years"], min_events_per_parameter=0)


def test_infinite_coefficient_is_never_printed_as_a_number():
    # every event has flag = 1: monotone likelihood, HR of flag -> infinity, CI (0, inf)
    df = _cohort(6)
    df["flag"] = df["event"]
    res = _quiet(cox_per_sd, df, "time", "event", "pad_years", ["flag"])
    row = res.summary.set_index("term").loc["flag"]
    assert row[NUMBERS].isna().all() and row["note"].startswith("not estimable: ")
    assert np.isfinite(res.summary["estimate"].iloc[0])  # the exposure row itself is fine
    ruled = _quiet(cox_per_sd, df, "time", "event", "pad_years", ["flag"], min_events_per_parameter=5)
    assert "not estimable" in ruled.summary.set_index("term").loc["flag", "note"]


def test_non_convergence_under_the_rule(monkeypatch):
    from epi_spineage.stats import cox

    real = cox.fit_cox

    def one_step(*args, **kwargs):
        return real(*args, **{**kwargs, "max_iter": 1})

    monkeypatch.setattr(cox, "fit_cox", one_step)
    df = _cohort(4)
    off = _quiet(cox_per_sd, df, "time", "event", "pad_years", ["age_years"])
    assert not off.converged and np.isfinite(off.summary["estimate"]).all()
    assert off.summary["note"].str.contains("did not converge").all()
    on = _quiet(cox_per_sd, df, "time", "event", "pad_years", ["age_years"], min_events_per_parameter=5)
    assert on.summary[NUMBERS].isna().all().all() and not on.estimable
    assert (on.summary["note"] == "not estimable: did not converge in 1 iteration").all()


def test_group_without_events_is_not_estimable_and_one_group_does_not_crash():
    df = _cohort(1)
    df["grp"] = np.random.default_rng(0).choice(["a", "b", "c"], len(df))
    df.loc[df["grp"] == "c", "event"] = 0
    out = _quiet(group_hazard_ratios, df, "time", "event", "grp", "a")
    c = out.set_index("group").loc["c"]
    assert c[["estimate", "ci_low", "ci_high", "p_value"]].isna().all()
    assert c["note"].startswith("not estimable")
    assert pd.isna(out.set_index("group").loc["b", "note"])
    with pytest.warns(CoxTermWarning):  # raised AttributeError before
        only = group_hazard_ratios(df.assign(grp="a"), "time", "event", "grp", "a")
    assert list(only["group"]) == ["a"] and "not estimable" in only["note"].iloc[0]
    ruled = group_hazard_ratios(df.iloc[:60], "time", "event", "grp", "a", min_events_per_parameter=50)
    assert ruled.iloc[1:][["estimate"]].isna().all().all()


def test_rule_reaches_every_cox_function():
    df = _cohort(2, n=300)
    rule = {"min_events_per_parameter": 1000}
    table, results = cox_model_set(df, "time", "event", models={"m1": ["age_years"]}, **rule)
    assert table["estimate"].isna().all() and not results["m1"].estimable
    cs = cause_specific_cox(df, "time", "etype", "pad_years", ["age_years"], **rule)
    assert cs.summary["estimate"].isna().all()
    sub = subgroup_hazard_ratios(df, "time", "event", "pad_years", by="sex", covariates=["age_years"], **rule)
    assert sub["estimate"].isna().all() and sub["note"].str.startswith("not estimable").all()
    assert np.isnan(sub["p_interaction"]).all()


def test_one_sex_cohort_drops_sex_explicitly():
    df = _cohort(5)
    women = df[df["sex"] == "F"]
    with pytest.warns(CoxTermWarning, match="sex"):
        res = cox_per_sd(women, "time", "event", "pad_years", ["age_years", "sex"])
    assert res.dropped_terms == ("sex",)
    s = res.summary.set_index("term")
    assert s.loc["pad_years", "note"] == "dropped (constant in the complete cases): sex"
    assert s.loc["sex", NUMBERS].isna().all() and s.loc["sex", "note"] == "dropped (constant in the complete cases)"
    alone = cox_per_sd(women, "time", "event", "pad_years", ["age_years"])
    np.testing.assert_allclose(s.loc[["pad_years", "age_years"], "log_hr"], alone.summary["log_hr"], rtol=1e-12)
    assert "dropped" in res.note and res.estimable


def test_numeric_constant_and_all_missing_covariates_are_dropped_and_listed():
    df = _cohort(7).assign(prosthesis=0, albumin_dec=np.nan)
    with pytest.warns(CoxTermWarning):
        res = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "prosthesis", "albumin_dec"])
    assert set(res.dropped_terms) == {"prosthesis", "albumin_dec"}
    assert list(res.summary["term"]) == ["pad_years", "age_years", "prosthesis", "albumin_dec"]
    assert res.n == len(df) and res.n_excluded == 0
    note = res.summary["note"].iloc[0]
    assert "dropped (constant in the complete cases): prosthesis" in note
    assert "dropped (missing in every analysed row): albumin_dec" in note
