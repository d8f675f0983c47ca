"""Cohort simulator: schema, determinism, marginals near PUBLISHED, planted R^2, Beheshti, truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.schema import BINARY_COLUMNS, COHORT_COLUMN_NAMES, OUTCOMES, SYNTHETIC_NOTICE
from epi_spineage.synth import simulate_study
from epi_spineage.synth.cohort import DERIVATION, PAD_TERMS


def test_schema_columns_types_and_ids(study):
    for name, df, n, prefix in (("derivation", study.derivation, 10341, "D"), ("external", study.external, 3508, "E")):
        assert list(df.columns) == list(COHORT_COLUMN_NAMES)
        assert len(df) == n and df["participant_id"].is_unique
        assert df["participant_id"].str.fullmatch(prefix + r"\d{6}").all()
        assert (df["cohort"] == name).all()
        for col in BINARY_COLUMNS:
            assert pd.api.types.is_integer_dtype(df[col]), col
            assert set(df[col].dropna().unique()) <= {0, 1}, col
        assert set(df["sex"]) == {"F", "M"}
        for _, tcol in OUTCOMES.values():
            assert (df[tcol] > 0).all()
    assert study.derivation["age_years"].min() >= 40 and study.external["age_years"].min() >= 65
    assert study.derivation["age_years"].max() > 85
    assert (study.derivation["modality"] == "radiograph").all() and (study.external["modality"] == "vfa").all()


def test_derivation_split_is_60_20_20_and_external_has_none(study):
    counts = study.derivation["split"].value_counts()
    assert counts["train"] == round(0.6 * 10341) and counts["val"] == round(0.2 * 10341)
    assert counts["test"] == 10341 - counts["train"] - counts["val"]
    assert study.external["split"].isna().all()


def test_fracture_any_is_first_of_vertebral_and_nonvertebral(study):
    for df in (study.derivation, study.external):
        any_ = df["fracture_vertebral"] | df["fracture_nonvertebral"]
        assert (df["fracture_any"] == any_).all()
        ev_t = np.where(df["fracture_vertebral"] == 1, df["fracture_vertebral_years"], np.inf)
        ev_t = np.minimum(ev_t, np.where(df["fracture_nonvertebral"] == 1, df["fracture_nonvertebral_years"], np.inf))
        hit = df["fracture_any"] == 1
        np.testing.assert_allclose(df.loc[hit, "fracture_any_years"], ev_t[hit])
        # Without any fracture, every fracture outcome is censored at the same time.
        miss = ~hit
        np.testing.assert_allclose(df.loc[miss, "fracture_any_years"], df.loc[miss, "fracture_vertebral_years"])
        # A hip fracture is a non-vertebral fracture: the first non-vertebral comes no later.
        hip = df["fracture_hip"] == 1
        assert (df.loc[hip, "fracture_nonvertebral"] == 1).all()
        assert (df.loc[hip, "fracture_nonvertebral_years"] <= df.loc[hip, "fracture_hip_years"] + 1e-12).all()
        # Death ends fracture follow-up.
        dead = df["death"] == 1
        assert (df.loc[dead, "fracture_any_years"] <= df.loc[dead, "death_years"] + 1e-12).all()


def test_deterministic_per_seed_and_seed_matters():
    a = simulate_study(seed=5, n_derivation=600, n_external=400)
    b = simulate_study(seed=5, n_derivation=600, n_external=400)
    c = simulate_study(seed=6, n_derivation=600, n_external=400)
    pd.testing.assert_frame_equal(a.derivation, b.derivation)
    pd.testing.assert_frame_equal(a.external, b.external)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)
    assert not np.allclose(a.derivation["age_years"], c.derivation["age_years"])


def test_truth_is_json_and_complete(study):
    t = json.loads(json.dumps(study.truth))
    assert t["synthetic"] is True and t["notice"] == SYNTHETIC_NOTICE
    assert t["seed"] == 2025 and t["n"] == {"derivation": 10341, "external": 3508}
    for cohort in ("derivation", "external"):
        outs = t["cohorts"][cohort]["outcomes"]
        assert set(outs) == set(OUTCOMES)
        for o in outs.values():
            assert o["hr_per_sd_pad"] > 1 and "pad_years" in o["covariates"]
            assert o["log_hr_per_year_pad"] == pytest.approx(np.log(o["hr_per_sd_pad"]) / o["pad_sd_population"])
    # any fracture is the first of vertebral / non-vertebral, whose PAD effects differ (PUBLISHED Table 2,
    # model 1): its truth is the least-false HR, near the planted any-fracture HR
    d_out = t["cohorts"]["derivation"]["outcomes"]
    assert d_out["fracture_any"]["hr_per_sd_pad"] == pytest.approx(DERIVATION.fracture_hr_per_sd_pad, abs=0.05)
    assert d_out["fracture_any"]["least_false"]["exact_ph"] is False
    assert d_out["fracture_vertebral"]["hr_per_sd_pad"] == pytest.approx(DERIVATION.site_hr_per_sd_pad["vertebral"])
    assert d_out["fracture_vertebral"]["hr_per_sd_pad"] < d_out["fracture_nonvertebral"]["hr_per_sd_pad"]
    e_out = t["cohorts"]["external"]["outcomes"]
    assert e_out["fracture_vertebral"]["hr_per_sd_pad"] == pytest.approx(1.41)
    assert e_out["fracture_nonvertebral"]["hr_per_sd_pad"] == pytest.approx(1.20)
    assert e_out["fracture_hip"]["hr_per_sd_pad"] == pytest.approx(1.20)
    # Near PUBLISHED Table 2 (derivation 1.54-1.74, external 1.22-1.28) and Table 3 (death 1.31-1.32).
    assert 1.4 <= t["cohorts"]["derivation"]["outcomes"]["fracture_any"]["hr_per_sd_pad"] <= 1.8
    assert t["cohorts"]["external"]["outcomes"]["fracture_any"]["hr_per_sd_pad"] == pytest.approx(1.28, abs=0.03)
    assert t["cohorts"]["external"]["outcomes"]["death"]["hr_per_sd_pad"] == pytest.approx(1.32)
    assert t["cohorts"]["derivation"]["pad_model"]["r2_population"] == pytest.approx(0.40, abs=0.01)
    assert "bias_correction" in t["cohorts"]["external"]


def _close(x, target, tol):
    assert abs(x - target) <= tol, f"{x:.4f} not within {tol} of {target}"


def test_marginals_near_published(study):
    d, e = study.derivation, study.external
    _close((d["sex"] == "F").mean(), 0.643, 0.03)
    _close((e["sex"] == "F").mean(), 0.670, 0.03)
    _close(d["age_years"].mean(), 63.7, 1.5)
    _close(e["age_years"].mean(), 71.9, 1.0)
    _close(d["bmi"].mean(), 24.2, 0.4)
    for col, dv, ev, tol in (
        ("prevalent_vf", 0.172, 0.124, 0.03),
        ("prior_fracture", 0.069, 0.151, 0.03),
        ("prosthesis", 0.128, 0.035, 0.02),
        ("glucocorticoid", 0.048, 0.0026, 0.015),
        ("rheumatoid_arthritis", 0.031, 0.010, 0.01),
    ):
        _close(d[col].mean(), dv, tol)
        _close(e[col].mean(), ev, tol)
    _close(d["tscore_femoral_neck"].isna().mean(), 0.30, 0.02)
    assert e["tscore_femoral_neck"].notna().all()
    _close(d["tscore_femoral_neck"].mean(), -1.69, 0.25)
    _close(e["tscore_femoral_neck"].mean(), -1.97, 0.3)
    _close(d["tscore_lumbar"].mean(), -1.33, 0.3)
    _close(d["osteoporosis"].mean(), 0.38, 0.08)
    _close(d["fracture_any"].mean(), 0.122, 0.015)
    _close(e["fracture_any"].mean(), 0.135, 0.02)
    _close(d["death_years"].median(), 5.4, 0.5)
    _close(e["death_years"].median(), 6.6, 0.5)
    pad_d = d["spine_age_years"] - d["age_years"]
    pad_e = e["spine_age_years"] - e["age_years"]
    _close(pad_d.mean(), -0.8, 0.3)
    _close(pad_d.std(), 4.9, 0.3)
    _close(pad_e.mean(), -0.5, 0.5)
    _close(pad_e.std(), 8.0, 0.5)
    _close(np.corrcoef(d["age_years"], d["spine_age_years"])[0, 1], 0.88, 0.03)
    _close(np.corrcoef(e["age_years"], e["spine_age_years"])[0, 1], 0.50, 0.1)
    # Fracture cases are older, more often women and have more vertebral fractures (Table 1 direction).
    for df in (d, e):
        g = df.groupby("fracture_any")
        assert g["age_years"].mean()[1] > g["age_years"].mean()[0]
        assert g["prevalent_vf"].mean()[1] > g["prevalent_vf"].mean()[0]
        assert (df.loc[df.fracture_any == 1, "sex"] == "F").mean() > (df.loc[df.fracture_any == 0, "sex"] == "F").mean()


def test_age_gap_regression_recovers_planted_r2(study):
    d = study.derivation.dropna(subset=["tscore_femoral_neck"])
    pad = (d["spine_age_years"] - d["age_years"]).to_numpy()
    fn = d["tscore_femoral_neck"].to_numpy()
    x = np.column_stack(
        [
            np.ones(len(d)),
            d["age_years"],
            (d["sex"] == "M").astype(float),
            -d["height_cm"] / 5,
            d["diabetes"],
            d["prevalent_vf"],
            -(fn - fn.mean()) / fn.std(ddof=1),
            d["prosthesis"],
        ]
    )
    coef, *_ = np.linalg.lstsq(x, pad, rcond=None)
    r2 = 1 - np.var(pad - x @ coef) / np.var(pad)
    n, p = x.shape[0], x.shape[1] - 1
    adj = 1 - (1 - r2) * (n - 1) / (n - p - 1)
    planted = study.truth["cohorts"]["derivation"]["pad_model"]["r2_population"]
    assert abs(adj - planted) < 0.05
    # Planted effects come back (VF and prosthesis are the largest); generous 4-SE-like bounds.
    eff = study.truth["cohorts"]["derivation"]["pad_model"]["effects_years"]
    assert coef[5] == pytest.approx(eff["prevalent_vf"], abs=0.5)
    assert coef[7] == pytest.approx(eff["prosthesis"], abs=0.5)
    assert coef[2] == pytest.approx(eff["male"], abs=0.5)
    assert len(PAD_TERMS) == 6


def test_external_beheshti_correction_fitted_out_of_fold(study):
    e = study.external
    bc = study.truth["cohorts"]["external"]["bias_correction"]
    corrected = e["spine_age_years"] - (bc["alpha"] * e["age_years"] + bc["beta"])
    np.testing.assert_allclose(e["spine_age_corrected_years"], corrected)
    pad_c = e["spine_age_corrected_years"] - e["age_years"]
    r = np.corrcoef(pad_c, e["age_years"])[0, 1]
    assert abs(r) < 0.1  # roughly age-free ...
    in_sample_alpha = np.polyfit(e["age_years"], e["spine_age_years"] - e["age_years"], 1)[0]
    assert bc["alpha"] != pytest.approx(in_sample_alpha, abs=1e-9)  # ... but not fitted on this cohort
    assert bc["alpha"] < 0
    assert study.derivation["spine_age_corrected_years"].isna().all()


def test_frax_columns_allow_reclassification(study):
    d = study.derivation
    high = (d["frax_mof_pct"] >= 20) | (d["frax_hip_pct"] >= 3)
    high_s = (d["frax_mof_spine_pct"] >= 20) | (d["frax_hip_spine_pct"] >= 3)
    up, down = (~high & high_s).mean(), (high & ~high_s).mean()
    assert 0.005 < up < 0.08 and 0.02 < down < 0.15
    for col in ("frax_mof_pct", "frax_hip_pct", "frax_mof_spine_pct", "frax_hip_spine_pct"):
        assert d[col].between(0, 100).all()


def test_bad_sizes_raise_user_error():
    with pytest.raises(UserError):
        simulate_study(n_derivation=0)
    assert DERIVATION.make_split


def test_frax_surrogate_reference_values_and_clamp():
    from epi_spineage.synth.frax_surrogate import frax_surrogate

    mof, hip = frax_surrogate([65.0], female=[1], bmi=[24.0])
    assert mof[0] == pytest.approx(10.433, abs=0.01) and hip[0] == pytest.approx(1.712, abs=0.01)
    m90, h90 = frax_surrogate([90.0, 97.0, 30.0, 40.0], female=1, bmi=24.0)
    assert m90[0] == m90[1] and h90[0] == h90[1] and m90[2] == m90[3]  # clamped to 40..90
    base = frax_surrogate([70.0], female=[0], bmi=[24.0])
    risk = frax_surrogate([70.0], female=[0], bmi=[24.0], prior_fracture=[1], glucocorticoid=[1])
    assert risk[0][0] > base[0][0] and risk[1][0] > base[1][0]
    missing = frax_surrogate([70.0], female=[0], bmi=[np.nan], prior_fracture=[np.nan])
    assert missing[0][0] == pytest.approx(base[0][0])  # blank counts as "no", missing BMI as 24


def test_large_simulated_cohort_passes_validation():
    # The latent T-score tail once produced values below -8, which validation rightly refused.
    from epi_spineage.tables import validate_cohort

    study = simulate_study(seed=3, n_derivation=60000, n_external=5000)
    assert validate_cohort(study.derivation, raise_on_error=False) == []
    assert validate_cohort(study.external, raise_on_error=False) == []
