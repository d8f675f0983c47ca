"""Hypothesis property tests (small, derandomised examples) for KM, AJ, log-rank and Harrell's C."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from epi_spineage.stats import aalen_johansen, km_curves, logrank
from epi_spineage.stats._concordance import harrell_c

_rows = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=40)


def _frame(rows):
    t, et, g = zip(*rows)
    return pd.DataFrame(
        {"time": np.array(t, float), "etype": et, "event": (np.array(et) == 1).astype(int), "group": np.array(g)}
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(_rows)
def test_km_and_aj_properties(rows):
    df = _frame(rows)
    km = km_curves(df, "time", "event", group="group")
    for _, cur in km.groupby("group"):
        est = cur["estimate"].to_numpy()
        assert ((est >= 0) & (est <= 1)).all() and (np.diff(est) >= -1e-15).all()
        assert (cur["ci_low"] <= cur["estimate"] + 1e-12).all() and (cur["estimate"] <= cur["ci_high"] + 1e-12).all()
    times = sorted(df["time"].unique())
    f1 = aalen_johansen(df, "time", "etype", cause=1, times=times)["estimate"].to_numpy()
    f2 = aalen_johansen(df, "time", "etype", cause=2, times=times)["estimate"].to_numpy()
    assert (f1 + f2 <= 1 + 1e-12).all() and (np.diff(f1) >= -1e-15).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_rows)
def test_logrank_is_label_invariant(rows):
    df = _frame(rows)
    if df["group"].nunique() < 2 or df["event"].sum() == 0:
        return
    a = logrank(df, "time", "event", "group")
    b = logrank(df.assign(group=df["group"].map({0: "z", 1: "y", 2: "x"})), "time", "event", "group")
    np.testing.assert_allclose(a["statistic"], b["statistic"], rtol=1e-9, atol=1e-12)
    assert (a["statistic"].fillna(0) >= -1e-12).all()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 5), st.booleans(), st.integers(0, 3)), min_size=2, max_size=30))
def test_harrell_counts_equal_brute_force(rows):
    t, e, r = (np.array(x) for x in zip(*rows))
    t = t.astype(float)
    r = r.astype(float)
    conc = disc = tied = 0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if j != i and (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                conc += r[i] > r[j]
                disc += r[i] < r[j]
                tied += r[i] == r[j]
    assert tuple(harrell_c(t, e, r)[1]) == (conc, disc, tied)
    # continuous scores take the no-ties path
    rc = r + np.arange(len(r)) * 1e-6
    conc = disc = 0
    for i in range(len(t)):
        if e[i]:
            for j in range(len(t)):
                if j != i and (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                    conc += rc[i] > rc[j]
                    disc += rc[i] < rc[j]
    assert tuple(harrell_c(t, e, rc)[1]) == (conc, disc, 0)
