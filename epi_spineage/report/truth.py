"""Synthetic demo only: the simulator's planted values beside what the pipeline estimates.

The comparison is made on the planted scale: the HR per SD of PAD is conditional on the outcome's
generating covariates and uses the population SD (``truth.json`` says so), so the estimate here is a
Cox fit with those covariates and that SD, not the models of the report's fracture Cox table. A reader
sees whether the pipeline recovers what was planted; the 95% CI should cover the truth about 95% of the
time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from epi_spineage import stats
from epi_spineage.report import labels as L
from epi_spineage.schema import OUTCOMES, PAD_COLUMN

COLUMNS = ["cohort", "quantity", "label", "truth", "estimate", "ci_low", "ci_high", "covered", "n", "method"]


def _row(cohort, quantity, label, truth, est, lo, hi, n, method) -> dict:
    covered = bool(lo <= truth <= hi) if all(np.isfinite([truth, lo, hi])) else None
    return {
        "cohort": cohort,
        "quantity": quantity,
        "label": label,
        "truth": float(truth),
        "estimate": float(est),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "covered": covered,
        "n": int(n),
        "method": method,
    }


def truth_table(truth: dict[str, Any], results) -> pd.DataFrame:
    rows: list[dict] = []
    level = results.config.ci_level
    planted = truth.get("cohorts", {})
    for role, prepared in results.cohorts.items():
        t = planted.get(role)
        if not t:
            continue
        df = prepared.frame
        # PAD distribution (uncorrected, as generated)
        pm = t.get("pad_model", {})
        raw = (df["spine_age_years"] - df["age_years"]).dropna().to_numpy(float)
        n = raw.size
        if n > 2 and "pad_mean_population" in pm:
            m, s = raw.mean(), raw.std(ddof=1)
            half = sps.t.ppf(0.5 + level / 2, n - 1) * s / math.sqrt(n)
            rows.append(
                _row(
                    role,
                    "pad_mean_years",
                    f"{L.cohort(role)}: PAD mean, y",
                    pm["pad_mean_population"],
                    m,
                    m - half,
                    m + half,
                    n,
                    "sample mean, t CI",
                )
            )
        if n > 2 and "pad_sd_population" in pm:
            s = raw.std(ddof=1)
            a = 1 - level
            lo = s * math.sqrt((n - 1) / sps.chi2.ppf(1 - a / 2, n - 1))
            hi = s * math.sqrt((n - 1) / sps.chi2.ppf(a / 2, n - 1))
            rows.append(
                _row(
                    role,
                    "pad_sd_years",
                    f"{L.cohort(role)}: PAD SD, y",
                    pm["pad_sd_population"],
                    s,
                    lo,
                    hi,
                    n,
                    "sample SD, chi-square CI",
                )
            )
        # HR per SD of PAD, on the planted scale and covariates
        for outcome, spec in t.get("outcomes", {}).items():
            analysed = results.config.fracture_outcomes + [results.config.mortality_outcome]
            if outcome not in OUTCOMES or outcome not in analysed:
                continue
            event, time_col = OUTCOMES[outcome]
            if event not in df.columns:
                continue
            corrected = prepared.pad_kind == "corrected" and "hr_per_sd_pad_corrected" in spec
            true_hr = spec["hr_per_sd_pad_corrected"] if corrected else spec.get("hr_per_sd_pad")
            sd = spec["pad_corrected_sd_population"] if corrected else spec.get("pad_sd_population")
            if true_hr is None or sd is None:
                continue
            covs = [c for c in spec.get("covariates", {}) if c != PAD_COLUMN and c in df.columns]
            try:
                res = stats.cox_per_sd(
                    df, time_col, event, PAD_COLUMN, covs, ties=results.config.ties, sd=float(sd), ci_level=level
                )
            except stats.cox.CoxModelError:
                continue
            r = res.summary[res.summary["term"] == PAD_COLUMN].iloc[0]
            rows.append(
                _row(
                    role,
                    f"hr_per_sd_{outcome}",
                    f"{L.cohort(role)}: HR per SD of PAD, {L.outcome(outcome)}",
                    true_hr,
                    r["estimate"],
                    r["ci_low"],
                    r["ci_high"],
                    res.n,
                    "Cox with the generating covariates, planted SD",
                )
            )
        # R² of the age-gap regression (derivation: uncorrected PAD)
        reg = results.age_gap.table if results.age_gap is not None else None
        if reg is not None and len(reg) and pm.get("r2_population") is not None and prepared.pad_kind == "uncorrected":
            blk = reg[reg["cohort"] == role]
            if len(blk):
                rows.append(
                    _row(
                        role,
                        "age_gap_r2",
                        f"{L.cohort(role)}: R² of the PAD regression",
                        pm["r2_population"],
                        blk["r2"].iloc[0],
                        np.nan,
                        np.nan,
                        blk["n"].iloc[0],
                        "OLS R² (no CI)",
                    )
                )
    return pd.DataFrame(rows, columns=COLUMNS)
