"""The faster computation paths of issue 18 give the very numbers of the paths they replace.

- a Cox model reads its complete cases as numpy arrays (``_design_rows``, ``_text_codes``), not from a copied
  frame (``time_event`` + ``_design``);
- ``diagnostics=False`` leaves Harrell's C and the PH test out and changes nothing else;
- subgroup models share the whole cohort's sort and skip the diagnostics;
- Table 1 counts categorical levels from the distinct values (``_level_codes``), not from every row's text;
- the report's constancy check (``_varies``) and column view (``model_view``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.report.steps import _varies, model_view
from epi_spineage.stats import cox_per_sd, group_hazard_ratios, subgroup_hazard_ratios, table_one
from epi_spineage.stats._coxfit import fit_cox
from epi_spineage.stats._survdata import time_event
from epi_spineage.stats.cox import _design, _design_rows, _text_codes
from epi_spineage.stats.table1 import _as_level_text, _level_codes, _levels


def _cohort(seed: int, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "time": np.round(rng.exponential(5, n), 1),
            "event": rng.integers(0, 2, n),
            "pad": rng.normal(size=n),
            "age": rng.normal(70, 8, n),
            "sex": rng.choice(np.array(["F", "M"], dtype=object), n),
            "site": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["c", "a", "b", "unused"]),
            "flag": pd.array(rng.integers(0, 2, n), dtype="Int64"),
            "smoker": rng.integers(0, 2, n).astype(bool),
            "group": rng.choice(np.array(["g1", "g2", "g3", None], dtype=object), n),
        }
    )
    for col in ("pad", "age", "time"):
        df.loc[rng.random(n) < 0.04, col] = np.nan
    df.loc[rng.random(n) < 0.04, "sex"] = None
    df.loc[rng.random(n) < 0.04, "flag"] = pd.NA
    return df


MIXED = np.array([1, "1", 1.0, True, "a", "b", 2.5, "10", "9", "F"], dtype=object)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(np.array(["M", "F", "F", "M", "X"], dtype=object)),
        pd.Series(pd.Categorical(["y", "x", "y"], categories=["y", "z", "x"])),
        pd.Series(pd.Categorical([2.0, 1.0, 2.0])),
        pd.Series(np.array([True, False, True])),
        pd.Series(pd.array(["u", "v", "u"], dtype="string")),
        pd.Series(MIXED),
    ],
)
def test_text_codes_give_the_levels_of_astype_str(values):
    rows = np.ones(len(values), dtype=bool)
    rows[0] = False
    codes, levels = _text_codes(values, rows)
    text = values[rows].astype(str).to_numpy()
    assert levels == sorted(set(text))
    assert [levels[c] for c in codes] == list(text)


def _design_reference(frame: pd.DataFrame, columns: list[str], reference_levels: dict | None):
    """The design as ``cox._design`` built it from a copied frame before it became ``_design_rows`` at every
    row: numeric columns as they are, others ``astype(str)`` and dummy-coded against a reference level."""
    blocks, names, scales = [], [], []
    reference_levels = reference_levels or {}
    for col in columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            blocks.append(pd.to_numeric(s).to_numpy(float)[:, None])
            names.append(col)
            scales.append("per unit")
            continue
        text = s.astype(str)
        levels = sorted(text.unique())
        ref = str(reference_levels.get(col, levels[0]))
        if ref not in levels:
            raise UserError(f"reference level {ref!r} of {col!r} is not in the data")
        for lev in levels:
            if lev == ref:
                continue
            blocks.append((text == lev).to_numpy(float)[:, None])
            names.append(f"{col}[{lev}]")
            scales.append(f"vs {ref}")
    X = np.hstack(blocks) if blocks else np.zeros((len(frame), 0))
    return X, names, scales


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_design_from_arrays_equals_the_design_of_the_copied_frame(seed):
    df = _cohort(seed)
    cols = ["age", "sex", "site", "flag", "smoker"]
    frame, _, kept = time_event(df, "time", "event", extra=["pad", *cols], with_mask=True)
    texts = {c: _text_codes(df[c], kept) for c in ("sex", "site", "smoker")}
    for ref in (None, {"sex": "M", "site": "b"}):
        X_old, names_old, scales_old = _design_reference(frame, cols, ref)
        X_new, names_new, scales_new = _design_rows(df, cols, ref, kept, texts)
        np.testing.assert_array_equal(X_new, X_old)
        assert (names_new, scales_new) == (names_old, scales_old)
        # and the whole-frame design the Fine-Gray and domain-shift models use
        X_all, names_all, scales_all = _design(frame, cols, ref)
        np.testing.assert_array_equal(X_all, X_old)
        assert (names_all, scales_all) == (names_old, scales_old)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_per_sd_equals_a_fit_of_the_copied_frame(ties):
    df = _cohort(3)
    cols = ["age", "sex", "site", "flag"]
    res = cox_per_sd(df, "time", "event", "pad", cols, ties=ties, sd=1.5)
    frame, n_excluded, _ = time_event(df, "time", "event", extra=["pad", *cols], with_mask=True)
    X_cov, names, _ = _design(frame, cols, None)
    X = np.hstack([(frame["pad"].to_numpy(float) / 1.5)[:, None], X_cov])
    t = frame["_time"].to_numpy()
    fit = fit_cox(X, t, frame["_event"].to_numpy(), ties=ties, time_order=np.argsort(t, kind="stable"))
    assert res.terms == ["pad", *names]
    np.testing.assert_array_equal(res.coef, fit.beta)
    np.testing.assert_array_equal(res.var, fit.var)
    assert (res.loglik, res.n, res.n_excluded) == (fit.loglik, len(frame), n_excluded)


def test_diagnostics_false_changes_only_c_and_the_ph_test():
    df = _cohort(4)
    kw = dict(covariates=["age", "sex", "site"], sd=2.0, strata="smoker")
    full = cox_per_sd(df, "time", "event", "pad", **kw)
    lean = cox_per_sd(df, "time", "event", "pad", diagnostics=False, **kw)
    pd.testing.assert_frame_equal(lean.summary, full.summary, check_exact=True)
    np.testing.assert_array_equal(lean.coef, full.coef)
    np.testing.assert_array_equal(lean.var, full.var)
    assert (lean.loglik, lean.note, lean.estimable) == (full.loglik, full.note, full.estimable)
    assert np.isfinite(full.concordance) and len(full.ph_test)
    assert np.isnan(lean.concordance) and lean.ph_test.empty


@pytest.mark.parametrize("seed", [5, 6])
def test_subgroups_equal_separate_fits_of_each_level(seed):
    df = _cohort(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = subgroup_hazard_ratios(df, "time", "event", "pad", by="sex", covariates=["age", "site"], sd=1.3)
        for _, row in out.iterrows():
            sub = df[df["sex"] == row["level"]]
            alone = cox_per_sd(sub, "time", "event", "pad", ["age", "site"], sd=1.3).summary.iloc[0]
            for col in ("estimate", "std_error", "p_value", "ci_low", "ci_high", "n", "events", "n_excluded"):
                assert row[col] == alone[col], col
        # the interaction: likelihood-ratio test of the product term on the complete cases
        cc = df.dropna(subset=["time", "event", "pad", "sex", "age", "site"])
        cc = cc.assign(_m=(cc["sex"] == "M").astype(float), _xm=(cc["sex"] == "M") * cc["pad"] / 1.3)
        m0 = cox_per_sd(cc, "time", "event", "pad", ["age", "site", "_m"], sd=1.3)
        m1 = cox_per_sd(cc, "time", "event", "pad", ["age", "site", "_m", "_xm"], sd=1.3)
    from scipy import stats as sps

    expected = sps.chi2.sf(2 * (m1.loglik - m0.loglik), 1)
    assert out["p_interaction"].iloc[0] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_group_hazard_ratios_still_compare_groups():
    df = _cohort(7).dropna(subset=["group"])
    out = group_hazard_ratios(df, "time", "event", "group", "g1", covariates=["age"])
    assert list(out["group"]) == ["g1", "g2", "g3"]
    assert out["estimate"].iloc[1:].notna().all()


@pytest.mark.parametrize(
    "col",
    [
        pd.Series(MIXED),
        pd.Series(np.array(["1", "1.0", "2", "10", None, "9"], dtype=object)),
        pd.Series([0.0, -0.0, 1.0, 2.5, np.nan, 3.0, 1e6]),
        pd.Series(pd.array([0, 1, None, 2], dtype="Int64")),
        pd.Series(pd.array([True, None, False], dtype="boolean")),
        pd.Series(pd.Categorical(["x", None, "y"], categories=["y", "x", "q"])),
        pd.Series([np.nan, np.nan]),
    ],
)
def test_table1_level_codes_equal_the_row_by_row_levels(col):
    text = _as_level_text(col)
    code, levels = _level_codes(col)
    assert levels == _levels(col, text)
    assert [levels[c] if c >= 0 else None for c in code] == list(text)


def test_table1_counts_equal_a_count_of_every_row():
    df = _cohort(8)
    df["fx"] = df["event"]
    t1 = table_one(df, by="fx", variables=["sex", "site", "flag", "smoker", "group"], overall=True)
    for _, r in t1.iterrows():
        rows = df if r["group"] == "overall" else df[df["fx"] == int(r["group"])]
        text = pd.Series(_as_level_text(rows[r["variable"]]))
        assert r["count"] == (text == r["level"]).sum()
        assert r["n"] == text.notna().sum()


@pytest.mark.parametrize(
    "s",
    [
        pd.Series([1.0, 1.0, np.nan, 2.0]),
        pd.Series([0.0, -0.0, np.nan, 5.0]),
        pd.Series([3, 3, 3, 4]),
        pd.Series([True, True, False, True]),
        pd.Series(pd.Categorical(["a", "a", None, "b"])),
        pd.Series(np.array(["F", "F", None, "M"], dtype=object)),
        pd.Series(pd.array([1, 1, None, 2], dtype="Int64")),
    ],
)
@pytest.mark.parametrize("rows", [[True, True, False, False], [True, True, True, True], [False] * 4])
def test_varies_is_nunique_above_one(s, rows):
    rows = np.array(rows) & s.notna().to_numpy()
    assert _varies(s, rows) == (s[rows].nunique(dropna=True) > 1)


def test_a_model_view_gives_the_same_fit_as_the_cohort():
    df = _cohort(9)
    view = model_view(df, ["time", "event", "pad", "age", "sex", "missing column"])
    assert isinstance(view["sex"].dtype, pd.CategoricalDtype)
    assert np.shares_memory(view["age"].to_numpy(), df["age"].to_numpy())
    a = cox_per_sd(df, "time", "event", "pad", ["age", "sex"], sd=1.1)
    b = cox_per_sd(view, "time", "event", "pad", ["age", "sex"], sd=1.1)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    pd.testing.assert_frame_equal(a.ph_test, b.ph_test, check_exact=True)
    assert a.concordance == b.concordance


def _brute_force_counts(time, event, risk) -> np.ndarray:
    """R's definition pair by pair, O(n^2): comparable when the shorter time is an event (a censored
    time tied with an event time counts as longer; two events at one time are not comparable)."""
    conc = disc = tied = 0
    for i in np.flatnonzero(event):
        later = (time > time[i]) | ((time == time[i]) & (event == 0))
        conc += int((risk[later] < risk[i]).sum())
        disc += int((risk[later] > risk[i]).sum())
        tied += int((risk[later] == risk[i]).sum())
    return np.array([conc, disc, tied], dtype=float)


@pytest.mark.parametrize("seed", range(6))
def test_concordance_counts_equal_the_pairwise_definition(seed):
    from epi_spineage.stats._concordance import concordance_counts

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    time = rng.integers(1, 30, n).astype(float)  # many tied times
    event = (rng.random(n) < 0.4).astype(int)
    risk = rng.integers(0, 12, n).astype(float) if seed % 2 else rng.normal(size=n)  # tied or distinct scores
    expected = _brute_force_counts(time, event, risk)
    np.testing.assert_array_equal(concordance_counts(time, event, risk), expected)
    np.testing.assert_array_equal(concordance_counts(time, event, risk, np.argsort(time, kind="stable")), expected)


def test_prefix_counts_match_a_direct_count():
    from epi_spineage.stats._concordance import _prefix_counts

    rng = np.random.default_rng(11)
    ranks = rng.integers(0, 50, 700)
    limits = rng.integers(0, 701, 300)
    queries = rng.integers(0, 60, 300)  # some above every rank
    less, equal = _prefix_counts(limits, queries, ranks)
    np.testing.assert_array_equal(less, [(ranks[:lim] < v).sum() for lim, v in zip(limits, queries)])
    np.testing.assert_array_equal(equal, [(ranks[:lim] == v).sum() for lim, v in zip(limits, queries)])


def test_survival_functions_give_the_same_tables_for_a_categorical_group():
    from epi_spineage import stats
    from epi_spineage.report.steps import columns_of

    df = _cohort(12).dropna(subset=["time"])
    groups = pd.Series(pd.Categorical(df["site"].astype(str), categories=["c", "a", "b", "unused"]), index=df.index)
    rows = df["site"].notna().to_numpy()
    cat = columns_of(df, ["time", "event"], rows, grp=groups)
    assert isinstance(cat["grp"].dtype, pd.CategoricalDtype)
    obj = cat.assign(grp=cat["grp"].astype(object))
    calls = [
        lambda d: stats.km_curves(d, "time", "event", group="grp"),
        lambda d: stats.km_cumulative_failure(d, "time", "event", group="grp", times=[1, 3]),
        lambda d: stats.logrank(d, "time", "event", group="grp"),
        lambda d: stats.incidence_rates(d, "time", "event", group="grp"),
        lambda d: stats.median_followup(d, "time", "event", group="grp"),
        lambda d: stats.group_hazard_ratios(d, "time", "event", "grp", "a"),
    ]
    for call in calls:
        pd.testing.assert_frame_equal(call(cat), call(obj), check_exact=True)
