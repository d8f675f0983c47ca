"""``frax_surrogate_v1``: a documented stand-in for FRAX, which is proprietary and cannot be shipped.

It is NOT FRAX and must never be used for patients. It only gives the simulator two 10-year
probabilities (major osteoporotic fracture and hip) that behave like FRAX Korea without BMD
(rising with age, higher in women and after a prior fracture, lower with BMI), so that the
reclassification analysis (docs/methods.md#frax) can run on synthetic data.

Formula (``expit(x) = 1 / (1 + exp(-x))``; age clamped to 40..90 as the FRAX tool does)::

    a = clamp(age, 40, 90) - 65
    MOF% = 100 * expit(-2.75 + 0.065 a + 0.60 female - 0.030 (BMI - 24)
                       + 0.70 prior_fracture + 0.45 glucocorticoid + 0.30 rheumatoid_arthritis)
    hip% = 100 * expit(-4.60 + 0.110 a + 0.55 female - 0.100 (BMI - 24)
                       + 0.60 prior_fracture + 0.50 glucocorticoid + 0.30 rheumatoid_arthritis)

A missing yes/no counts as "no" (as in FRAX); a missing BMI is taken as 24 kg/m^2.
A 65-year-old woman with BMI 24 and no risk factor gets MOF 10.4% and hip 1.7%.
"""

from __future__ import annotations

import numpy as np

NAME = "frax_surrogate_v1"
AGE_RANGE = (40.0, 90.0)

#: (intercept, age per year from 65, female, BMI per kg/m^2 from 24, prior fracture, glucocorticoid, RA)
MOF_COEF = (-2.75, 0.065, 0.60, -0.030, 0.70, 0.45, 0.30)
HIP_COEF = (-4.60, 0.110, 0.55, -0.100, 0.60, 0.50, 0.30)


def _flag(x, n):
    if x is None:
        return np.zeros(n)
    arr = np.asarray(x, dtype=float)
    return np.nan_to_num(np.broadcast_to(arr, (n,)).astype(float), nan=0.0)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def frax_surrogate(
    age, female, bmi, prior_fracture=None, glucocorticoid=None, rheumatoid_arthritis=None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mof_pct, hip_pct)``, 10-year probabilities in percent, from the surrogate formula.

    ``age`` is clamped to 40..90 (spine age too, when it is passed in place of age).
    """
    age = np.atleast_1d(np.asarray(age, dtype=float))
    n = age.shape[0]
    a = np.clip(age, *AGE_RANGE) - 65.0
    fem = _flag(female, n)
    b = np.asarray(bmi if bmi is not None else np.full(n, 24.0), dtype=float)
    b = np.where(np.isfinite(b), b, 24.0) - 24.0
    pf, gc, ra = (_flag(v, n) for v in (prior_fracture, glucocorticoid, rheumatoid_arthritis))
    out = []
    for c in (MOF_COEF, HIP_COEF):
        lp = c[0] + c[1] * a + c[2] * fem + c[3] * b + c[4] * pf + c[5] * gc + c[6] * ra
        p = 100.0 * _expit(lp)
        out.append(np.where(np.isfinite(age), p, np.nan))
    return out[0], out[1]


def describe() -> dict:
    """The formula's coefficients, for truth.json and the README."""
    names = [
        "intercept",
        "age_per_year_from_65",
        "female",
        "bmi_per_unit_from_24",
        "prior_fracture",
        "glucocorticoid",
        "rheumatoid_arthritis",
    ]
    return {
        "name": NAME,
        "link": "logistic; probability in percent = 100 * expit(linear predictor)",
        "age_clamp_years": list(AGE_RANGE),
        "mof": dict(zip(names, MOF_COEF)),
        "hip": dict(zip(names, HIP_COEF)),
        "note": "not FRAX; a surrogate so the reclassification analysis can run on synthetic data",
    }
