"""One name per concept: ``ci_level`` and ``cut_rule``; the old ``level`` and ``strict`` still work, deprecated."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

from epi_spineage import stats
from epi_spineage.errors import UserError

CI_LEVEL_FUNCTIONS = (
    "pearson",
    "pad_summary",
    "auc_ci",
    "delong_test",
    "frax_reclassification",
    "km_curves",
    "km_cumulative_failure",
    "incidence_rates",
    "aalen_johansen",
    "cox_per_sd",
    "group_hazard_ratios",
    "subgroup_hazard_ratios",
    "cox_model_set",
    "age_gap_regression",
)


@pytest.mark.parametrize("name", CI_LEVEL_FUNCTIONS)
def test_public_signatures_say_ci_level(name):
    params = inspect.signature(getattr(stats, name)).parameters
    assert "ci_level" in params and "level" not in params


def _data(n=200, seed=3):
    rng = np.random.default_rng(seed)
    age = rng.uniform(50, 80, n)
    pad = rng.normal(0, 5, n)
    t = rng.exponential(10, n)
    return pd.DataFrame(
        {
            "age_years": age,
            "spine_age_years": age + pad,
            "pad_years": pad,
            "sex": rng.choice(["F", "M"], n),
            "t": np.minimum(t, 8.0),
            "e": (t < 8.0).astype(int),
            "ct": np.where(t < 8.0, rng.choice([1, 2], n), 0),
            "y": (rng.uniform(size=n) < 0.3).astype(int),
        }
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda d, kw: stats.pearson(d["age_years"], d["spine_age_years"], **kw).ci_low,
        lambda d, kw: stats.auc_ci(d["y"], d["pad_years"], **kw).ci_low,
        lambda d, kw: stats.incidence_rates(d, "t", "e", **kw)["ci_low"].to_numpy(),
        lambda d, kw: stats.km_curves(d, "t", "e", **kw)["ci_low"].to_numpy(),
        lambda d, kw: stats.cox_per_sd(d, "t", "e", "pad_years", ["age_years"], **kw).summary["ci_low"].to_numpy(),
        lambda d, kw: stats.age_gap_regression(d, "pad_years", ["sex"], **kw).coefficients["ci_low"].to_numpy(),
        lambda d, kw: stats.cause_specific_cox(d, "t", "ct", "pad_years", ["age_years"], **kw).summary["ci_low"],
        lambda d, kw: stats.fine_gray(d, "t", "ct", "pad_years", ["age_years"], **kw).summary["ci_low"].to_numpy(),
        lambda d, kw: stats.pool_rubin([[0.1], [0.3], [0.2]], [[0.01], [0.02], [0.015]], 50, **kw)["ci_low"],
        lambda d, kw: stats.agreement_by_group(d.assign(manufacturer=d["sex"]), "manufacturer", **kw)["r_ci_low"],
    ],
    ids=[
        "pearson",
        "auc_ci",
        "incidence_rates",
        "km_curves",
        "cox_per_sd",
        "age_gap_regression",
        "cause_specific",
        "fine_gray",
        "pool_rubin",
        "agreement_by_group",
    ],
)
def test_level_is_the_deprecated_spelling_of_ci_level(call):
    d = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        new = call(d, {"ci_level": 0.9})
    with pytest.warns(DeprecationWarning, match="use ci_level"):
        old = call(d, {"level": 0.9})
    default = call(d, {})
    np.testing.assert_array_equal(np.asarray(new, float), np.asarray(old, float))
    assert not np.allclose(np.asarray(new, float), np.asarray(default, float))  # the level was used


def test_both_spellings_at_once_are_refused():
    d = _data()
    with pytest.raises(TypeError, match="both"):
        stats.pearson(d["age_years"], d["spine_age_years"], ci_level=0.9, level=0.9)


def test_cut_rule_and_the_deprecated_strict():
    pad = pd.Series([0.0, 1.0, 2.0, np.nan])
    ge = stats.accelerated(pad, 1.0)
    gt = stats.accelerated(pad, 1.0, cut_rule=">")
    assert ge.tolist()[:3] == [False, True, True] and gt.tolist()[:3] == [False, False, True]
    assert pd.isna(gt.iloc[3])
    with pytest.warns(DeprecationWarning, match="cut_rule"):
        assert stats.accelerated(pad, 1.0, strict=True).equals(gt)
    with pytest.warns(DeprecationWarning, match="cut_rule"):
        assert stats.accelerated(pad, 1.0, True).equals(gt)  # the old third positional argument
    with pytest.warns(DeprecationWarning):
        assert stats.accelerated(pad, 1.0, strict=False).equals(ge)
    with pytest.raises(UserError, match="cut_rule"):
        stats.accelerated(pad, 1.0, cut_rule="=>")
    d = _data()
    new = stats.four_groups(d, cut=0.0, cut_rule=">")
    with pytest.warns(DeprecationWarning, match="cut_rule"):
        old = stats.four_groups(d, cut=0.0, strict=True)
    assert new.equals(old)
    d.loc[0, "pad_years"] = 0.0  # on the cut: accelerated under ">=", not under ">"
    assert stats.four_groups(d, cut=0.0).iloc[0] != stats.four_groups(d, cut=0.0, cut_rule=">").iloc[0]
