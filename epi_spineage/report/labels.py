"""Human-readable names for columns, outcomes and terms shown in the report."""

from __future__ import annotations

VARIABLES = {
    "age_years": "age, y",
    "spine_age_years": "predicted spine age, y",
    "spine_age_corrected_years": "bias-corrected spine age, y",
    "female": "women",
    "male": "men",
    "sex": "sex",
    "bmi": "BMI, kg/m²",
    "prior_fracture": "previous clinical fracture",
    "prevalent_vf": "morphometric vertebral fracture",
    "prosthesis": "surgical prosthesis in spine",
    "glucocorticoid": "chronic glucocorticoid use",
    "rheumatoid_arthritis": "rheumatoid arthritis",
    "diabetes": "diabetes",
    "tscore_lumbar": "T-score, lumbar spine",
    "tscore_femoral_neck": "T-score, femoral neck",
    "tscore_total_hip": "T-score, total hip",
    "osteoporosis": "osteoporosis",
    "height_dec5_cm": "height, per 5 cm decrement",
    "fn_tscore_dec": "femoral-neck T-score, per SD decrement",
    "albumin_dec": "serum albumin, per SD decrement",
    "hemoglobin_dec": "haemoglobin, per SD decrement",
    "creatinine_inc": "serum creatinine, per SD increment",
    "pad_years": "PAD",
    "sex[M]": "men vs women",
    "sex[F]": "women vs men",
    "(Intercept)": "intercept",
}

OUTCOMES = {
    "fracture_any": "any fracture",
    "fracture_vertebral": "vertebral fracture",
    "fracture_nonvertebral": "non-vertebral fracture",
    "fracture_hip": "hip fracture",
    "death": "death",
    "prevalent_vf": "prevalent vertebral fracture",
    "osteoporosis": "osteoporosis",
}

COHORTS = {"derivation": "derivation (test set)", "external": "external"}


def var(name: str) -> str:
    return VARIABLES.get(name, name.replace("_", " "))


def outcome(name: str) -> str:
    return OUTCOMES.get(name, name.replace("_", " "))


def cohort(name: str) -> str:
    return COHORTS.get(name, name)


def term(name: str, scale: str | None = None) -> str:
    """A Cox/OLS term with its scale: 'PAD, per SD', 'age, y, per unit' -> 'age, per year'."""
    if name == "pad_years":
        return "PAD, per SD" if (scale or "").startswith("per SD") else "PAD, per year"
    if name == "age_years":
        return "age, per year"
    if name.startswith("sex["):
        return VARIABLES.get(name, name)
    base = var(name)
    return base
