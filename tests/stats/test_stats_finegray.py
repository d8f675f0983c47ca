"""Fine-Gray regression vs R ``cmprsk::crr`` run to convergence (tests/reference/finegray_reference.R).

Coefficients and sandwich standard errors must agree to 1e-6 relative; the R fits stopped at
gtol = 1e-9, so the agreement seen is ~1e-9 or better.
"""

from __future__ import annotations

import json
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import competing_event_type, fine_gray
from epi_spineage.stats.finegray import FineGrayResult, fit_fine_gray

REF = Path(__file__).resolve().parents[1] / "reference"
RTOL = 1e-6


@pytest.fixture(scope="module")
def cases():
    with open(REF / "finegray_reference.json") as fh:
        return {c["name"]: c for c in json.load(fh)["cases"]}


def _check(res: FineGrayResult, case: dict) -> None:
    np.testing.assert_allclose(res.coef, case["coef"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(res.summary["std_error"], case["se"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(res.var, np.array(case["var"]), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(res.var_naive, np.array(case["var_naive"]), rtol=1e-5, atol=1e-12)
    assert res.loglik == pytest.approx(case["loglik"], rel=1e-9)
    assert res.n == case["n"]
    assert res.n_excluded == case["n_missing"]
    assert res.converged


def test_ties_factor_covariate(cases):
    d = pd.read_csv(REF / "finegray_ties.csv")
    res = fine_gray(d, "time", "etype", "x1", ["x2", "x3", "grp"], per_sd=False)
    assert list(res.summary["term"]) == ["x1", "x2", "x3", "grp[b]", "grp[c]"]
    _check(res, cases["ties"])
    assert res.events == int((d["etype"] == 1).sum())
    assert res.n_competing == int((d["etype"] == 2).sum())


def test_other_codes(cases):
    d = pd.read_csv(REF / "finegray_codes.csv")
    res = fine_gray(d, "time", "etype", "x1", ["x2", "x3", "grp"], per_sd=False, failcode=3, cencode=9)
    _check(res, cases["codes"])


@pytest.mark.parametrize("name, failcode", [("cohort", 1), ("cohort_death", 2)])
def test_cohort_per_sd(cases, name, failcode):
    d = pd.read_csv(REF / "finegray_cohort.csv")
    res = fine_gray(d, "cr_years", "cr_event", "pad_years", ["age_years", "sex", "prevalent_vf"], failcode=failcode)
    _check(res, cases[name])
    s = res.summary
    assert s.loc[0, "sd"] == pytest.approx(cases[name]["sd"], rel=1e-12)
    assert s.loc[0, "scale"] == "per SD"
    # tidy shape and internal consistency of the Wald figures
    for col in [
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "ci_level",
        "n",
        "events",
        "n_competing",
        "method",
    ]:
        assert col in s.columns
    np.testing.assert_allclose(s["estimate"], np.exp(cases[name]["coef"]), rtol=RTOL)
    np.testing.assert_allclose(s["ci_low"], np.exp(s["log_shr"] - 1.959963984540054 * s["std_error"]), rtol=1e-12)


def test_cohort_raw_exposure(cases):
    d = pd.read_csv(REF / "finegray_cohort.csv")
    res = fine_gray(d, "cr_years", "cr_event", "pad_years", ["age_years", "sex"], per_sd=False)
    _check(res, cases["cohort_m1_raw"])
    assert np.isnan(res.summary.loc[0, "sd"])


def test_no_censoring(cases):
    d = pd.read_csv(REF / "finegray_nocens.csv")
    res = fine_gray(d, "time", "etype", "z1", ["z2"], per_sd=False)
    _check(res, cases["nocens"])


def test_without_competing_events_equals_breslow_cox():
    # no competing events: the subdistribution is the ordinary hazard, so the point estimate is the
    # Breslow Cox estimate (the variance still differs: sandwich with the censoring term)
    from epi_spineage.stats import cox_per_sd

    d = pd.read_csv(REF / "finegray_ties.csv")
    d = d.assign(etype=d["etype"].where(d["etype"] != 2, 0))
    fg = fine_gray(d, "time", "etype", "x1", ["x2", "x3"], per_sd=False)
    cx = cox_per_sd(
        d.assign(ev=(d["etype"] == 1).astype(int)), "time", "ev", "x1", ["x2", "x3"], ties="breslow", sd=1.0
    )
    np.testing.assert_allclose(fg.coef, cx.coef, rtol=1e-8)


def test_order_and_scale_invariance():
    d = pd.read_csv(REF / "finegray_ties.csv")
    a = fine_gray(d, "time", "etype", "x1", ["x2", "x3"], per_sd=True)
    b = fine_gray(
        d.sample(frac=1.0, random_state=3).assign(x1=lambda f: f["x1"] * 7.0 + 3.0),
        "time",
        "etype",
        "x1",
        ["x2", "x3"],
        per_sd=True,
    )
    np.testing.assert_allclose(a.summary["estimate"], b.summary["estimate"], rtol=1e-9)
    np.testing.assert_allclose(a.summary["std_error"], b.summary["std_error"], rtol=1e-8)


def test_bad_input():
    d = pd.read_csv(REF / "finegray_ties.csv")
    with pytest.raises(UserError):
        fine_gray(d, "time", "etype", "nope")
    with pytest.raises(UserError):
        fine_gray(d.assign(time=-d["time"]), "time", "etype", "x1")
    with pytest.raises(UserError):
        fine_gray(d.assign(etype=0), "time", "etype", "x1")
    with pytest.raises(UserError):
        fine_gray(d.assign(x1=1.0), "time", "etype", "x1", per_sd=False)


def test_from_competing_event_type_ties():
    # fracture and death on the same day count as fracture (event 1) for Fine-Gray too
    df = pd.DataFrame(
        {
            "fracture_any": [1, 0, 1, 0],
            "fracture_any_years": [2.0, 5.0, 3.0, 1.0],
            "death": [1, 1, 0, 0],
            "death_years": [2.0, 4.0, 6.0, 7.0],
        }
    )
    out = competing_event_type(df)
    assert list(out["cr_event"]) == [1, 2, 1, 0]
    assert list(out["cr_years"]) == [2.0, 4.0, 3.0, 1.0]


def test_scales_n_log_n():
    # a small deterministic version of benchmarks/finegray.py: 4x the rows must cost well under 16x
    rng = np.random.default_rng(0)

    def run(n):
        X = rng.normal(size=(n, 5))
        t = np.ceil(rng.exponential(5.0, n) * 52) / 52
        e = rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2])
        t0 = _time.perf_counter()
        fit_fine_gray(X, t, e)
        return _time.perf_counter() - t0

    run(2000)
    small = min(run(5000) for _ in range(3))
    big = min(run(20000) for _ in range(3))
    assert big / small < 10.0


def test_blocks_of_sorted_times_equal_numpy_unique():
    """The layout's distinct sorted times and first rows (no re-sort) are ``np.unique``'s, ties and 0 included."""
    from epi_spineage.stats.finegray import _blocks

    rng = np.random.default_rng(3)
    for t in (np.sort(np.round(rng.exponential(size=500), 1)), np.zeros(4), np.array([2.5]), np.zeros(0)):
        uniq, first = _blocks(t)
        want_u, want_f = np.unique(t, return_index=True)
        np.testing.assert_array_equal(uniq, want_u)
        np.testing.assert_array_equal(first, want_f)


def test_cause_specific_cox_keeps_the_strata_column():
    """cause_specific_cox copies only the columns it fits: a stratified fit still sees its strata column and
    equals cox_per_sd on the cause's own event indicator."""
    from epi_spineage.stats import cause_specific_cox, cox_per_sd

    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame(
        {
            "t": np.round(rng.exponential(size=n), 2),
            "e": rng.choice([0, 1, 2], size=n, p=[0.5, 0.3, 0.2]),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "site": rng.choice(["a", "b"], size=n),
            "unused": ["u"] * n,
        }
    )
    got = cause_specific_cox(df, "t", "e", "x", ["z"], cause=1, strata="site").summary
    want = cox_per_sd(df.assign(d=(df["e"] == 1).astype(float)), "t", "d", "x", ["z"], strata="site").summary
    cols = ["term", "estimate", "std_error", "p_value"]
    pd.testing.assert_frame_equal(got[cols], want[cols], check_exact=True)
