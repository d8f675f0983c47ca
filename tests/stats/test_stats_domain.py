"""Domain shift: per-group agreement and the age/sex-adjusted test of a PAD shift between manufacturers.

Simulated scanners with planted offsets: the shift is found and estimated; without an offset the test
holds its level; a case-mix difference (older participants on one scanner) is not mistaken for a shift.
The OLS figures are checked against statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import agreement_by_group, pad_shift_test, pearson

OFFSETS = {"Acme": 0.0, "Borealis": 2.0, "Cygnus": -1.5}


def _scans(n: int, seed: int, offsets=OFFSETS, age_by_scanner=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    man = rng.choice(list(offsets), n, p=[0.5, 0.3, 0.2])
    shift = np.array([(age_by_scanner or {}).get(m, 0.0) for m in man])
    age = rng.normal(68, 8, n) + shift
    sex = rng.choice(["F", "M"], n)
    pad = -0.25 * (age - 68) + 0.7 * (sex == "M") + np.array([offsets[m] for m in man]) + rng.normal(0, 4, n)
    return pd.DataFrame(
        {"manufacturer": man, "modality": "vfa", "age_years": age, "sex": sex, "spine_age_years": age + pad}
    )


def test_agreement_by_group_figures():
    d = _scans(900, 1)
    d.loc[d.index[:5], "spine_age_years"] = np.nan
    d.loc[d.index[5:8], "manufacturer"] = None
    out = agreement_by_group(d)
    assert list(out.columns[:2]) == ["manufacturer", "modality"]
    assert list(out["manufacturer"]) == ["(missing)", "Acme", "Borealis", "Cygnus"]
    assert out["n"].sum() + out["n_missing"].sum() == len(d)
    row = out.set_index("manufacturer").loc["Borealis"]
    sub = d[d["manufacturer"] == "Borealis"].dropna(subset=["spine_age_years"])
    pad = sub["spine_age_years"] - sub["age_years"]
    assert row["n"] == len(sub)
    assert row["pad_mean_years"] == pytest.approx(pad.mean())
    assert row["pad_sd_years"] == pytest.approx(pad.std(ddof=1))
    assert row["mae_years"] == pytest.approx(pad.abs().mean())
    half = 1.9674 * pad.std(ddof=1) / np.sqrt(len(pad))  # t quantile for ~270 df
    assert row["pad_mean_ci_high"] - row["pad_mean_years"] == pytest.approx(half, rel=2e-3)
    r = pearson(sub["age_years"], sub["spine_age_years"])
    assert (row["pearson_r"], row["r_ci_low"], row["r_ci_high"]) == pytest.approx((r.estimate, r.ci_low, r.ci_high))
    # the planted offsets show in the raw means
    means = out.set_index("manufacturer")["pad_mean_years"]
    assert means["Borealis"] - means["Acme"] == pytest.approx(2.0, abs=0.8)


def test_agreement_single_group_and_pad_column():
    d = _scans(200, 2).assign(pad_years=lambda f: f["spine_age_years"] - f["age_years"])
    a = agreement_by_group(d, "modality", pad="pad_years")
    b = agreement_by_group(d, "modality")
    assert len(a) == 1 and a.loc[0, "modality"] == "vfa"
    np.testing.assert_allclose(
        a[["pad_mean_years", "mae_years", "pearson_r"]], b[["pad_mean_years", "mae_years", "pearson_r"]]
    )
    with pytest.raises(UserError):
        agreement_by_group(d, ("manufacturer", "nope"))


def test_shift_detected_and_estimated_matches_statsmodels():
    import statsmodels.formula.api as smf

    d = _scans(1500, 3)
    out = pad_shift_test(d, "manufacturer")
    f_row = out.iloc[0]
    assert f_row["test"] == "F" and f_row["df_num"] == 2 and f_row["p_value"] < 1e-8
    assert out["reference"].iloc[0] == "Acme"  # the largest group
    est = out.set_index("level").loc[["Borealis", "Cygnus"]]
    for lv in ("Borealis", "Cygnus"):
        assert est.loc[lv, "ci_low"] <= OFFSETS[lv] <= est.loc[lv, "ci_high"]
    # same numbers as statsmodels OLS + its F test of the group terms
    d = d.assign(pad=d["spine_age_years"] - d["age_years"])
    full = smf.ols("pad ~ age_years + C(sex) + C(manufacturer, Treatment('Acme'))", d).fit()
    restricted = smf.ols("pad ~ age_years + C(sex)", d).fit()
    F, p, dfn = full.compare_f_test(restricted)
    assert dfn == 2
    assert f_row["statistic"] == pytest.approx(F, rel=1e-9)
    assert f_row["p_value"] == pytest.approx(p, rel=1e-6)
    assert f_row["df_den"] == full.df_resid
    name = "C(manufacturer, Treatment('Acme'))[T.Borealis]"
    assert est.loc["Borealis", "estimate"] == pytest.approx(full.params[name], rel=1e-9)
    assert est.loc["Borealis", "std_error"] == pytest.approx(full.bse[name], rel=1e-9)
    ci = full.conf_int().loc[name]
    assert (est.loc["Borealis", "ci_low"], est.loc["Borealis", "ci_high"]) == pytest.approx((ci[0], ci[1]), rel=1e-9)


def test_no_offset_holds_its_level():
    none = {k: 0.0 for k in OFFSETS}
    from scipy import stats

    p = np.array([pad_shift_test(_scans(300, 100 + s, none))["p_value"].iloc[0] for s in range(100)])
    # 100 null tests: rejections at 5% are Binomial(100, 0.05), 99.9% below 14; p values uniform
    assert (p < 0.05).sum() <= 13
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert pad_shift_test(_scans(1500, 7, none))["p_value"].iloc[0] > 0.01


def test_case_mix_is_not_a_shift():
    # older participants scanned on Borealis, no scanner offset: raw mean PAD differs (PAD falls with
    # age), the age/sex-adjusted test does not flag it
    none = {k: 0.0 for k in OFFSETS}
    d = _scans(3000, 9, none, age_by_scanner={"Borealis": 8.0})
    raw = agreement_by_group(d, "manufacturer").set_index("manufacturer")["pad_mean_years"]
    assert raw["Borealis"] - raw["Acme"] < -1.2
    unadjusted = pad_shift_test(d, "manufacturer", covariates=())
    adjusted = pad_shift_test(d, "manufacturer")
    assert unadjusted["p_value"].iloc[0] < 1e-6
    assert adjusted["p_value"].iloc[0] > 0.01


def test_shift_bad_input():
    d = _scans(100, 4)
    with pytest.raises(UserError):
        pad_shift_test(d.assign(manufacturer="Acme"), "manufacturer")
    with pytest.raises(UserError):
        pad_shift_test(d, "manufacturer", reference="Zed")
    with pytest.raises(UserError):
        pad_shift_test(d, "nope")
