"""The simulator's missing-data options: the demo's DXA stays missing completely at random; the MAR
option plants missingness that depends on observed age, sex and the fracture outcome, as documented
in truth["missing"]."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from epi_spineage.errors import UserError
from epi_spineage.synth.cohort import DERIVATION, simulate_cohort


def _cohort(spec, n=6000, seed=4):
    return simulate_cohort(spec, n, np.random.default_rng(seed))


def test_default_is_mcar_and_unchanged_by_the_option():
    df, truth = _cohort(DERIVATION)
    assert truth["missing"]["mechanism"] == "completely at random"
    assert "dxa_mar" not in truth["missing"]
    # an explicit "mcar" spec draws the same cohort
    df2, _ = _cohort(replace(DERIVATION, dxa_missing_mechanism="mcar"))
    assert df.equals(df2)
    miss = df["tscore_femoral_neck"].isna()
    # MCAR: the share missing hardly differs by outcome
    by_frac = miss.groupby(df["fracture_any"]).mean()
    assert abs(by_frac[1] - by_frac[0]) < 0.05


def test_mar_depends_on_age_sex_and_outcome():
    spec = replace(DERIVATION, dxa_missing_mechanism="mar")
    df, truth = _cohort(spec)
    base, _ = _cohort(DERIVATION)
    miss = df["tscore_femoral_neck"].isna()
    assert miss.mean() == pytest.approx(DERIVATION.dxa_missing, abs=0.02)
    assert (df["osteoporosis"].isna() == miss).all()
    by_frac = miss.groupby(df["fracture_any"]).mean()
    assert by_frac[1] - by_frac[0] > 0.2
    by_sex = miss.groupby(df["sex"]).mean()
    assert by_sex["M"] > by_sex["F"] + 0.05
    old = df["age_years"] > df["age_years"].median()
    assert miss[old].mean() > miss[~old].mean() + 0.05
    # only the missingness changed: the latent data and outcomes are those of the MCAR draw
    for col in ("age_years", "sex", "spine_age_years", "fracture_any", "fracture_any_years", "albumin_g_l"):
        assert df[col].equals(base[col])
    m = truth["missing"]
    assert m["dxa_mar"]["log_odds"] == {"age_per_10_years": 0.5, "male": 0.7, "fracture_any": 1.5}
    # the recorded intercept reproduces the missing probabilities: their mean is the planted share
    lin = (
        m["dxa_mar"]["intercept"]
        + 0.5 * (df["age_years"] - 65) / 10
        + 0.7 * (df["sex"] == "M")
        + 1.5 * df["fracture_any"]
    )
    assert (1 / (1 + np.exp(-lin))).mean() == pytest.approx(DERIVATION.dxa_missing, abs=1e-6)
    assert "missing at random" in truth["outcomes"]["fracture_any"]["covariate_notes"]["tscore_femoral_neck"]


def test_bad_mechanism():
    with pytest.raises(UserError):
        _cohort(replace(DERIVATION, dxa_missing_mechanism="mnar"), n=50)
    with pytest.raises(UserError):
        _cohort(replace(DERIVATION, dxa_missing_mechanism="mar", dxa_mar_log_odds={"bmi": 1.0}), n=50)
