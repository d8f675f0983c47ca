"""Kaplan-Meier, log-rank, Aalen-Johansen, Poisson rates, follow-up vs R survival (closed form: 1e-9).

Fixtures written by tests/reference/survival_reference.R (R not needed here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import (
    aalen_johansen,
    incidence_rates,
    km_cumulative_failure,
    km_curves,
    logrank,
    median_followup,
)

REF = Path(__file__).resolve().parents[1] / "reference"
DATASETS = ("lung", "sim1", "sim2")
RTOL = 1e-9


def _load(name):
    data = pd.read_csv(REF / f"survival_{name}.csv")
    with open(REF / f"survival_{name}.json") as fh:
        gold = json.load(fh)
    return data, gold


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request):
    return (request.param, *_load(request.param))


def _arr(x):
    return np.array([np.nan if v is None else v for v in np.atleast_1d(x)], dtype=float)


def _group(entry):
    return None if entry["group"] is None else entry["group"]


def test_km_full_curve_matches_survfit(dataset):
    name, data, gold = dataset
    for entry in gold["km"]:
        ci = entry["conf_type"]
        curves = km_curves(data, "time", "status", group=_group(entry), ci=ci)
        curves = curves[curves["time"] > 0]
        strata = np.asarray(entry["strata"]).astype(str)
        assert len(curves) == len(strata)
        np.testing.assert_array_equal(curves["group"].astype(str).to_numpy(), strata)
        np.testing.assert_allclose(curves["time"], _arr(entry["time"]), rtol=RTOL)
        surv = _arr(entry["surv"])
        np.testing.assert_allclose(1.0 - curves["estimate"].to_numpy(), surv, rtol=RTOL, atol=1e-14)
        np.testing.assert_array_equal(curves["n_at_risk"], _arr(entry["n_risk"]))
        np.testing.assert_array_equal(curves["events"], _arr(entry["n_event"]))
        np.testing.assert_array_equal(curves["censored"], _arr(entry["n_censor"]))
        lower, upper = _arr(entry["lower"]), _arr(entry["upper"])
        # R gives NA where S = 1 (no spread) or where the Greenwood term is infinite (n = d)
        ok = np.isfinite(lower) & np.isfinite(upper) & (surv < 1) & (surv > 0)
        assert ok.sum() > 10
        np.testing.assert_allclose(1.0 - curves["ci_high"].to_numpy()[ok], lower[ok], rtol=RTOL)
        np.testing.assert_allclose(1.0 - curves["ci_low"].to_numpy()[ok], upper[ok], rtol=RTOL)


def test_km_event_times_and_greenwood_se(dataset):
    name, data, gold = dataset
    entry = next(e for e in gold["km"] if e["group"] is None and e["conf_type"] == "log")
    res = km_cumulative_failure(data, "time", "status", ci="log")
    n_event = _arr(entry["n_event"])
    ev = n_event > 0
    np.testing.assert_allclose(res["time"], _arr(entry["time"])[ev], rtol=RTOL)
    surv = _arr(entry["surv"])[ev]
    # R's std.err is the SE of the cumulative hazard (sqrt of the Greenwood sum); ours is of S
    se_r = _arr(entry["std_err"])[ev]
    fin = np.isfinite(se_r)
    np.testing.assert_allclose(res["std_error"].to_numpy()[fin], (surv * se_r)[fin], rtol=RTOL)
    np.testing.assert_array_equal(res["events"], np.cumsum(n_event)[ev])
    assert (res["n"] == len(data.dropna(subset=["time", "status"]))).all()


def test_km_at_given_times(dataset):
    name, data, gold = dataset
    for entry in gold["km_times"]:
        res = km_cumulative_failure(data, "time", "status", group=_group(entry), times=entry["times"])
        # R drops times past the last follow-up of a group (extend = FALSE)
        got = res.set_index([res["group"].astype(str), "time"])
        keys = list(zip(np.asarray(entry["strata"]).astype(str), _arr(entry["time"])))
        sub = got.loc[keys]
        np.testing.assert_allclose(1.0 - sub["estimate"].to_numpy(), _arr(entry["surv"]), rtol=RTOL)
        np.testing.assert_array_equal(sub["n_at_risk"].to_numpy(), _arr(entry["n_risk"]))
        lower, upper = _arr(entry["lower"]), _arr(entry["upper"])
        ok = np.isfinite(lower)
        np.testing.assert_allclose(1.0 - sub["ci_high"].to_numpy()[ok], lower[ok], rtol=RTOL)
        np.testing.assert_allclose(1.0 - sub["ci_low"].to_numpy()[ok], upper[ok], rtol=RTOL)


def test_logrank_matches_survdiff(dataset):
    name, data, gold = dataset
    for entry in gold["logrank"]:
        res = logrank(data, "time", "status", entry["group"])
        assert res["df"].iloc[0] == entry["df"]
        np.testing.assert_allclose(res["statistic"].iloc[0], entry["chisq"], rtol=RTOL)
        np.testing.assert_allclose(res["p_value"].iloc[0], entry["p"], rtol=RTOL)


def test_median_followup_reverse_km(dataset):
    name, data, gold = dataset
    for entry in gold["followup"]:
        res = median_followup(data, "time", "status", group=_group(entry))
        np.testing.assert_array_equal(res["group"].astype(str), np.atleast_1d(entry["strata"]).astype(str))
        np.testing.assert_allclose(res["estimate"], _arr(entry["median"]), rtol=RTOL)
        np.testing.assert_allclose(res["q1"], _arr(entry["q1"]), rtol=RTOL)
        np.testing.assert_allclose(res["q3"], _arr(entry["q3"]), rtol=RTOL)


def test_incidence_rates_match_poisson_test(dataset):
    name, data, gold = dataset
    for entry in gold["poisson"]:
        res = incidence_rates(data, "time", "status", group=_group(entry), per=1.0)
        rows = entry["rows"]
        np.testing.assert_array_equal(res["events"], [r["events"] for r in rows])
        np.testing.assert_allclose(res["person_years"], [r["person_time"] for r in rows], rtol=RTOL)
        np.testing.assert_allclose(res["estimate"], [r["rate"] for r in rows], rtol=RTOL)
        np.testing.assert_allclose(res["ci_low"], [r["lower"] for r in rows], rtol=RTOL)
        np.testing.assert_allclose(res["ci_high"], [r["upper"] for r in rows], rtol=RTOL)


def test_poisson_ci_edge_cases():
    with open(REF / "survival_poisson.json") as fh:
        gold = json.load(fh)
    for r in gold["rows"]:
        # the person-time in one row; each event a row of zero time
        frame = pd.DataFrame({"t": [r["person_time"]] + [0.0] * int(r["events"]), "e": [0] + [1] * int(r["events"])})
        for level, lo, hi in ((0.95, r["lower"], r["upper"]), (0.90, r["lower90"], r["upper90"])):
            res = incidence_rates(frame, "t", "e", per=1000.0, ci_level=level)
            np.testing.assert_allclose(res["ci_low"].iloc[0], lo * 1000.0, rtol=RTOL, atol=0)
            np.testing.assert_allclose(res["ci_high"].iloc[0], hi * 1000.0, rtol=RTOL)


@pytest.mark.parametrize("name", ("sim1", "sim2"))
def test_aalen_johansen_matches_survfit_multistate(name):
    data, gold = _load(name)
    for entry in gold["aj"]:
        ci = entry["conf_type"]
        group = _group(entry)
        got = aalen_johansen(data, "time", "etype", group=group, cause=1, ci=ci, times=None)
        # R reports every distinct time (censorings included); compare at ours (times with events)
        r = pd.DataFrame(
            {
                "group": np.asarray(entry["strata"]).astype(str),
                "time": _arr(entry["time"]),
                "p": _arr(entry["pstate"]),
                "se": _arr(entry["std_err"]),
                "lo": _arr(entry["lower"]),
                "hi": _arr(entry["upper"]),
                "n_risk": _arr(entry["n_risk"]),
            }
        )
        m = got.assign(group=got["group"].astype(str)).merge(r, on=["group", "time"], how="left")
        assert m["p"].notna().all() and len(m) > 10
        np.testing.assert_allclose(m["estimate"], m["p"], rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(m["std_error"], m["se"], rtol=RTOL, atol=1e-15)
        np.testing.assert_array_equal(m["n_at_risk"], m["n_risk"])
        ok = m["lo"].notna() & (m["estimate"] > 0)
        np.testing.assert_allclose(m.loc[ok, "ci_low"], m.loc[ok, "lo"], rtol=RTOL)
        np.testing.assert_allclose(m.loc[ok, "ci_high"], m.loc[ok, "hi"], rtol=RTOL)
        # the competing cause, too
        got2 = aalen_johansen(data, "time", "etype", group=group, cause=2, ci=ci)
        r2 = r.assign(p2=_arr(entry["pstate2"]), se2=_arr(entry["std_err2"]))
        m2 = got2.assign(group=got2["group"].astype(str)).merge(r2, on=["group", "time"], how="left")
        np.testing.assert_allclose(m2["estimate"], m2["p2"], rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(m2["std_error"], m2["se2"], rtol=RTOL, atol=1e-15)
