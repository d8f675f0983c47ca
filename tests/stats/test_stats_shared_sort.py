"""One sort per outcome, shared by the Cox fits, Harrell's C and the PH test (issue 18): the shared
path must give the very numbers of the unshared one, and a changed column must never reuse a stale
order."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import cox_model_set, cox_per_sd, subgroup_hazard_ratios
from epi_spineage.stats._concordance import harrell_c
from epi_spineage.stats._coxfit import _Layout, fit_cox
from epi_spineage.stats._survdata import (
    prepare_survival,
    subset_order,
    survival_sharing,
    time_order,
)


def _cohort(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pad = rng.normal(0, 4, n)
    age = rng.uniform(50, 90, n)
    sex = rng.choice(["F", "M"], n)
    hazard = 0.02 * np.exp(0.08 * pad + 0.03 * (age - 70) + 0.3 * (sex == "M"))
    t = np.minimum(rng.exponential(1 / hazard), 10.0)
    df = pd.DataFrame(
        {
            # times rounded to months: many ties, as in registry data
            "time": np.round(t * 12) / 12 + 1 / 24,
            "event": (t < 10).astype(int),
            "pad_years": pad,
            "age_years": age,
            "sex": sex,
            "height": rng.normal(160, 8, n),
            "site": rng.choice(["a", "b", "c"], n),
        }
    )
    df.loc[rng.random(n) < 0.1, "height"] = np.nan  # models differ in their complete cases
    df.loc[rng.random(n) < 0.02, "time"] = np.nan
    return df


def _all_numbers(res) -> list:
    return [res.summary, res.ph_test, res.concordance, res.concordance_counts, res.loglik, res.coef, res.var]


def _assert_identical(a, b) -> None:
    for x, y in zip(a, b):
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subset_order_is_the_stable_argsort_of_the_subset(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 30, 2000).astype(float)
    t[rng.random(2000) < 0.05] = np.nan
    keep = (rng.random(2000) < 0.7) & ~np.isnan(t)
    np.testing.assert_array_equal(subset_order(time_order(t), keep), np.argsort(t[keep], kind="stable"))


def test_layout_from_a_shared_order_equals_lexsort_with_strata():
    rng = np.random.default_rng(5)
    t = rng.integers(1, 40, 1500).astype(float)
    e = (rng.random(1500) < 0.4).astype(int)
    s = rng.integers(0, 3, 1500)
    shared = _Layout(t, e, s, "efron", time_order(t))
    fresh = _Layout(t, e, s, "efron")
    np.testing.assert_array_equal(shared.order, np.lexsort((t, s)))
    for name in ("order", "eg_start", "eg_stratum_end", "last_eg", "first_eg_of_stratum", "frac", "dk"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(fresh, name))
    X = rng.normal(size=(1500, 3))
    a, b = fit_cox(X, t, e, strata=s, time_order=time_order(t)), fit_cox(X, t, e, strata=s)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.var, b.var)


def test_harrell_c_with_the_shared_order_gives_the_same_counts():
    rng = np.random.default_rng(8)
    t = rng.integers(1, 20, 3000).astype(float)
    e = rng.random(3000) < 0.3
    r = np.round(rng.normal(size=3000), 1)  # ties in the score too
    s = rng.integers(0, 2, 3000)
    for strata in (None, s):
        c0, n0 = harrell_c(t, e, r, strata)
        c1, n1 = harrell_c(t, e, r, strata, time_order=time_order(t))
        assert c0 == c1
        np.testing.assert_array_equal(n0, n1)


def test_shared_and_unshared_paths_give_identical_results():
    df = _cohort()
    models = {"m1": ["age_years", "sex"], "m2": ["age_years", "sex", "height"]}

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table, res = cox_model_set(df, "time", "event", models=models)
            strat = cox_per_sd(df, "time", "event", "pad_years", ["age_years", "height"], strata="site", ties="breslow")
            sub = subgroup_hazard_ratios(df, "time", "event", "pad_years", by="sex", covariates=["age_years"])
        return table, [x for r in res.values() for x in _all_numbers(r)] + _all_numbers(strat), sub

    with survival_sharing(False):
        table0, numbers0, sub0 = run()
    prepare_survival(df, "time", "event")  # optional: the first model would sort it the same
    table1, numbers1, sub1 = run()
    pd.testing.assert_frame_equal(table0, table1, check_exact=True)
    _assert_identical(numbers0, numbers1)
    pd.testing.assert_frame_equal(sub0, sub1, check_exact=True)


def test_a_changed_column_is_sorted_again():
    df = _cohort(800)
    first = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    df["time"] = df["time"].to_numpy()[::-1].copy()  # same values, another order: the cache must miss
    again = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    with survival_sharing(False):
        fresh = cox_per_sd(df, "time", "event", "pad_years", ["age_years"])
    _assert_identical(_all_numbers(again), _all_numbers(fresh))
    assert not np.array_equal(first.coef, again.coef)
