"""Human-readable names for columns, outcomes and terms shown in the report."""

from __future__ import annotations

import math
import re

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


#: column names of the tidy tables (CSV, results.json) in words, for table headers (XLSX, DOCX, HTML)
COLUMNS = {
    "cohort": "cohort",
    "outcome": "outcome",
    "model": "model",
    "analysis": "analysis",
    "term": "term",
    "estimate": "estimate",
    "log_hr": "log hazard ratio",
    "std_error": "standard error",
    "statistic": "statistic",
    "p_value": "p",
    "ci_low": "CI lower",
    "ci_high": "CI upper",
    "ci_level": "CI level",
    "scale": "scale",
    "sd": "SD",
    "n": "n",
    "events": "events",
    "n_excluded": "excluded (missing)",
    "method": "method",
    "note": "note",
    "step": "step",
    "reason": "reason",
    "item": "item",
    "detail": "detail",
    "by": "by",
    "variable": "variable",
    "level": "level",
    "group": "group",
    "mean": "mean",
    "count": "count",
    "percent": "percent",
    "test": "test",
    "n_missing": "n missing",
    "n_dropped": "n dropped",
    "pad": "PAD",
    "pad_mean_years": "PAD mean, y",
    "pad_sd_years": "PAD SD, y",
    "mae_years": "MAE, y",
    "rmse_years": "RMSE, y",
    "pearson_r": "Pearson r",
    "pad_column": "PAD column",
    "n_controls": "controls",
    "direction": "direction",
    "source": "source",
    "median_age_years": "median age, y",
    "time": "time, y",
    "n_at_risk": "number at risk",
    "df": "degrees of freedom",
    "groups": "groups",
    "n_group": "n in group",
    "events_group": "events in group",
    "concordance": "Harrell's C",
    "ph_global_p_value": "PH global p",
    "converged": "converged",
    "ties": "ties",
    "rho": "rho",
    "person_years": "person-years",
    "per_person_years": "per person-years",
    "q1": "first quartile",
    "q3": "third quartile",
    "method_label": "estimator",
    "cause": "cause",
    "competing_events": "competing events",
    "subgroup": "subgroup",
    "p_interaction": "p interaction",
    "interaction_df": "interaction df",
    "stratum": "stratum",
    "chronological": "FRAX with age",
    "spine": "FRAX with spine age",
    "observed_risk": "observed risk",
    "up": "up (low to high)",
    "down": "down (high to low)",
    "unchanged": "unchanged",
    "net_correct": "net correct",
    "r2": "R²",
    "adj_r2": "adjusted R²",
    "quantity": "quantity",
    "label": "label",
    "truth": "planted value",
    "covered": "inside CI",
    "software": "package",
    "version": "version",
    "setting": "setting",
    "value": "value",
    "p_delong": "p (DeLong)",
    "p_logrank": "p (log-rank)",
    "global_ph_p_value": "PH global p",
    # scoring QC (report --db)
    "run_id": "run",
    "status": "status",
    "model_id": "model",
    "device": "device",
    "started_at": "started",
    "finished_at": "finished",
    "n_seen": "images seen",
    "n_scored": "scored",
    "n_skipped_known": "already scored",
    "n_not_spine": "not a spine image",
    "n_duplicates": "duplicates",
    "error_type": "error",
    "modality": "modality",
    "manufacturer": "manufacturer",
    "mean_spine_age_years": "mean spine age, y",
    "sd_spine_age_years": "SD of spine age, y",
    "mean_prediction_sd_years": "mean prediction SD, y",
    "cohort_rows": "cohort rows",
    "with_score": "with a score",
    "scores": "scores",
    "images": "images",
    "study_month": "study month",
    "n_images": "images",
    "mean_spine_age_sd_years": "mean prediction SD, y",
    "n_with_age": "with age",
    "mean_pad_years": "mean PAD, y",
    "reference_start": "reference from",
    "reference_end": "reference to",
    "reference_spine_age_years": "reference spine age, y",
    "reference_pad_years": "reference PAD, y",
    "drift_metric": "drift measured on",
    "delta_years": "change, y",
    "bound_years": "bound, y",
    "drift_flag": "flagged",
    # competing risk and multiple imputation (issue 15)
    "estimator": "estimator",
    "n_competing": "competing events (death first)",
    "n_parameters": "model parameters",
    "comparison": "comparison",
    "family": "model family",
    "n_imputed": "rows with an imputed value",
    "m": "imputed sets",
    "dfcom": "complete-data df",
    "fmi": "fraction of missing information",
    "share_missing": "share missing",
}


def column(name: str) -> str:
    """A tidy column name in words: the map above, else the name's variable label, else spaces for '_'."""
    name = str(name)
    if name in COLUMNS:
        return COLUMNS[name]
    if name in VARIABLES:
        return VARIABLES[name]
    return name.replace("_", " ")


def humanize_columns(frame):
    """``frame`` with its column names in words (a copy; the values are untouched)."""
    return frame.rename(columns={c: column(c) for c in frame.columns})


VARIABLES.update(
    {
        "albumin_g_l": "serum albumin, g/L",
        "hemoglobin_g_dl": "haemoglobin, g/dL",
        "creatinine_mg_dl": "serum creatinine, mg/dL",
        "spine_age_sd_years": "prediction SD, y",
        "pad_raw_years": "PAD (uncorrected)",
        "pad_corrected_years": "PAD (bias-corrected)",
    }
)

#: row labels of the tidy tables that are identifiers in the data (terms of the FRAX NRI, ...)
TERMS = {
    "nri_events": "NRI among participants with fracture",
    "nri_nonevents": "NRI among participants without fracture",
    "nri_total": "NRI, total",
}

_SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\bsex\[[MF]\]")


def words(text: str) -> str:
    """Free text with every data identifier in it (``fracture_any``, ``tscore_femoral_neck``) in words."""

    def one(m: re.Match) -> str:
        name = m.group(0)
        for table in (OUTCOMES, TERMS, VARIABLES):
            if name in table:
                return table[name]
        return name.replace("_", " ")

    return _SNAKE.sub(one, str(text))


#: columns of a tidy table whose values are row labels (identifiers in the data)
_ROW_LABELS = {
    "cohort": cohort,
    "outcome": outcome,
    "term": lambda v: words(v),
    "variable": var,
    "item": lambda v: words(v),
    "detail": lambda v: words(v),
}


def humanize_cells(frame):
    """``frame`` with its row-label columns (cohort, outcome, term, variable, item, detail) in words (a copy)."""
    out = frame.copy()
    for col, fn in _ROW_LABELS.items():
        if col in out.columns and (out[col].dtype == object or str(out[col].dtype).startswith("string")):
            out[col] = [v if v is None or (isinstance(v, float) and math.isnan(v)) else fn(str(v)) for v in out[col]]
    return out
