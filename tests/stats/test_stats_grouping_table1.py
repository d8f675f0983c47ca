"""Tertile cuts, the accelerated flag, the four groups, Table 1 layout, PAD summary, OLS checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import (
    TertileCuts,
    accelerated,
    age_gap_regression,
    four_groups,
    pad_summary,
    pearson,
    table_one,
    tertile_cuts,
)
from epi_spineage.stats.grouping import FOUR_GROUP_LABELS, REFERENCE_GROUP
from epi_spineage.stats.table1 import fisher_2xk, format_table_one


def test_float_noise_does_not_split_ties_at_the_cut():
    spine = np.array([2.2, 71.3, 61.1, 55.0])
    age = np.array([1.2, 70.3, 60.1, 54.0])  # every PAD is 1 year, but 2.2 - 1.2 != 1.0 in floating point
    pad = spine - age
    assert not np.all(pad == 1.0)
    assert accelerated(pad, 1.0).all()
    assert not accelerated(pad, 1.0, cut_rule=">").any()


def test_accelerated_keeps_missing_and_index():
    pad = pd.Series([0.0, 2.0, np.nan, 1.0], index=[10, 11, 12, 13])
    cuts = TertileCuts(lower=-1.0, upper=1.0)
    acc = accelerated(pad, cuts)
    assert list(acc.index) == [10, 11, 12, 13]
    assert acc.tolist()[:2] == [False, True] and pd.isna(acc[12]) and acc[13]


def test_tertile_methods_differ_on_ties_and_frame():
    values = np.array([-2, -1, -1, 0, 0, 0, 1, 1, 2, 3], dtype=float)
    t7, t2 = tertile_cuts(values), tertile_cuts(values, method="type2", source="derivation test")
    np.testing.assert_allclose(t7.upper, np.quantile(values, 2 / 3))
    assert t2.upper == 1.0 and t2.source == "derivation test"
    f = t2.to_frame()
    assert list(f["term"]) == ["tertile_1/3", "tertile_2/3"] and (f["method"] == "type2").all()
    with pytest.raises(UserError):
        tertile_cuts(values, method="type5")
    with pytest.raises(UserError):
        tertile_cuts([np.nan])


def test_four_groups_with_a_cut_learned_elsewhere():
    rng = np.random.default_rng(5)
    derivation = pd.DataFrame({"pad_years": rng.normal(0, 3, 500).round()})
    cut = tertile_cuts(derivation["pad_years"])
    ext = pd.DataFrame(
        {"age_years": rng.integers(50, 90, 300).astype(float), "pad_years": rng.normal(1, 3, 300).round()}
    )
    ext.loc[0, "pad_years"] = np.nan
    g = four_groups(ext, cut=cut)
    assert list(g.cat.categories) == list(FOUR_GROUP_LABELS) and g.cat.categories[0] == REFERENCE_GROUP
    assert pd.isna(g[0]) and g.notna().sum() == 299
    med = ext["age_years"].median()
    older = ext["age_years"] >= med
    acc = ext["pad_years"] >= cut.upper
    ok = ext["pad_years"].notna()
    expect = np.where(older, "older", "younger").astype(object) + ", " + np.where(acc, "accelerated", "not accelerated")
    assert (g[ok].astype(str) == expect[ok]).all()


def _table_data():
    rng = np.random.default_rng(9)
    n = 200
    df = pd.DataFrame(
        {
            "fx": rng.integers(0, 2, n),
            "age_years": rng.normal(65, 8, n),
            "sex": rng.choice(["F", "M"], n),
            "diabetes": rng.integers(0, 2, n).astype(float),
            "site": rng.choice(["a", "b", "c"], n),
        }
    )
    df.loc[:4, "age_years"] = np.nan
    df.loc[5:7, "diabetes"] = np.nan
    return df


def test_table_one_tidy_counts_and_layout():
    df = _table_data()
    t = table_one(df, "fx", ["age_years", "sex", "diabetes", "site"], overall=True)
    assert set(t["group"]) == {"0", "1", "overall"}
    age = t[(t["variable"] == "age_years") & (t["group"] == "overall")].iloc[0]
    assert age["n"] == 195 and age["n_missing"] == 5
    np.testing.assert_allclose([age["mean"], age["sd"]], [df["age_years"].mean(), df["age_years"].std(ddof=1)])
    dia = t[(t["variable"] == "diabetes") & (t["group"] == "1") & (t["level"] == "1")].iloc[0]
    sub = df.loc[df["fx"] == 1, "diabetes"]
    assert dia["count"] == int((sub == 1).sum()) and dia["n"] == int(sub.notna().sum())
    np.testing.assert_allclose(dia["percent"], 100 * (sub == 1).sum() / sub.notna().sum())
    shown = format_table_one(t, labels={"age_years": "Age, years"})
    assert shown["characteristic"].tolist() == [
        "Age, years, mean ± SD",
        "sex, n (%)",
        "  F",
        "  M",
        "diabetes, n (%)",
        "site, n (%)",
        "  a",
        "  b",
        "  c",
    ]
    g1 = [c for c in shown.columns if c.startswith("1 (n=")][0]
    assert shown.loc[4, g1] == f"{dia['count']} ({dia['percent']:.1f})"
    assert shown.loc[0, "p value"] != ""


def test_table_one_warns_about_rows_in_no_group_and_rejects_bad_columns():
    df = _table_data()
    df.loc[0, "fx"] = np.nan
    with pytest.warns(UserWarning, match="1 row"):
        table_one(df, "fx", ["age_years"])
    with pytest.raises(UserError):
        table_one(df, "nope", ["age_years"])
    with pytest.raises(UserError):
        table_one(df, "fx", ["nope"])


def test_exact_2xk_fisher_equals_2x2_scipy_and_is_symmetric():
    from scipy import stats

    tab = np.array([[3, 9], [11, 4]])
    np.testing.assert_allclose(fisher_2xk(tab), stats.fisher_exact(tab).pvalue, rtol=1e-9)
    t3 = np.array([[2, 7, 1], [9, 3, 5]])
    np.testing.assert_allclose(fisher_2xk(t3), fisher_2xk(t3.T), rtol=1e-12)
    np.testing.assert_allclose(fisher_2xk(t3), fisher_2xk(t3[::-1]), rtol=1e-12)


def test_pad_summary_and_pearson_edge_cases():
    df = pd.DataFrame({"age_years": [60, 70, 80, 65.0], "spine_age_years": [62, 69, 85, np.nan], "c": list("aabb")})
    s = pad_summary(df)
    row = s.iloc[0]
    assert row["n"] == 3 and row["n_missing"] == 1
    np.testing.assert_allclose([row["pad_mean_years"], row["mae_years"]], [2.0, 8 / 3])
    assert len(pad_summary(df, by="c")) == 2
    assert np.isnan(pearson([1, 2], [2, 3]).estimate)
    assert np.isnan(pearson([1, 1, 1, 1], [1, 2, 3, 4]).estimate)
    r = pearson([1, 2, 3], [1, 3, 2])
    assert np.isfinite(r.estimate) and np.isnan(r.ci_low)
    r = pearson(np.arange(20.0), np.arange(20.0) ** 1.5)
    assert r.ci_low <= r.estimate <= r.ci_high


def test_regression_scaling_and_collinearity():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"pad_years": rng.normal(size=100), "h": rng.normal(160, 8, 100)})
    df["h5"] = -df["h"] / 5
    a = age_gap_regression(df, covariates=["h"]).coefficients.set_index("term")
    b = age_gap_regression(df, covariates=["h5"]).coefficients.set_index("term")
    np.testing.assert_allclose(b.loc["h5", "estimate"], -5 * a.loc["h", "estimate"], rtol=1e-10)
    np.testing.assert_allclose(b.loc["h5", "p_value"], a.loc["h", "p_value"], rtol=1e-8)
    df["h2"] = df["h"] * 2
    with pytest.warns(UserWarning, match="aliased"):  # as R's lm: h2 is NA, h is fitted
        both = age_gap_regression(df, covariates=["h", "h2"])
    assert both.dropped_terms == ("h2",)
    c = both.coefficients.set_index("term")
    assert c.loc["h2", ["estimate", "std_error", "p_value"]].isna().all()
    np.testing.assert_allclose(c.loc[["(Intercept)", "h"], "estimate"], a[["estimate"]].to_numpy().ravel(), rtol=1e-10)
    f = age_gap_regression(df, covariates=["h"]).to_frame()
    assert {"analysis", "term", "estimate", "ci_low", "ci_high", "p_value", "n", "r2", "adj_r2"} <= set(f.columns)


def test_four_groups_from_codes_equal_the_labelled_categorical():
    """four_groups builds its categorical from codes (issue 18, memory): the same Series as labelling every
    row and letting pandas find the categories, missing age or PAD included."""
    from epi_spineage.stats import four_groups

    rng = np.random.default_rng(4)
    df = pd.DataFrame({"age_years": rng.normal(60, 8, 500).round(), "pad_years": rng.normal(0, 4, 500)})
    df.loc[::17, "age_years"] = np.nan
    df.loc[::23, "pad_years"] = np.nan
    df.index = pd.RangeIndex(5, 505)
    got = four_groups(df, cut=1.5)
    a = df["age_years"].to_numpy()
    older = np.where(np.isnan(a), np.nan, (a >= np.nanmedian(a)).astype(float))
    acc = np.where(df["pad_years"].isna(), np.nan, (df["pad_years"].round(9) >= 1.5).astype(float))
    code = older * 2 + acc
    values = np.full(len(df), None, dtype=object)
    ok = ~np.isnan(code)
    values[ok] = np.array(FOUR_GROUP_LABELS, dtype=object)[code[ok].astype(int)]
    want = pd.Series(pd.Categorical(values, categories=list(FOUR_GROUP_LABELS), ordered=True), index=df.index)
    pd.testing.assert_series_equal(got, want.rename("group"))
    assert got.cat.codes.dtype == np.int8 and got.isna().sum() == (~ok).sum()
