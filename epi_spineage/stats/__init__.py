"""Statistics of the spine-age study. Plain functions returning tidy pandas DataFrames.

Never imports torch. Names are loaded lazily so that importing one analysis does not pay for all.
"""

from __future__ import annotations

from epi_spineage._lazy import lazy_exports

# public name -> module (inside epi_spineage.stats) that defines it
_EXPORTS = {
    # discrimination / agreement
    "auc_ci": "discrimination",
    "delong_test": "discrimination",
    "roc_curve": "discrimination",
    "pearson": "agreement",
    "pad_summary": "agreement",
    # descriptive
    "table_one": "table1",
    # grouping
    "tertile_cuts": "grouping",
    "TertileCuts": "grouping",
    "accelerated": "grouping",
    "four_groups": "grouping",
    # regression
    "age_gap_regression": "regression",
    # FRAX
    "frax_reclassification": "frax",
    # survival
    "km_cumulative_failure": "survival",
    "km_curves": "survival",
    "logrank": "survival",
    "aalen_johansen": "survival",
    "incidence_rates": "survival",
    "median_followup": "survival",
    "cox_per_sd": "cox",
    "CoxResult": "cox",
    "group_hazard_ratios": "cox",
    "subgroup_hazard_ratios": "cox",
    "cox_model_set": "cox",
    "cause_specific_cox": "cox",
    "exposure_sd": "cox",
    "MODEL_COVARIATES": "cox",
    "CoxTermWarning": "cox",
    "gray_test": "survival",
    "competing_event_type": "survival",
    # one sort per outcome, shared by its models (issue 18)
    "prepare_survival": "_survdata",
    "survival_sharing": "_survdata",
    # competing risks, missing data, domain shift (issue 15)
    "fine_gray": "finegray",
    "FineGrayResult": "finegray",
    "impute_mice": "imputation",
    "MIData": "imputation",
    "pool_rubin": "imputation",
    "mi_cox_per_sd": "imputation",
    "agreement_by_group": "domain",
    "pad_shift_test": "domain",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
