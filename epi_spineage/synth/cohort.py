"""Cohort simulator: a hospital derivation cohort and a community external cohort with planted truth.

Generative story (every number lives in a :class:`CohortSpec`; ``truth`` records all of them):

1. Baseline covariates (age, sex, height, BMI, a latent femoral-neck T-score, the other T-scores,
   conditions from logistic models, biomarkers), shaped like the published Table 1.
2. PAD (predicted age difference, years) = alpha * (age - 65) + effects of male sex, height decrement,
   diabetes, prevalent VF, femoral-neck T-score decrement and prosthesis + intercept + Gaussian noise.
   alpha < 0 mimics a model's regression to the mean. In the derivation cohort alpha is solved so that
   the population R^2 of the age-gap regression (docs/methods.md#age-gap-regression) equals ``r2_target`` with PAD SD
   ``pad_sd``; in the external cohort alpha is fixed and the noise gives PAD SD ``pad_sd``.
   ``spine_age_years = clip(age + PAD, 40, 100)`` (the network's class range) and
   ``pad_years = spine_age_years - age_years`` is the PAD every outcome model uses.
3. Outcomes: Weibull proportional-hazards models, ``h(t|x) = lam * k * t^(k-1) * exp(x'beta)``.
   All fracture sites share the covariate coefficients (different baselines); the PAD coefficient is
   the vertebral one for vertebral fractures and the non-vertebral one for hip and other
   non-vertebral fractures (``site_hr_per_sd_pad``: the published model-1 contrast, vertebral 1.63 vs
   non-vertebral 1.92 in derivation and 1.41 vs 1.20 external, scaled around the planted any-fracture
   HR by ``published_site_hrs``). So vertebral, hip and non-vertebral (= first of hip / other) are each
   exactly PH with a known HR; any fracture (= first of vertebral / non-vertebral) is not exactly PH and
   its truth is the least-false Cox coefficient on a 200,000-participant reference draw. With
   ``site_hr_per_sd_pad=None`` every site has ``fracture_hr_per_sd_pad`` and all are exact. Death has its own model,
   is a competing event (it censors fractures), and everything is censored by administrative end
   of follow-up (uniform accrual) and loss to follow-up (exponential).
4. External cohort: ``spine_age_corrected_years`` by the Beheshti fit (PAD = a*age + b) on a separate
   simulated out-of-fold set drawn from the same generator with ages >= 40, never on the cohort itself.

5. Missing data: labs completely at random (``lab_missing``); DXA (the T-scores and osteoporosis) completely
   at random by default (``dxa_missing``), or, with ``dxa_missing_mechanism="mar"``, at random given the
   observed age, sex and any-fracture outcome (``dxa_mar_log_odds``; ``truth["missing"]["dxa_mar"]``), the
   case where complete-case Cox models are biased and multiple imputation is not.

6. Scanner manufacturers (off by default; ``simulate_study(manufacturers=ManufacturerShift(...))``): each
   participant's baseline image gets a manufacturer (``manufacturer`` column, drawn from its own random
   stream so every other column stays as without it), and the score carries a manufacturer-specific
   offset: ``spine_age_years = clip(age + PAD + score_offset[m], 40, 100)`` (the outcomes still follow
   the PAD without it: the offset is measurement error of the scanner, not biology). ``image_offsets_years``
   are for the phantom archive: images of manufacturer m are drawn as if spine age + offset
   (``write_phantom_archive(image_offsets_years=...)``). ``truth["manufacturers"]`` documents both.

Because PAD_corrected = PAD - a*age - b and age is a generating covariate, the per-year log-HR of PAD is
the same for raw and corrected PAD; the per-SD HRs differ only by the SD (both are in ``truth``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.schema import COHORT_COLUMN_NAMES, SYNTHETIC_NOTICE

# the functions, not the module through the package: the package rebinds the name frax_surrogate to the function
from epi_spineage.synth.frax_surrogate import describe as frax_describe
from epi_spineage.synth.frax_surrogate import frax_surrogate

log = logging.getLogger(__name__)

SPINE_AGE_RANGE = (40.0, 100.0)
_REFERENCE_N = 200_000
_REFERENCE_SEED = 20250101
#: PAD model terms, in the units of the age-gap regression (docs/methods.md#age-gap-regression).
PAD_TERMS = ("male", "height_dec5_cm", "diabetes", "prevalent_vf", "fn_tscore_dec_unit", "prosthesis")
FRACTURE_SITES = ("vertebral", "hip", "other_nonvertebral")


@dataclass(frozen=True)
class CohortSpec:
    """Every planted number of one simulated cohort."""

    name: str
    prefix: str
    modality: str
    age_min: float
    age_dist: tuple  # ("truncnorm", mean, sd, max) or ("shifted_gamma", shape, scale, max)
    female_share: float
    # Logistic targets (population prevalence); the intercepts are solved on a reference draw.
    prevalence: dict = field(default_factory=dict)
    fn_noise_sd: float = 1.1
    dxa_missing: float = 0.0
    lab_missing: float = 0.0
    # "mcar" (the demo): DXA missing completely at random with probability dxa_missing. "mar": missing
    # at random given observed age, sex and outcome, logit P = a + sum(dxa_mar_log_odds[k] * term_k),
    # terms (age - 65) / 10, male (0/1) and fracture_any (0/1); a is solved so that the cohort's
    # expected missing share equals dxa_missing (see _dxa_missing_probability).
    dxa_missing_mechanism: str = "mcar"
    dxa_mar_log_odds: dict = field(default_factory=lambda: dict(_DXA_MAR_LOG_ODDS))
    # PAD model.
    pad_effects: dict = field(default_factory=dict)  # per PAD_TERMS unit, years
    pad_mean: float = -0.8
    pad_sd: float = 4.9
    r2_target: float | None = 0.40  # derivation: solve alpha; external: None (alpha fixed)
    pad_age_slope: float | None = None
    # Outcomes: log-HR per natural unit, keyed by generating column.
    fracture_beta: dict = field(default_factory=dict)
    fracture_hr_per_sd_pad: float = 1.7
    fracture_share: float = 0.122  # observed share with a fracture (any)
    fracture_shape: float = 1.1
    site_share: dict = field(default_factory=lambda: {"vertebral": 0.45, "hip": 0.12, "other_nonvertebral": 0.43})
    # Site-specific HR per SD of PAD, {"vertebral": hr, "nonvertebral": hr} (hip and other non-vertebral
    # share the non-vertebral one, so non-vertebral stays exactly PH); None: every site has
    # fracture_hr_per_sd_pad. With two values, any fracture (the first of the two) is no longer exactly
    # PH and its truth is the large-sample (least-false) Cox coefficient on the reference draw.
    site_hr_per_sd_pad: dict | None = None
    death_beta: dict = field(default_factory=dict)
    death_hr_per_sd_pad: float = 1.3
    death_share: float = 0.06
    death_shape: float = 1.3
    admin_years: tuple[float, float] = (0.3, 10.7)  # uniform end of follow-up
    ltfu_rate: float = 0.02  # per year
    make_split: bool = False  # participant-level 60/20/20 train/val/test
    bias_correct: bool = False  # Beheshti-corrected spine age from a simulated out-of-fold fit


_DXA_MAR_LOG_ODDS: dict[str, float] = {"age_per_10_years": 0.5, "male": 0.7, "fracture_any": 1.5}


@dataclass(frozen=True)
class ManufacturerShift:
    """Scanner manufacturers with planted offsets (docs/methods.md#domain-shift; off unless given).

    shares : manufacturer name -> share of participants (normalised to sum to 1).
    score_offsets_years : manufacturer -> years added to the score (spine age) of its images; missing = 0.
    image_offsets_years : manufacturer -> years added to the spine age its phantom images are drawn
        with (read by ``write_phantom_archive``); missing = 0.
    """

    shares: dict = field(default_factory=lambda: dict(DEFAULT_MANUFACTURER_SHARES))
    score_offsets_years: dict = field(default_factory=dict)
    image_offsets_years: dict = field(default_factory=dict)

    def validate(self) -> ManufacturerShift:
        if not self.shares or any(not isinstance(v, (int, float)) or v < 0 for v in self.shares.values()):
            raise UserError("ManufacturerShift.shares: give each manufacturer a non-negative share")
        if sum(self.shares.values()) <= 0:
            raise UserError("ManufacturerShift.shares must not all be 0")
        for name in ("score_offsets_years", "image_offsets_years"):
            unknown = set(getattr(self, name)) - set(self.shares)
            if unknown:
                raise UserError(f"ManufacturerShift.{name}: unknown manufacturer(s) {', '.join(sorted(unknown))}")
        return self

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        names = list(self.shares)
        p = np.array([float(self.shares[k]) for k in names])
        return np.asarray(names, dtype=object)[rng.choice(len(names), size=n, p=p / p.sum())]

    def score_offset(self, manufacturer: np.ndarray) -> np.ndarray:
        return np.array([float(self.score_offsets_years.get(m, 0.0)) for m in manufacturer])

    def truth(self, manufacturer: np.ndarray) -> dict:
        total = sum(float(v) for v in self.shares.values())
        names, counts = np.unique(manufacturer, return_counts=True)
        return {
            "shares": {k: float(v) / total for k, v in self.shares.items()},
            "n": {str(k): int(c) for k, c in zip(names, counts)},
            "score_offsets_years": {k: float(self.score_offsets_years.get(k, 0.0)) for k in self.shares},
            "image_offsets_years": {k: float(self.image_offsets_years.get(k, 0.0)) for k in self.shares},
            "rule": "spine_age_years = clip(age + PAD + score_offset[manufacturer], 40, 100); outcomes follow "
            "the PAD without the offset (scanner measurement error); phantoms of manufacturer m are drawn "
            "with spine age + image_offset[m]; the manufacturer is drawn from its own random stream",
            "recovery": "stats.pad_shift_test finds the shift; a per-manufacturer bias correction fitted on a "
            "calibration set removes it (model.bias.ManufacturerBiasCorrection)",
        }


#: Synthetic manufacturer names (each says SYNTHETIC, as the phantom archive's do).
DEFAULT_MANUFACTURER_SHARES: dict[str, float] = {
    "SYNTHETIC PHANTOM CO": 0.5,
    "PHANTOMRAD (SYNTHETIC)": 0.3,
    "ACME IMAGING (SYNTHETIC)": 0.2,
}
MISSING_MECHANISMS = ("mcar", "mar")

# the published study's Table 2, model 1 (age, sex): HR per SD of PAD, overall and by fracture site.
PUBLISHED_MODEL1_HR = {
    "derivation": {"overall": 1.74, "vertebral": 1.63, "nonvertebral": 1.92},
    "external": {"overall": 1.28, "vertebral": 1.41, "nonvertebral": 1.20},
}


def published_site_hrs(any_hr: float, cohort: str) -> dict:
    """Site HRs with the published vertebral/non-vertebral contrast around a planted any-fracture HR:
    ``log HR_site = log(any_hr) * log(published site HR) / log(published overall HR)``, so the
    any-fracture HR stays near ``any_hr`` (the demo's other numbers stay put) while the sites differ
    as published. In the external cohort the planted any-fracture HR is the published 1.28, so the
    sites get the published 1.41 and 1.20 exactly."""
    pub = PUBLISHED_MODEL1_HR[cohort]
    scale = np.log(any_hr) / np.log(pub["overall"])
    return {k: float(np.exp(scale * np.log(pub[k]))) for k in ("vertebral", "nonvertebral")}


_FRACTURE_BETA = {
    "age_years": 0.055,
    "female": 0.60,
    "prevalent_vf": 0.55,
    "prior_fracture": 0.80,
    "glucocorticoid": 0.70,
    "rheumatoid_arthritis": 0.50,
    "tscore_femoral_neck": -0.30,
}
_DEATH_BETA = {
    "age_years": 0.13,
    "female": -1.25,
    "prevalent_vf": 0.40,
    "albumin_g_l": -0.05,
    "hemoglobin_g_dl": -0.16,
    "creatinine_mg_dl": 0.35,
}
_PAD_EFFECTS = {  # the published age-gap regression; FN per T-score unit (published per SD 1.2 -> 0.64)
    "male": 0.66,
    "height_dec5_cm": 0.31,
    "diabetes": 0.51,
    "prevalent_vf": 1.64,
    "fn_tscore_dec_unit": 0.53,
    "prosthesis": 1.15,
}

DERIVATION = CohortSpec(
    name="derivation",
    prefix="D",
    modality="radiograph",
    age_min=40.0,
    age_dist=("truncnorm", 63.5, 10.5, 95.0),
    female_share=0.645,
    prevalence={
        "prevalent_vf": 0.172,
        "prior_fracture": 0.069,
        "prosthesis": 0.128,
        "glucocorticoid": 0.048,
        "rheumatoid_arthritis": 0.031,
        "diabetes": 0.18,
    },
    fn_noise_sd=1.1,
    dxa_missing=0.30,
    lab_missing=0.08,
    pad_effects=_PAD_EFFECTS,
    pad_mean=-0.8,
    pad_sd=4.9,
    r2_target=0.40,
    fracture_beta=_FRACTURE_BETA,
    fracture_hr_per_sd_pad=1.55,
    fracture_share=0.122,
    site_hr_per_sd_pad=published_site_hrs(1.55, "derivation"),
    death_beta=_DEATH_BETA,
    death_hr_per_sd_pad=1.30,
    death_share=0.06,
    admin_years=(0.5, 11.6),
    ltfu_rate=0.01,
    make_split=True,
)

EXTERNAL = CohortSpec(
    name="external",
    prefix="E",
    modality="vfa",
    age_min=65.0,
    age_dist=("shifted_gamma", 2.2, 3.1, 95.0),
    female_share=0.67,
    prevalence={
        "prevalent_vf": 0.124,
        "prior_fracture": 0.151,
        "prosthesis": 0.035,
        "glucocorticoid": 0.0026,
        "rheumatoid_arthritis": 0.010,
        "diabetes": 0.22,
    },
    fn_noise_sd=0.82,
    dxa_missing=0.0,
    lab_missing=0.0,
    pad_effects=_PAD_EFFECTS,
    pad_mean=-0.5,
    pad_sd=8.0,
    r2_target=None,
    pad_age_slope=-0.18,
    fracture_beta=_FRACTURE_BETA,
    fracture_hr_per_sd_pad=1.28,
    fracture_share=0.135,
    site_hr_per_sd_pad=published_site_hrs(1.28, "external"),
    death_beta=_DEATH_BETA,
    death_hr_per_sd_pad=1.32,
    death_share=0.09,
    admin_years=(5.0, 8.8),
    ltfu_rate=0.008,
    bias_correct=True,
)

# Logistic slopes of the conditions (intercepts are calibrated to the prevalences above).
_LOGIT_SLOPES = {
    "diabetes": {"age_c": 0.03, "male": 0.25, "bmi_c": 0.10},
    "prevalent_vf": {"age_c": 0.06, "female": 0.30, "fn_c": -0.50},
    "prior_fracture": {"age_c": 0.035, "female": 0.30, "prevalent_vf": 0.80, "fn_c": -0.30},
    "prosthesis": {"age_c": 0.02, "prevalent_vf": 0.40},
    "rheumatoid_arthritis": {"female": 1.0, "age_c": 0.01},
    "glucocorticoid": {"rheumatoid_arthritis": 1.6, "age_c": 0.01},
}
_CONDITION_ORDER = (
    "diabetes",
    "prevalent_vf",
    "prior_fracture",
    "prosthesis",
    "rheumatoid_arthritis",
    "glucocorticoid",
)


@dataclass
class SimulatedStudy:
    """The two simulated cohorts and the planted parameters (``truth``, JSON-serialisable)."""

    derivation: pd.DataFrame
    external: pd.DataFrame
    truth: dict

    def write(self, out_dir, fmt: str = "parquet") -> dict[str, Path]:
        """Write ``derivation.<fmt>``, ``external.<fmt>`` (or one ``cohorts.duckdb``) and ``truth.json``."""
        return write_study(self, out_dir, fmt)


# ----------------------------------------------------------------------------- covariates
def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw_age(rng, n, spec):
    kind = spec.age_dist[0]
    out = np.empty(n)
    filled = 0
    while filled < n:
        m = int((n - filled) * 1.3) + 16
        if kind == "truncnorm":
            x = rng.normal(spec.age_dist[1], spec.age_dist[2], m)
        else:
            x = spec.age_min + rng.gamma(spec.age_dist[1], spec.age_dist[2], m)
        x = x[(x >= spec.age_min) & (x <= spec.age_dist[3])]
        k = min(len(x), n - filled)
        out[filled : filled + k] = x[:k]
        filled += k
    return out


def _draw_covariates(rng, n, spec, intercepts):
    """Complete (latent) covariates as a dict of arrays; missingness is applied later."""
    c: dict[str, Any] = {}
    age = _draw_age(rng, n, spec)
    female = (rng.random(n) < spec.female_share).astype(np.int64)
    male = 1 - female
    height = (
        np.where(female == 1, 156.0, 169.0) - 0.15 * (age - 60) + rng.normal(0, 1, n) * np.where(female == 1, 5.5, 6.0)
    )
    bmi = np.clip(rng.normal(24.1, 3.2, n), 15.0, 45.0)
    weight = bmi * (height / 100.0) ** 2
    fn = -1.65 - 0.03 * (age - 63) - 0.5 * (female - 0.645) + 0.08 * (bmi - 24) + rng.normal(0, spec.fn_noise_sd, n)
    c.update(
        age_years=age,
        female=female,
        male=male,
        height_cm=height,
        weight_kg=weight,
        bmi=bmi,
        tscore_femoral_neck=fn,
        tscore_lumbar=0.5 + 1.1 * fn + rng.normal(0, 1.3, n),
        tscore_total_hip=0.35 + 0.9 * fn + rng.normal(0, 0.5, n),
    )
    ctx = {"age_c": age - 65, "male": male, "female": female, "bmi_c": bmi - 24, "fn_c": fn + 1.7}
    for cond in _CONDITION_ORDER:
        lp = intercepts[cond] + sum(b * ctx[k] for k, b in _LOGIT_SLOPES[cond].items())
        ctx[cond] = c[cond] = (rng.random(n) < _expit(lp)).astype(np.int64)
    c["albumin_g_l"] = 42.0 - 0.08 * (age - 63) + rng.normal(0, 3.2, n)
    c["hemoglobin_g_dl"] = np.where(female == 1, 12.9, 14.3) - 0.02 * (age - 63) + rng.normal(0, 1.2, n)
    c["creatinine_mg_dl"] = np.where(female == 1, 0.72, 0.95) * np.exp(
        0.005 * (age - 63) + 0.1 * c["diabetes"] + rng.normal(0, 0.22, n)
    )
    return c


def _pad_design(c):
    return {
        "male": c["male"].astype(float),
        "height_dec5_cm": -c["height_cm"] / 5.0,
        "diabetes": c["diabetes"].astype(float),
        "prevalent_vf": c["prevalent_vf"].astype(float),
        "fn_tscore_dec_unit": -c["tscore_femoral_neck"],
        "prosthesis": c["prosthesis"].astype(float),
    }


def _pad_z(c, spec):
    d = _pad_design(c)
    return sum(spec.pad_effects[t] * d[t] for t in PAD_TERMS)


def _spine_age(c, pad_latent):
    spine = np.clip(c["age_years"] + pad_latent, *SPINE_AGE_RANGE)
    return spine, spine - c["age_years"]


def _weibull_times(rng, lam, shape, lp):
    e = rng.exponential(1.0, lp.shape[0])
    return (e / (lam * np.exp(lp))) ** (1.0 / shape)


def _lp(c, beta, pad, beta_pad):
    return sum(b * np.asarray(c[k], dtype=float) for k, b in beta.items()) + beta_pad * pad


# ----------------------------------------------------------------------------- calibration
def _site_beta_pad(spec: CohortSpec, pad_sd_pop: float) -> dict:
    """Per-year log-HR of PAD for each fracture site."""
    if spec.site_hr_per_sd_pad is None:
        b = float(np.log(spec.fracture_hr_per_sd_pad) / pad_sd_pop)
        return {s: b for s in FRACTURE_SITES}
    hrs = spec.site_hr_per_sd_pad
    if set(hrs) != {"vertebral", "nonvertebral"}:
        raise UserError("site_hr_per_sd_pad needs exactly the keys 'vertebral' and 'nonvertebral'")
    bv = float(np.log(hrs["vertebral"]) / pad_sd_pop)
    bnv = float(np.log(hrs["nonvertebral"]) / pad_sd_pop)
    return {"vertebral": bv, "hip": bnv, "other_nonvertebral": bnv}


def _any_fracture_least_false(c, pad, spec, lam, e, lp, end) -> dict:
    """Cox fit of any fracture on its generating covariates in the reference draw (n = 200,000).

    With different vertebral and non-vertebral PAD effects the first fracture's hazard is a sum of two
    log-linear hazards, not itself log-linear, so a Cox model of any fracture estimates the
    large-sample (least-false) coefficients, which depend on the censoring too; this fit, with the
    cohort's own censoring, is that target (its SE is recorded as the uncertainty of the truth).
    """
    from epi_spineage.stats._coxfit import fit_cox

    t = (e / (lam * np.exp(lp))) ** (1.0 / spec.fracture_shape)
    ev = (t <= end).astype(np.int64)
    time = np.where(ev == 1, t, end)
    names = ["pad_years", *spec.fracture_beta]
    X = np.column_stack([pad] + [np.asarray(c[k], dtype=float) for k in spec.fracture_beta])
    fit = fit_cox(X, time, ev, ties="breslow")
    se = np.sqrt(np.diag(fit.var))
    return {
        "coef": {k: float(b) for k, b in zip(names, fit.beta)},
        "se_pad": float(se[0]),
        "n_reference": int(len(time)),
        "events_reference": int(ev.sum()),
    }


_CAL_CACHE: dict[str, dict] = {}


def _calibrate(spec: CohortSpec) -> dict:
    # missingness plays no part in the calibration: specs differing only there share one
    key = repr(replace(spec, dxa_missing=0.0, lab_missing=0.0, dxa_missing_mechanism="mcar", dxa_mar_log_odds={}))
    if key not in _CAL_CACHE:
        _CAL_CACHE[key] = _calibrate_uncached(spec)
    return _CAL_CACHE[key]


def _calibrate_uncached(spec: CohortSpec) -> dict:
    """Solve nuisance constants (intercepts, alpha, noise SD, baseline rates) on a fixed reference draw.

    The reference draw uses its own seed, so the planted constants do not depend on the user's seed or n.
    """
    rng = np.random.default_rng(_REFERENCE_SEED)
    n = _REFERENCE_N
    # Condition intercepts: draw with zero intercepts for the linear predictor pieces, solve by Newton.
    intercepts = {k: 0.0 for k in _CONDITION_ORDER}
    for _ in range(3):  # conditions feed into each other; a few sweeps settle
        state = rng.bit_generator.state
        c = _draw_covariates(rng, n, spec, intercepts)
        rng.bit_generator.state = state
        ctx = {
            "age_c": c["age_years"] - 65,
            "male": c["male"],
            "female": c["female"],
            "bmi_c": c["bmi"] - 24,
            "fn_c": c["tscore_femoral_neck"] + 1.7,
            **c,
        }
        for cond in _CONDITION_ORDER:
            slope = sum(b * ctx[k] for k, b in _LOGIT_SLOPES[cond].items())
            a = intercepts[cond]
            for _ in range(50):
                p = _expit(a + slope)
                f = p.mean() - spec.prevalence[cond]
                a -= f / max((p * (1 - p)).mean(), 1e-12)
                if abs(f) < 1e-10:
                    break
            intercepts[cond] = float(a)
    c = _draw_covariates(rng, n, spec, intercepts)
    z = _pad_z(c, spec)
    age_c = c["age_years"] - 65.0
    if spec.r2_target is not None:
        va, vz, cov = age_c.var(), z.var(), np.cov(age_c, z)[0, 1]
        target = spec.r2_target * spec.pad_sd**2
        disc = cov**2 - va * (vz - target)
        if disc < 0:
            raise ValueError("r2_target too small for the planted PAD effects")
        alpha = float((-cov - np.sqrt(disc)) / va)  # the negative root: regression to the mean
    elif spec.pad_age_slope is not None:
        alpha = float(spec.pad_age_slope)
    else:
        raise ValueError("give r2_target or pad_age_slope")
    lp_pad = alpha * age_c + z
    noise_sd = float(np.sqrt(max(spec.pad_sd**2 - lp_pad.var(), 1e-6)))
    intercept = float(spec.pad_mean - lp_pad.mean())
    eps = rng.normal(0, noise_sd, n)
    spine, pad = _spine_age(c, lp_pad + intercept + eps)
    pad_sd_pop = float(pad.std(ddof=1))

    beta_pad_frac = float(np.log(spec.fracture_hr_per_sd_pad) / pad_sd_pop)
    beta_pad_death = float(np.log(spec.death_hr_per_sd_pad) / pad_sd_pop)
    # Censoring pieces with common random numbers so the root search is smooth.
    admin = rng.uniform(*spec.admin_years, n)
    ltfu = rng.exponential(1.0 / spec.ltfu_rate, n) if spec.ltfu_rate > 0 else np.full(n, np.inf)
    cens = np.minimum(admin, ltfu)
    e_death, e_frac = rng.exponential(1.0, n), rng.exponential(1.0, n)
    lp_death = _lp(c, spec.death_beta, pad, beta_pad_death)
    beta_pad_site = _site_beta_pad(spec, pad_sd_pop)
    if spec.site_hr_per_sd_pad is None:
        lp_frac = _lp(c, spec.fracture_beta, pad, beta_pad_frac)
    else:  # the first of independent site times: one Weibull with the summed site hazards
        mix = sum(spec.site_share[s] * np.exp(beta_pad_site[s] * pad) for s in FRACTURE_SITES)
        lp_frac = _lp(c, spec.fracture_beta, pad, 0.0) + np.log(mix)

    def share(lam, e, lp, shape, censor):
        t = (e / (lam * np.exp(lp))) ** (1.0 / shape)
        return float((t <= censor).mean())

    def solve(e, lp, shape, censor, target):
        lo, hi = -40.0, 10.0
        for _ in range(70):
            mid = 0.5 * (lo + hi)
            if share(np.exp(mid), e, lp, shape, censor) < target:
                lo = mid
            else:
                hi = mid
        return float(np.exp(0.5 * (lo + hi)))

    lam_death = solve(e_death, lp_death, spec.death_shape, cens, spec.death_share)
    t_death = (e_death / (lam_death * np.exp(lp_death))) ** (1.0 / spec.death_shape)
    lam_frac = solve(e_frac, lp_frac, spec.fracture_shape, np.minimum(cens, t_death), spec.fracture_share)
    any_least_false = None
    if spec.site_hr_per_sd_pad is not None:
        any_least_false = _any_fracture_least_false(c, pad, spec, lam_frac, e_frac, lp_frac, np.minimum(cens, t_death))
    # R^2 of the age-gap regression in the reference population (complete data, as planted).
    d = _pad_design(c)
    x = np.column_stack([np.ones(n), c["age_years"]] + [d[t] for t in PAD_TERMS])
    coef, *_ = np.linalg.lstsq(x, pad, rcond=None)
    resid = pad - x @ coef
    r2_pop = float(1.0 - resid.var() / pad.var())
    return {
        "intercepts": intercepts,
        "alpha": alpha,
        "noise_sd": noise_sd,
        "pad_intercept": intercept,
        "pad_sd_population": pad_sd_pop,
        "pad_mean_population": float(pad.mean()),
        "r2_population": r2_pop,
        "beta_pad_fracture": beta_pad_frac,
        "beta_pad_death": beta_pad_death,
        "lam_fracture": lam_frac,
        "lam_death": lam_death,
        "beta_pad_site": beta_pad_site,
        "any_fracture_least_false": any_least_false,
        "fn_sd_population": float(c["tscore_femoral_neck"].std(ddof=1)),
        "age_pad_coef_population": float(coef[1]),
        "moments": {
            "var_pad": float(pad.var(ddof=1)),
            "var_age": float(c["age_years"].var(ddof=1)),
            "cov_pad_age": float(np.cov(pad, c["age_years"])[0, 1]),
        },
    }


# ----------------------------------------------------------------------------- one cohort
def _simulate_latent(rng, n, spec, cal):
    c = _draw_covariates(rng, n, spec, cal["intercepts"])
    pad_latent = (
        cal["alpha"] * (c["age_years"] - 65.0)
        + _pad_z(c, spec)
        + cal["pad_intercept"]
        + rng.normal(0, cal["noise_sd"], n)
    )
    spine, pad = _spine_age(c, pad_latent)
    return c, spine, pad


def _outcomes(rng, c, pad, spec, cal):
    n = pad.shape[0]
    admin = rng.uniform(*spec.admin_years, n)
    ltfu = rng.exponential(1.0 / spec.ltfu_rate, n) if spec.ltfu_rate > 0 else np.full(n, np.inf)
    cens = np.minimum(admin, ltfu)
    lp_death = _lp(c, spec.death_beta, pad, cal["beta_pad_death"])
    t_death = _weibull_times(rng, cal["lam_death"], spec.death_shape, lp_death)
    if spec.site_hr_per_sd_pad is None:
        lp_frac = _lp(c, spec.fracture_beta, pad, cal["beta_pad_fracture"])
        lp_site = {s: lp_frac for s in FRACTURE_SITES}
    else:
        lp0 = _lp(c, spec.fracture_beta, pad, 0.0)
        lp_site = {s: lp0 + cal["beta_pad_site"][s] * pad for s in FRACTURE_SITES}
    site_t = {
        s: _weibull_times(rng, cal["lam_fracture"] * spec.site_share[s], spec.fracture_shape, lp_site[s])
        for s in FRACTURE_SITES
    }
    end = np.minimum(cens, t_death)  # death is a competing event: it ends fracture follow-up
    out = {}
    raw = {
        "fracture_vertebral": site_t["vertebral"],
        "fracture_hip": site_t["hip"],
        "fracture_nonvertebral": np.minimum(site_t["hip"], site_t["other_nonvertebral"]),
    }
    raw["fracture_any"] = np.minimum(raw["fracture_vertebral"], raw["fracture_nonvertebral"])
    for name, t in raw.items():
        ev = t <= end
        out[name] = ev.astype(np.int64)
        out[name + "_years"] = np.where(ev, t, end)
    dev = t_death <= cens
    out["death"] = dev.astype(np.int64)
    out["death_years"] = np.where(dev, t_death, cens)
    for k in list(out):
        if k.endswith("_years"):
            out[k] = np.maximum(out[k], 1.0 / 365.25)  # times must be > 0; a day is the floor
    return out


def _beheshti_fit(rng, spec, cal, n_oof=2000):
    """Fit PAD = a*age + b on a simulated out-of-fold set (ages >= 40, same generator)."""
    oof_spec = replace(spec, age_min=40.0, age_dist=("truncnorm", 63.5, 10.5, 95.0))
    c, _, pad = _simulate_latent(rng, n_oof, oof_spec, cal)
    a, b = np.polyfit(c["age_years"], pad, 1)
    return float(a), float(b), n_oof


def _split(rng, n):
    order = rng.permutation(n)
    n_train, n_val = int(round(0.6 * n)), int(round(0.2 * n))
    split = np.empty(n, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"
    return split


def _dxa_mar_terms(c, out):
    return {
        "age_per_10_years": (c["age_years"] - 65.0) / 10.0,
        "male": c["male"].astype(float),
        "fracture_any": out["fracture_any"].astype(float),
    }


def _dxa_mar_intercept(c, out, spec) -> float:
    """Intercept a with mean(expit(a + lin)) = dxa_missing in this cohort (bisection; the mean is monotone in a)."""
    terms = _dxa_mar_terms(c, out)
    lin = sum(float(spec.dxa_mar_log_odds.get(k, 0.0)) * v for k, v in terms.items())
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _expit(mid + lin).mean() < spec.dxa_missing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _dxa_missing_probability(c, out, spec):
    """P(DXA missing) per row: the constant ``dxa_missing`` (MCAR) or the MAR logistic model."""
    if spec.dxa_missing_mechanism not in MISSING_MECHANISMS:
        raise UserError(
            f"dxa_missing_mechanism must be one of {', '.join(MISSING_MECHANISMS)}, got {spec.dxa_missing_mechanism!r}"
        )
    if spec.dxa_missing_mechanism == "mcar" or spec.dxa_missing <= 0.0:
        return spec.dxa_missing
    unknown = set(spec.dxa_mar_log_odds) - {"age_per_10_years", "male", "fracture_any"}
    if unknown:
        raise UserError(f"dxa_mar_log_odds: unknown term(s) {', '.join(sorted(unknown))}")
    terms = _dxa_mar_terms(c, out)
    a = _dxa_mar_intercept(c, out, spec)
    return _expit(a + sum(float(spec.dxa_mar_log_odds.get(k, 0.0)) * v for k, v in terms.items()))


def _missing_truth(c, out, spec) -> dict:
    t = {"dxa_share": spec.dxa_missing, "labs_share": spec.lab_missing, "mechanism": "completely at random"}
    if spec.dxa_missing_mechanism == "mar" and spec.dxa_missing > 0.0:
        t["mechanism"] = (
            "DXA (T-scores, osteoporosis) missing at random given observed age, sex and the "
            "any-fracture outcome; labs completely at random"
        )
        t["dxa_mar"] = {
            "model": "logit P(DXA missing) = intercept + sum(log_odds[k] * term_k)",
            "terms": {
                "age_per_10_years": "(age_years - 65) / 10",
                "male": "1 if sex == 'M'",
                "fracture_any": "fracture_any (0/1), the observed outcome",
            },
            "log_odds": {k: float(v) for k, v in spec.dxa_mar_log_odds.items()},
            "intercept": _dxa_mar_intercept(c, out, spec),
            "intercept_rule": "solved so that the cohort's expected DXA-missing share equals dxa_share",
            "consequence": "complete-case Cox models that drop participants without DXA are biased; "
            "multiple imputation with the outcome in the imputation model is not",
        }
    return t


def _frame(c, spine, pad, out, spec, rng, corrected=None, split=None):
    n = spine.shape[0]
    df = pd.DataFrame(
        {
            "participant_id": [f"{spec.prefix}{i + 1:06d}" for i in range(n)],
            "cohort": spec.name,
            "split": split if split is not None else pd.Series([None] * n, dtype=object),
            "modality": spec.modality,
            "age_years": c["age_years"],
            "sex": np.where(c["female"] == 1, "F", "M"),
            "spine_age_years": spine,
            "spine_age_corrected_years": corrected if corrected is not None else np.nan,
            "height_cm": c["height_cm"],
            "weight_kg": c["weight_kg"],
            "bmi": c["bmi"],
        }
    )
    for k in ("diabetes", "prior_fracture", "prevalent_vf", "prosthesis", "glucocorticoid", "rheumatoid_arthritis"):
        df[k] = c[k].astype(np.int64)
    dxa_miss = rng.random(n) < _dxa_missing_probability(c, out, spec)  # one uniform per row either way
    for k in ("tscore_lumbar", "tscore_femoral_neck", "tscore_total_hip"):
        # Densitometers report T-scores within about +/-6; the latent normal tail would otherwise
        # leave a few values outside the schema's valid range and fail validation.
        df[k] = np.where(dxa_miss, np.nan, np.clip(c[k], -6.0, 6.0))
    tmin = df[["tscore_lumbar", "tscore_femoral_neck", "tscore_total_hip"]].min(axis=1, skipna=True)
    df["osteoporosis"] = pd.array(np.where(dxa_miss, pd.NA, (tmin <= -2.5).astype(int)), dtype="Int64")
    lab_miss = rng.random(n) < spec.lab_missing
    for k in ("albumin_g_l", "hemoglobin_g_dl", "creatinine_mg_dl"):
        df[k] = np.where(lab_miss, np.nan, c[k])
    for k in ("fracture_any", "fracture_vertebral", "fracture_nonvertebral", "fracture_hip", "death"):
        df[k] = out[k]
    for k in ("fracture_any", "fracture_vertebral", "fracture_nonvertebral", "fracture_hip", "death"):
        df[k + "_years"] = out[k + "_years"]
    args = dict(
        female=c["female"],
        bmi=c["bmi"],
        prior_fracture=c["prior_fracture"],
        glucocorticoid=c["glucocorticoid"],
        rheumatoid_arthritis=c["rheumatoid_arthritis"],
    )
    df["frax_mof_pct"], df["frax_hip_pct"] = frax_surrogate(c["age_years"], **args)
    spine_for_frax = corrected if corrected is not None else spine
    df["frax_mof_spine_pct"], df["frax_hip_spine_pct"] = frax_surrogate(spine_for_frax, **args)
    assert list(df.columns) == list(COHORT_COLUMN_NAMES)
    return df


_OUTCOME_SITE = {"fracture_vertebral": "vertebral", "fracture_hip": "hip", "fracture_nonvertebral": "hip"}


def _outcome_truth(spec, cal, kind, corrected_sd=None, outcome=None):
    beta = spec.fracture_beta if kind == "fracture" else spec.death_beta
    bpad = cal["beta_pad_fracture"] if kind == "fracture" else cal["beta_pad_death"]
    hr = spec.fracture_hr_per_sd_pad if kind == "fracture" else spec.death_hr_per_sd_pad
    exact = None
    if kind == "fracture" and spec.site_hr_per_sd_pad is not None:
        if outcome in _OUTCOME_SITE:  # each site (and hip + other non-vertebral) is exactly PH
            bpad = cal["beta_pad_site"][_OUTCOME_SITE[outcome]]
            hr = float(np.exp(bpad * cal["pad_sd_population"]))
        else:  # any fracture: the least-false Cox coefficients (see _any_fracture_least_false)
            lf = cal["any_fracture_least_false"]
            beta = {k: v for k, v in lf["coef"].items() if k != "pad_years"}
            bpad = lf["coef"]["pad_years"]
            hr = float(np.exp(bpad * cal["pad_sd_population"]))
            exact = {
                "exact_ph": False,
                "rule": "vertebral and non-vertebral PAD effects differ, so the hazard of the first fracture is "
                "their sum and not exactly PH; the coefficients are the large-sample Cox fit on the "
                "generating covariates in the reference draw (the least-false values)",
                "pad_log_hr_per_year_se": lf["se_pad"],
                "n_reference": lf["n_reference"],
                "events_reference": lf["events_reference"],
            }
    t = {
        "hr_per_sd_pad": hr,
        "log_hr_per_sd_pad": float(np.log(hr)),
        "log_hr_per_year_pad": bpad,
        "pad_sd_population": cal["pad_sd_population"],
        "covariates": {"pad_years": bpad, **{k: float(v) for k, v in beta.items()}},
        "covariate_notes": {
            "female": "1 if sex == 'F' else 0",
            "pad_years": "spine_age_years - age_years (uncorrected); the per-year coefficient is the same for "
            "the Beheshti-corrected PAD because age_years is a generating covariate",
            "tscore_femoral_neck": (
                "per T-score unit (missing completely at random where DXA is missing: fit complete cases)"
                if spec.dxa_missing_mechanism != "mar"
                else "per T-score unit (missing at random given age, sex and fracture outcome where "
                "DXA is missing, see missing.dxa_mar: complete cases are biased)"
            ),
        },
        "baseline": {
            "family": "weibull",
            "shape": spec.fracture_shape if kind == "fracture" else spec.death_shape,
            "rate": cal["lam_fracture"] if kind == "fracture" else cal["lam_death"],
            "hazard": "rate * shape * t**(shape-1) * exp(sum(coef * x))",
        },
    }
    if exact is not None:
        t["least_false"] = exact
    if corrected_sd is not None:
        t["pad_corrected_sd_population"] = corrected_sd
        t["hr_per_sd_pad_corrected"] = float(np.exp(bpad * corrected_sd))
    return t


def simulate_cohort(
    spec: CohortSpec,
    n: int,
    rng: np.random.Generator,
    *,
    manufacturers: ManufacturerShift | None = None,
    manufacturer_rng: np.random.Generator | None = None,
) -> tuple[pd.DataFrame, dict]:
    """One cohort table in the cohort schema and its truth dict (plus ``manufacturer`` when given)."""
    if n < 1:
        raise UserError(f"{spec.name}: n must be at least 1, got {n}")
    cal = _calibrate(spec)
    c, spine, pad = _simulate_latent(rng, n, spec, cal)
    out = _outcomes(rng, c, pad, spec, cal)
    man = None
    if manufacturers is not None:
        man = manufacturers.validate().draw(manufacturer_rng or np.random.default_rng(0), n)
        # the scanner's offset is in the score only: outcomes above followed the PAD without it
        spine = np.clip(spine + manufacturers.score_offset(man), *SPINE_AGE_RANGE)
    corrected = None
    beheshti = None
    corrected_sd = None
    split = None
    if spec.make_split:
        split = _split(rng, n)
    if spec.bias_correct:
        a, b, n_oof = _beheshti_fit(np.random.default_rng(rng.integers(2**63)), spec, cal)
        corrected = spine - (a * c["age_years"] + b)
        beheshti = {
            "alpha": a,
            "beta": b,
            "n_out_of_fold": n_oof,
            "method": "beheshti",
            "fitted_on": "simulated out-of-fold set (ages >= 40, same generator), not this cohort",
        }
        # Population SD of corrected PAD (= PAD - a*age - b) from the reference moments.
        m = cal["moments"]
        corrected_sd = float(np.sqrt(m["var_pad"] - 2 * a * m["cov_pad_age"] + a * a * m["var_age"]))
    df = _frame(c, spine, pad, out, spec, rng, corrected=corrected, split=split)
    if man is not None:
        df["manufacturer"] = man
    truth = {
        "n": int(n),
        "modality": spec.modality,
        "age_min_years": spec.age_min,
        "pad_model": {
            "formula": "PAD = alpha*(age-65) + sum(effect*term) + intercept + N(0, noise_sd^2); "
            "spine_age = clip(age + PAD, 40, 100); pad_years = spine_age - age",
            "alpha_age_per_year": cal["alpha"],
            "effects_years": dict(spec.pad_effects),
            "effect_units": {
                "male": "male vs female",
                "height_dec5_cm": "per 5 cm height decrement (-height/5)",
                "diabetes": "0/1",
                "prevalent_vf": "0/1",
                "fn_tscore_dec_unit": "per 1 T-score unit decrement (femoral neck)",
                "prosthesis": "0/1",
            },
            "fn_effect_per_sd_decrement": spec.pad_effects["fn_tscore_dec_unit"] * cal["fn_sd_population"],
            "intercept": cal["pad_intercept"],
            "noise_sd": cal["noise_sd"],
            "pad_mean_population": cal["pad_mean_population"],
            "pad_sd_population": cal["pad_sd_population"],
            "r2_target": spec.r2_target,
            "r2_population": cal["r2_population"],
            "r2_regression": "OLS of pad_years on age, sex, -height/5, diabetes, prevalent VF, FN T-score, prosthesis",
        },
        "outcomes": {
            **{
                o: _outcome_truth(spec, cal, "fracture", corrected_sd, o)
                for o in ("fracture_any", "fracture_vertebral", "fracture_nonvertebral", "fracture_hip")
            },
            "death": _outcome_truth(spec, cal, "death", corrected_sd),
        },
        "fracture_sites": {
            "baseline_share": dict(spec.site_share),
            "hr_per_sd_pad": (
                dict(spec.site_hr_per_sd_pad)
                if spec.site_hr_per_sd_pad is not None
                else {"all sites": spec.fracture_hr_per_sd_pad}
            ),
            "hr_rule": (
                "site HRs carry the published model-1 vertebral/non-vertebral contrast around "
                "the planted any-fracture HR (published_site_hrs)"
                if spec.site_hr_per_sd_pad is not None
                else "one HR for every site"
            ),
            "rule": "vertebral, hip and other non-vertebral are independent Weibull PH times sharing "
            "the covariate coefficients, with the site's PAD coefficient (hip and other "
            "non-vertebral share the non-vertebral one); nonvertebral = min(hip, other); "
            "any = min(vertebral, nonvertebral); death censors fractures (competing event)",
        },
        "targets": {
            "fracture_any_share": spec.fracture_share,
            "death_share": spec.death_share,
            "female_share": spec.female_share,
            "prevalence": dict(spec.prevalence),
        },
        "follow_up": {
            "administrative_uniform_years": list(spec.admin_years),
            "loss_to_follow_up_rate_per_year": spec.ltfu_rate,
        },
        "missing": _missing_truth(c, out, spec),
        "condition_logistic": {"intercepts": cal["intercepts"], "slopes": _LOGIT_SLOPES},
    }
    if beheshti is not None:
        truth["bias_correction"] = beheshti
    if man is not None:
        assert manufacturers is not None
        truth["manufacturers"] = manufacturers.truth(man)
    return df, truth


def simulate_study(
    seed: int = 2025,
    n_derivation: int = 10341,
    n_external: int = 3508,
    *,
    derivation_spec: CohortSpec = DERIVATION,
    external_spec: CohortSpec = EXTERNAL,
    manufacturers: ManufacturerShift | None = None,
) -> SimulatedStudy:
    """Simulate both cohorts. Deterministic for ``seed`` (each cohort has its own child stream).

    ``manufacturers``: scanner manufacturers with planted score offsets (a ``manufacturer`` column in
    both cohorts; ``truth["cohorts"][role]["manufacturers"]``). None (default): no such column, and
    every other column is the same either way (the manufacturers have their own random streams).

    Returns a :class:`SimulatedStudy` with ``.derivation``, ``.external`` (cohort-schema DataFrames)
    and ``.truth`` (every planted parameter; JSON-serialisable; ``synthetic: true``).
    """
    if int(n_derivation) < 1 or int(n_external) < 1:
        raise UserError("n_derivation and n_external must be at least 1")
    ss = np.random.SeedSequence(int(seed))
    rd, re_ = (np.random.default_rng(s) for s in ss.spawn(2))
    md = me = None
    if manufacturers is not None:  # spawned after the cohorts' streams, which stay as they were
        md, me = (np.random.default_rng(s) for s in ss.spawn(2))
    der, t_der = simulate_cohort(
        derivation_spec, int(n_derivation), rd, manufacturers=manufacturers, manufacturer_rng=md
    )
    ext, t_ext = simulate_cohort(external_spec, int(n_external), re_, manufacturers=manufacturers, manufacturer_rng=me)
    truth = {
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "generator": "epi_spineage.synth.cohort.simulate_study",
        "seed": int(seed),
        "n": {"derivation": int(n_derivation), "external": int(n_external)},
        "hr_scale": "HR per 1 SD of PAD (population SD), conditional on the outcome's generating covariates",
        "frax": frax_describe(),
        "frax_spine_age_source": {"derivation": "spine_age_years", "external": "spine_age_corrected_years"},
        "cohorts": {"derivation": t_der, "external": t_ext},
    }
    json.dumps(truth)  # fail early if anything is not serialisable
    return SimulatedStudy(der, ext, truth)


FORMATS = ("parquet", "csv", "duckdb")


def write_study(study: SimulatedStudy, out_dir, fmt: str = "parquet") -> dict[str, Path]:
    """Write the two tables and ``truth.json`` into ``out_dir``; returns the paths written."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if fmt == "duckdb":
        import duckdb

        p = out / "cohorts.duckdb"
        if p.exists():
            p.unlink()
        con = duckdb.connect(str(p))
        try:
            for name in ("derivation", "external"):
                frame = getattr(study, name)  # noqa: F841 (used by the SQL below)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        finally:
            con.close()
        paths["duckdb"] = p
    else:
        for name in ("derivation", "external"):
            p = out / f"{name}.{fmt}"
            frame = getattr(study, name)
            if fmt == "parquet":
                frame.to_parquet(p, index=False)
            else:
                frame.to_csv(p, index=False)
            paths[name] = p
    tp = out / "truth.json"
    tp.write_text(json.dumps(study.truth, indent=2, sort_keys=False) + "\n")
    paths["truth"] = tp
    return paths
