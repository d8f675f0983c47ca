"""derive_variables with a bias correction, checked through PAD (issue 11 item 1), and the three PAD
columns of docs/conventions.md#pad (raw, corrected, analysed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.model.bias import BiasCorrection, beheshti_correct
from epi_spineage.tables import derive_variables

KEY = b"pad-derivation-key-0123456789"


def _fit_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(45, 90, n)
    pred = age - 0.4 * (age - 67) + rng.normal(0, 2.5, n)  # regression to the mean
    return age, pred


def _cohort(n=60, seed=1):
    age, pred = _fit_rows(n, seed)
    return pd.DataFrame(
        {
            "participant_id": [f"E{i:04d}" for i in range(n)],
            "cohort": "external",
            "age_years": age,
            "spine_age_years": pred,
            "sex": np.random.default_rng(seed).choice(["F", "M"], n),
        }
    )


@pytest.fixture
def fitted():
    age, pred = _fit_rows()
    return BiasCorrection().fit(age, pred, ids=[f"D{i:04d}" for i in range(age.size)], key=KEY)


def test_bias_correction_object_gives_the_corrected_pad(fitted):
    df = _cohort()
    d = derive_variables(df, bias=fitted, key=KEY)
    expected = df["spine_age_years"] - (fitted.alpha_ * df["age_years"] + fitted.beta_)
    np.testing.assert_allclose(d["spine_age_corrected_years"], expected, rtol=1e-12)
    np.testing.assert_allclose(d["pad_years"], expected - df["age_years"], rtol=1e-12)
    assert d["pad_corrected"].all()
    # corrected PAD of new rows from the same process no longer falls with age; raw PAD does
    assert np.polyfit(df["age_years"], d["pad_raw_years"], 1)[0] < -0.25
    assert abs(np.polyfit(df["age_years"], d["pad_years"], 1)[0]) < 0.15


def test_alpha_beta_pair_and_dict_give_the_corrected_pad(fitted):
    df = _cohort()
    expected = df["spine_age_years"] - (fitted.alpha_ * df["age_years"] + fitted.beta_) - df["age_years"]
    for bias in ((fitted.alpha_, fitted.beta_), {"alpha": fitted.alpha_, "beta": fitted.beta_}):
        d = derive_variables(df, bias=bias)
        np.testing.assert_allclose(d["pad_years"], expected, rtol=1e-12)
        assert d["pad_corrected"].all()
        forced = derive_variables(df, bias=bias, corrected=True)
        np.testing.assert_allclose(forced["pad_years"], expected, rtol=1e-12)


def test_overlap_refusal_is_not_bypassed(fitted):
    age, pred = _fit_rows()
    same = pd.DataFrame(
        {
            "participant_id": [f"D{i:04d}" for i in range(age.size)],
            "cohort": "derivation",
            "age_years": age,
            "spine_age_years": pred,
        }
    )
    with pytest.raises(UserError, match="fitted on"):
        derive_variables(same, bias=fitted)  # the fitting data themselves (data hash)
    df = _cohort(n=10)
    df.loc[3, "participant_id"] = "D0007"  # one participant of the fitting set
    with pytest.raises(UserError, match="leakage"):
        derive_variables(df, bias=fitted, key=KEY)
    with pytest.raises(UserError, match="key"):  # raw ids and no key: the overlap cannot be checked
        derive_variables(df, bias=fitted)


def test_three_pad_columns(fitted):
    df = _cohort()
    raw_only = derive_variables(df)
    np.testing.assert_allclose(raw_only["pad_raw_years"], df["spine_age_years"] - df["age_years"])
    assert raw_only["pad_corrected_years"].isna().all()
    np.testing.assert_allclose(raw_only["pad_years"], raw_only["pad_raw_years"])
    d = derive_variables(df, bias=fitted, key=KEY)
    np.testing.assert_allclose(d["pad_raw_years"], df["spine_age_years"] - df["age_years"])
    np.testing.assert_allclose(d["pad_corrected_years"], d["spine_age_corrected_years"] - df["age_years"])
    np.testing.assert_allclose(d["pad_years"], d["pad_corrected_years"])
    unc = derive_variables(df, bias=fitted, corrected=False, key=KEY)
    np.testing.assert_allclose(unc["pad_years"], unc["pad_raw_years"])
    np.testing.assert_allclose(unc["pad_corrected_years"], d["pad_corrected_years"])


def test_one_beheshti_formula(fitted):
    rng = np.random.default_rng(3)
    age, pred = rng.uniform(40, 95, 50), rng.uniform(40, 95, 50)
    np.testing.assert_allclose(beheshti_correct(pred, age, -0.3, 20.0), pred - (-0.3 * age + 20.0))
    np.testing.assert_allclose(fitted.apply(age, pred), beheshti_correct(pred, age, fitted.alpha_, fitted.beta_))
