"""The report's results, typed: one dataclass per section, held by ``StudyResults``.

The steps (``report.steps``) fill these; the document (``report.document``) reads their attributes.
Names of the output files (``tables/NAME.csv``, ``figures/data/NAME.csv``) and of the entries of
``results.json`` are decided in one place only: the ``tables()``/``curves()``/``numbers()`` methods of
each section, which ``StudyResults.tables``/``curves``/``numbers`` gather. Nothing here computes or
formats a statistic.

Import direction: ``results`` <- ``steps`` <- ``analyses`` (the runner) <- ``document``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from epi_spineage.report.config import StudyConfig
from epi_spineage.report.prepare import PreparedCohort
from epi_spineage.schema import OUTCOMES

log = logging.getLogger(__name__)

ROLES = ("derivation", "external")
GROUP_COLUMN = "group"
ACCEL_COLUMN = "accelerated"
ROC_OUTCOMES = ("prevalent_vf", "osteoporosis")
SPINE_PREDICTOR = "spine age"
AGE_PREDICTOR = "chronological age"


def _frame() -> pd.DataFrame:
    return pd.DataFrame()


def _nonempty(d: dict[str, Any]) -> dict[str, Any]:
    """Drop empty headline entries so that results.json holds only what was computed."""
    return {k: v for k, v in d.items() if v not in ({}, None)}


# ------------------------------------------------------------------------------------------ sections
@dataclass
class Table1Result:
    """Baseline characteristics by the KM outcome, stacked over cohorts (``cohort``, ``by`` columns)."""

    table: pd.DataFrame = field(default_factory=_frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table1": self.table}


@dataclass
class AgreementResult:
    """Pearson r of age and spine age, the PAD summary (uncorrected and corrected side by side), scatter data.

    ``scatter``: per cohort, counts in 1-year cells of (chronological age, spine age)
    (``report.plotdata.age_histogram``), never one row per participant; ``scatter_line``: intercept and
    slope of the least-squares line over all participants.
    """

    pearson: pd.DataFrame = field(default_factory=_frame)
    pad_summary: pd.DataFrame = field(default_factory=_frame)
    scatter: dict[str, pd.DataFrame] = field(default_factory=dict)
    scatter_line: dict[str, tuple[float, float]] = field(default_factory=dict)
    pearson_r: dict[str, float] = field(default_factory=dict)
    pad_mean_years: dict[str, float] = field(default_factory=dict)
    pad_sd_years: dict[str, float] = field(default_factory=dict)
    n_analysed: dict[str, int] = field(default_factory=dict)
    pad_used: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"agreement_pearson": self.pearson, "pad_summary": self.pad_summary}

    def curves(self) -> dict[str, pd.DataFrame]:
        return {f"scatter_{role}": f for role, f in self.scatter.items()}

    def numbers(self) -> dict[str, Any]:
        return _nonempty(
            {
                "pearson_r": self.pearson_r,
                "pad_mean_years": self.pad_mean_years,
                "pad_sd_years": self.pad_sd_years,
                "n_analysed": self.n_analysed,
                "pad_used": self.pad_used,
            }
        )


@dataclass
class DiscriminationResult:
    """AUROC of spine age vs chronological age (DeLong) for prevalent VF and osteoporosis; ROC curves."""

    table: pd.DataFrame = field(default_factory=_frame)
    roc: pd.DataFrame = field(default_factory=_frame)
    auroc: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"discrimination": self.table}

    def curves(self) -> dict[str, pd.DataFrame]:
        return {"roc": self.roc}

    def numbers(self) -> dict[str, Any]:
        return _nonempty({"auroc": self.auroc})


@dataclass
class GroupsKMResult:
    """The accelerated-ageing cut, the four age x acceleration groups, Kaplan-Meier, log-rank and group HRs."""

    tertile_cuts: pd.DataFrame = field(default_factory=_frame)
    cut_years: float = float("nan")
    cut_source: str = ""
    cut_rule: str = ">="
    median_age_years: dict[str, float] = field(default_factory=dict)
    group_counts: pd.DataFrame = field(default_factory=_frame)
    km_failure: pd.DataFrame = field(default_factory=_frame)
    logrank: pd.DataFrame = field(default_factory=_frame)
    group_hazard_ratios: pd.DataFrame = field(default_factory=_frame)
    km: pd.DataFrame = field(default_factory=_frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "tertile_cuts": self.tertile_cuts,
            "group_counts": self.group_counts,
            "km_failure": self.km_failure,
            "logrank": self.logrank,
            "group_hazard_ratios": self.group_hazard_ratios,
        }

    def curves(self) -> dict[str, pd.DataFrame]:
        return {"km": self.km}

    def numbers(self) -> dict[str, Any]:
        return _nonempty(
            {
                "accelerated_cut_years": self.cut_years,
                "accelerated_cut_source": self.cut_source,
                "accelerated_rule": f"PAD {self.cut_rule} cut",
                "median_age_years": self.median_age_years,
            }
        )


@dataclass
class CoxFamilyResult:
    """Cox models of one family (fracture or mortality): PAD per SD with each covariate set.

    ``hr_per_sd[role][outcome][model]`` holds the PAD row (estimate, CI, p, n, events, note);
    ``labels[(role, outcome, model)]`` the model's label when a covariate was dropped (constant).
    """

    family: str
    summary: pd.DataFrame = field(default_factory=_frame)
    c_index: pd.DataFrame = field(default_factory=_frame)
    ph_test: pd.DataFrame = field(default_factory=_frame)
    hr_per_sd: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    fits: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    dropped: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    #: the headline HR per SD with uncorrected and corrected PAD side by side (cohorts with a correction)
    pad_side_by_side: pd.DataFrame = field(default_factory=_frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        f = self.family
        return {
            f"cox_{f}": self.summary,
            f"c_index_{f}": self.c_index,
            f"ph_test_{f}": self.ph_test,
            f"cox_{f}_pad_side_by_side": self.pad_side_by_side,
        }

    def numbers(self) -> dict[str, Any]:
        return _nonempty({f"hr_per_sd_{self.family}": self.hr_per_sd})


@dataclass
class CoxFractureResult(CoxFamilyResult):
    family: str = "fracture"


@dataclass
class MortalityResult(CoxFamilyResult):
    """Mortality Cox models plus accelerated vs not (unadjusted and age- and sex-adjusted, external cohort)."""

    family: str = "mortality"
    accelerated: pd.DataFrame = field(default_factory=_frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {**super().tables(), "mortality_accelerated": self.accelerated}


@dataclass
class RatesResult:
    """Incidence per 1,000 person-years (overall, by accelerated, by group) and median follow-up."""

    incidence: pd.DataFrame = field(default_factory=_frame)
    followup: pd.DataFrame = field(default_factory=_frame)
    incidence_per_1000py: dict[str, float] = field(default_factory=dict)
    median_followup_years: dict[str, float] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"incidence_rates": self.incidence, "median_followup": self.followup}

    def numbers(self) -> dict[str, Any]:
        return _nonempty(
            {
                "incidence_per_1000py": self.incidence_per_1000py,
                "median_followup_years": self.median_followup_years,
                "events": self.events,
            }
        )


@dataclass
class CompetingResult:
    """Death as a competing risk of fracture.

    ``table``: Aalen-Johansen (death competing) vs 1 - KM at fixed times; ``cuminc``: the curves;
    ``gray``: Gray's test of equal cumulative incidence, accelerated vs not (one row per cohort);
    ``hazard_ratios``: per fracture outcome and cohort, the PAD row (per SD) of three models with the
    same covariates (``model``): Fine-Gray subdistribution HR, cause-specific Cox HR and the ordinary Cox
    HR (deaths censored), in the column ``estimator`` (``FINE_GRAY``, ``CAUSE_SPECIFIC``, ``ORDINARY_COX``),
    with ``n``, ``events``, ``n_competing`` and ``note`` (not estimable). ``fine_gray``: whether the
    config asked for the regressions (``hazard_ratios`` is empty when it did not).
    ``hr_per_sd[role][outcome][estimator]`` holds the estimate, CI, p, n and events (results.json).
    """

    table: pd.DataFrame = field(default_factory=_frame)
    cuminc: pd.DataFrame = field(default_factory=_frame)
    gray: pd.DataFrame = field(default_factory=_frame)
    hazard_ratios: pd.DataFrame = field(default_factory=_frame)
    fine_gray: bool = True
    hr_per_sd: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "competing_risk": self.table,
            "competing_risk_gray": self.gray,
            "competing_risk_hazard_ratios": self.hazard_ratios,
        }

    def curves(self) -> dict[str, pd.DataFrame]:
        return {"cuminc": self.cuminc}

    def numbers(self) -> dict[str, Any]:
        gray = {}
        if len(self.gray):
            gray = {str(r["cohort"]): float(r["p_value"]) for _, r in self.gray.iterrows()}
        return _nonempty({"competing_hr_per_sd": self.hr_per_sd, "gray_test_p_value": gray})


@dataclass
class ImputationResult:
    """Multiple imputation as a sensitivity analysis to the complete-case Cox models.

    ``comparison``: one row per cohort x outcome x model x ``analysis`` ("complete cases" or
    "multiple imputation"), the PAD row (HR per SD) with ``estimate, std_error, ci_low, ci_high,
    ci_level, p_value, n, events, note``; the imputed rows add ``m``, ``df`` (Barnard-Rubin), ``dfcom``
    (complete-data df: events - coefficients, as mice::pool for coxph) and ``fmi``. ``missing``: per
    cohort and imputed variable, ``n``, ``n_missing``, ``share_missing``. ``nothing_missing``: cohorts
    with no missing value in any model variable (nothing to impute; one line in the report).
    ``seconds[role]``: imputation and refits per cohort. ``enabled``: the config's
    ``multiple_imputation``. ``m``: the configured imputed sets; ``m_used[role]``: those used (fewer in a
    cohort of more than ``large_n`` rows, ``config.mi_imputations_large``).
    """

    comparison: pd.DataFrame = field(default_factory=_frame)
    missing: pd.DataFrame = field(default_factory=_frame)
    nothing_missing: list[str] = field(default_factory=list)
    m: int = 0
    m_used: dict[str, int] = field(default_factory=dict)
    large_n: int = 0
    seed: int = 0
    method: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    enabled: bool = True
    hr_per_sd: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"mi_comparison": self.comparison, "mi_missing": self.missing}

    def numbers(self) -> dict[str, Any]:
        out = _nonempty({"mi_hr_per_sd": self.hr_per_sd, "mi_seconds": self.seconds})
        if self.hr_per_sd:
            out.update({"mi_imputations": self.m_used, "mi_seed": self.seed})
        return out


@dataclass
class SubgroupResult:
    """HR per SD of PAD within women and men, with the interaction p value; ``n_tests`` p values shown."""

    table: pd.DataFrame = field(default_factory=_frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"subgroup_sex": self.table}


@dataclass
class FraxResult:
    """FRAX with spine age in place of age: reclassification, NRI, classification performance, AUROC.

    ``source`` is the provenance of the FRAX probabilities (``frax_source`` of the cohort), stated as is.
    """

    crosstab: pd.DataFrame = field(default_factory=_frame)
    reclassification: pd.DataFrame = field(default_factory=_frame)
    performance: pd.DataFrame = field(default_factory=_frame)
    nri: pd.DataFrame = field(default_factory=_frame)
    auroc: pd.DataFrame = field(default_factory=_frame)
    nri_total: dict[str, float] = field(default_factory=dict)
    n: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "frax_crosstab": self.crosstab,
            "frax_reclassification": self.reclassification,
            "frax_performance": self.performance,
            "frax_nri": self.nri,
            "frax_auroc": self.auroc,
        }

    def numbers(self) -> dict[str, Any]:
        out = _nonempty({"frax_nri_total": self.nri_total, "frax_n": self.n, "frax_source": self.source})
        if self.n:
            out["frax_notes"] = list(self.notes)
        return out


@dataclass
class AgeGapResult:
    """OLS of PAD on clinical factors, per cohort; ``dropped`` lists aliased/constant terms left out."""

    table: pd.DataFrame = field(default_factory=_frame)
    adj_r2: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"age_gap_regression": self.table}

    def numbers(self) -> dict[str, Any]:
        return _nonempty({"age_gap_adj_r2": self.adj_r2})


#: StudyResults attribute -> section type, in the study's order (the order of results.json)
SECTIONS: dict[str, type] = {
    "table1": Table1Result,
    "agreement": AgreementResult,
    "discrimination": DiscriminationResult,
    "groups": GroupsKMResult,
    "cox_fracture": CoxFractureResult,
    "mortality": MortalityResult,
    "rates": RatesResult,
    "competing": CompetingResult,
    "imputation": ImputationResult,
    "subgroups": SubgroupResult,
    "frax": FraxResult,
    "age_gap": AgeGapResult,
}


@dataclass
class StudyResults:
    """Everything the report shows, one typed attribute per section (``None`` until its step ran).

    ``tables``, ``curves`` and ``numbers`` are read-only views by output name (tables/NAME.csv,
    figures/data/NAME.csv, results.json) built from the sections.
    """

    config: StudyConfig
    cohorts: dict[str, PreparedCohort] = field(default_factory=dict)
    flow: pd.DataFrame = field(default_factory=_frame)
    data_quality: pd.DataFrame = field(default_factory=_frame)
    table1: Table1Result | None = None
    agreement: AgreementResult | None = None
    discrimination: DiscriminationResult | None = None
    groups: GroupsKMResult | None = None
    cox_fracture: CoxFractureResult | None = None
    mortality: MortalityResult | None = None
    rates: RatesResult | None = None
    competing: CompetingResult | None = None
    imputation: ImputationResult | None = None
    subgroups: SubgroupResult | None = None
    frax: FraxResult | None = None
    age_gap: AgeGapResult | None = None
    truth_table: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    truth: dict[str, Any] | None = None

    @property
    def roles(self) -> list[str]:
        return list(self.cohorts)

    def sections(self) -> list[Any]:
        return [s for s in (getattr(self, a) for a in SECTIONS) if s is not None]

    def cox(self, family: str) -> CoxFamilyResult | None:
        """The Cox results of ``family`` ("fracture" or "mortality")."""
        return self.cox_fracture if family == "fracture" else self.mortality

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {"cohort_flow": self.flow, "data_quality": self.data_quality}
        for s in self.sections():
            out.update(s.tables())
        if self.truth_table is not None and len(self.truth_table):
            out["truth_vs_estimate"] = self.truth_table
        return {k: v for k, v in out.items() if v is not None and (len(v) or len(v.columns))}

    @property
    def curves(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for s in self.sections():
            if hasattr(s, "curves"):
                out.update(s.curves())
        return {k: v for k, v in out.items() if v is not None and (len(v) or len(v.columns))}

    @property
    def numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in self.sections():
            if hasattr(s, "numbers"):
                out.update(s.numbers())
        out["n_warnings"] = len(self.warnings)
        return out

    def attach_truth(self, truth: dict[str, Any]) -> None:
        """Keep the simulator's planted values and add the truth-vs-estimate table."""
        from epi_spineage.report.truth import truth_table

        self.truth = truth
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = truth_table(truth, self)
            # a rare generating covariate can give an unbounded coefficient; note it, it is data, not a bug
            collect_warnings(self, "truth comparison", caught)
        except Exception as exc:  # the comparison is a courtesy; never lose the report over it
            log.warning("truth comparison failed: %s", exc)
            self.warnings.append(f"truth comparison skipped: {exc}")
            return
        if len(table):
            self.truth_table = table

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "numbers": self.numbers,
            "tables": self.tables,
            "warnings": list(self.warnings),
            "skipped": dict(self.skipped),
            "truth": self.truth,
            "timings_s": self.timings_s,
        }


# ------------------------------------------------------------------------------------------ helpers
def collect_warnings(results: StudyResults, where: str, caught) -> None:
    """Put the user-facing warnings a step raised into the data-quality section."""
    for w in caught:
        if issubclass(
            w.category, (RuntimeWarning, DeprecationWarning, FutureWarning, PendingDeprecationWarning)
        ) and not issubclass(w.category, UserWarning):
            # numpy floating-point and library-deprecation chatter is not a data problem
            log.debug("%s: %s", where, w.message)
            continue
        msg = f"{where}: {w.message}"
        if msg not in results.warnings:
            results.warnings.append(msg)


def tag(frame: pd.DataFrame, **cols) -> pd.DataFrame:
    """Prepend identifying columns (cohort, outcome, ...) to a tidy frame."""
    frame = frame.copy()
    for i, (k, v) in enumerate(cols.items()):
        if k in frame.columns:
            frame = frame.drop(columns=k)
        frame.insert(i, k, v)
    return frame


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def has_outcome(df: pd.DataFrame, outcome: str) -> bool:
    event, time_col = OUTCOMES.get(outcome, (outcome, f"{outcome}_years"))
    return event in df.columns and time_col in df.columns and df[event].notna().any()
