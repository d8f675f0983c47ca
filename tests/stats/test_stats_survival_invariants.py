"""Properties of the survival estimators that must hold on any data (seeded random cohorts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import (
    aalen_johansen,
    incidence_rates,
    km_cumulative_failure,
    km_curves,
    logrank,
    median_followup,
)
from epi_spineage.stats.survival import competing_event_type


def _cohort(seed, n=300, groups=3, tie_step=1.0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    t_event = rng.exponential(5.0 / (1 + 0.5 * g))
    t_death = rng.exponential(12.0, n)
    t_cens = rng.uniform(1, 10, n)
    tt = np.minimum.reduce([t_event, t_death, t_cens])
    time = np.maximum(np.ceil(tt / tie_step) * tie_step, tie_step)
    etype = np.where(tt == t_event, 1, np.where(tt == t_death, 2, 0))
    return pd.DataFrame(
        {"time": time, "event": (etype == 1).astype(int), "etype": etype, "group": np.array(["a", "b", "c", "d"])[g]}
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ci", ["log-log", "log", "plain"])
def test_km_failure_bounded_monotone_and_inside_ci(seed, ci):
    df = _cohort(seed, tie_step=[0.01, 0.5, 1.0, 2.0][seed])
    res = km_curves(df, "time", "event", group="group", ci=ci)
    for _, cur in res.groupby("group"):
        est = cur["estimate"].to_numpy()
        assert ((est >= 0) & (est <= 1)).all()
        assert (np.diff(est) >= -1e-15).all()
        assert (cur["ci_low"] <= cur["estimate"] + 1e-15).all()
        assert (cur["estimate"] <= cur["ci_high"] + 1e-15).all()
        assert ((cur["ci_low"] >= 0) & (cur["ci_high"] <= 1)).all()
        assert (np.diff(cur["n_at_risk"].to_numpy()) <= 0).all()


def test_km_matches_lifelines_loglog():
    from lifelines import KaplanMeierFitter

    df = _cohort(11, n=500, tie_step=0.25)
    ours = km_cumulative_failure(df, "time", "event", times=[0.5, 1.0, 2.0, 4.0, 6.0])
    kmf = KaplanMeierFitter().fit(df["time"], df["event"])
    s = kmf.survival_function_at_times([0.5, 1.0, 2.0, 4.0, 6.0]).to_numpy()
    np.testing.assert_allclose(ours["estimate"], 1 - s, rtol=1e-12)
    ci = kmf.confidence_interval_survival_function_
    for t, lo, hi in zip(ours["time"], ours["ci_low"], ours["ci_high"]):
        row = ci.loc[ci.index <= t].iloc[-1]
        np.testing.assert_allclose([lo, hi], [1 - row.iloc[1], 1 - row.iloc[0]], rtol=1e-9)


def test_km_times_before_first_event_and_after_last():
    df = _cohort(3)
    res = km_cumulative_failure(df, "time", "event", times=[0.0, 1e6])
    assert res["estimate"].iloc[0] == 0.0 and res["ci_low"].iloc[0] == 0.0 and res["ci_high"].iloc[0] == 0.0
    assert res["n_at_risk"].iloc[0] == len(df) and res["n_at_risk"].iloc[1] == 0
    assert res["events"].iloc[1] == df["event"].sum()


def test_km_all_fail_at_last_time_lifelines_convention():
    df = pd.DataFrame({"time": [1, 2, 3, 3], "event": [1, 0, 1, 1]})
    res = km_cumulative_failure(df, "time", "event")
    assert res["estimate"].iloc[-1] == 1.0
    assert np.isfinite(res["std_error"]).all()


def test_logrank_matches_lifelines_multigroup():
    from lifelines.statistics import multivariate_logrank_test

    df = _cohort(5, n=600, groups=4, tie_step=0.5)
    ours = logrank(df, "time", "event", "group")
    ll = multivariate_logrank_test(df["time"], df["group"], df["event"])
    assert ours["df"].iloc[0] == 3
    np.testing.assert_allclose(ours["statistic"].iloc[0], ll.test_statistic, rtol=1e-9)
    np.testing.assert_allclose(ours["p_value"].iloc[0], ll.p_value, rtol=1e-7)


def test_logrank_identical_groups_gives_zero():
    df = _cohort(6, n=200)
    doubled = pd.concat([df.assign(group="x"), df.assign(group="y")], ignore_index=True)
    res = logrank(doubled, "time", "event", "group")
    assert res["statistic"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert res["p_value"].iloc[0] == pytest.approx(1.0)


def test_aalen_johansen_without_competitors_equals_km():
    df = _cohort(7, n=400, tie_step=0.5)
    df["etype_km"] = df["event"]
    aj = aalen_johansen(df, "time", "etype_km", ci="log-log")
    km = km_cumulative_failure(df, "time", "event", ci="log-log")
    np.testing.assert_allclose(aj["estimate"], km["estimate"], rtol=1e-12)
    np.testing.assert_allclose(aj["std_error"], km["std_error"], rtol=1e-9)


def test_aalen_johansen_below_one_minus_km_and_sums():
    df = _cohort(8, n=500, tie_step=0.5)
    t = sorted(df["time"].unique())
    aj1 = aalen_johansen(df, "time", "etype", cause=1, times=t)
    aj2 = aalen_johansen(df, "time", "etype", cause=2, times=t)
    km = km_cumulative_failure(df, "time", "event", times=t)
    assert (aj1["estimate"].to_numpy() <= km["estimate"].to_numpy() + 1e-12).all()
    # cumulative incidences of all causes add up to 1 - KM of any event
    any_km = km_cumulative_failure(df.assign(any=(df["etype"] > 0).astype(int)), "time", "any", times=t)
    np.testing.assert_allclose(aj1["estimate"] + aj2["estimate"], any_km["estimate"], rtol=1e-12)
    assert (np.diff(aj1["estimate"]) >= 0).all()
    assert (aj1["ci_low"] <= aj1["estimate"]).all() and (aj1["estimate"] <= aj1["ci_high"]).all()


def test_competing_event_type_from_schema():
    df = pd.DataFrame(
        {
            "fracture_any": [1, 0, 0, 1, 0, np.nan],
            "fracture_any_years": [2.0, 5.0, 3.0, 4.0, 2.0, 1.0],
            "death": [0, 1, 0, 1, 1, 0],
            "death_years": [6.0, 5.0, 3.0, 3.5, 4.0, 1.0],
        }
    )
    out = competing_event_type(df)
    # fracture before death counts; death after fracture follow-up ended is censoring
    assert out["cr_event"].tolist()[:5] == [1, 2, 0, 2, 0]
    assert out["cr_years"].tolist()[:5] == [2.0, 5.0, 3.0, 3.5, 2.0]
    assert pd.isna(out["cr_event"].iloc[5]) and np.isnan(out["cr_years"].iloc[5])


def test_incidence_and_followup_basic():
    df = _cohort(9)
    inc = incidence_rates(df, "time", "event", group="group")
    assert (inc["ci_low"] <= inc["estimate"]).all() and (inc["estimate"] <= inc["ci_high"]).all()
    assert inc["events"].sum() == df["event"].sum()
    np.testing.assert_allclose(inc["person_years"].sum(), df["time"].sum())
    fu = median_followup(df, "time", "event")
    assert fu["q1"].iloc[0] <= fu["estimate"].iloc[0] <= fu["q3"].iloc[0]


def test_bad_input_is_a_user_error():
    df = _cohort(10)
    with pytest.raises(UserError):
        km_cumulative_failure(df, "time", "missing_column")
    with pytest.raises(UserError):
        km_cumulative_failure(df.assign(event=df["event"] * 2), "time", "event")
    with pytest.raises(UserError):
        km_cumulative_failure(df.assign(time=-df["time"]), "time", "event")
    with pytest.raises(UserError):
        km_cumulative_failure(df, "time", "event", ci="arcsine")
    with pytest.raises(UserError):
        aalen_johansen(df.assign(etype=-1), "time", "etype")


def test_missing_rows_are_dropped_not_fatal():
    df = _cohort(12)
    df.loc[:9, "time"] = np.nan
    res = km_cumulative_failure(df, "time", "event")
    assert res["n"].iloc[0] == len(df) - 10
