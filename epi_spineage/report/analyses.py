"""Runs every analysis of the study on the two cohorts and collects the results.

``run_study(derivation, external, config) -> StudyResults``: every table a tidy DataFrame (in the
order of the study), plot data for the figures, headline numbers in a JSON-serialisable dict, and the
data-quality log (exclusions and warnings). Nothing here formats or rounds; ``document`` does that.

One analysis failing on a user's data (a missing column, too few events) does not sink the report:
the step is skipped, and the reason goes to the data-quality section.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from epi_spineage import stats
from epi_spineage.errors import UserError
from epi_spineage.report.config import StudyConfig
from epi_spineage.report.prepare import PreparedCohort, prepare_cohorts
from epi_spineage.schema import OUTCOMES, PAD_COLUMN

log = logging.getLogger(__name__)

ROLES = ("derivation", "external")
GROUP_COLUMN = "group"
ACCEL_COLUMN = "accelerated"
ROC_OUTCOMES = ("prevalent_vf", "osteoporosis")
SPINE_PREDICTOR = "spine age"
AGE_PREDICTOR = "chronological age"


@dataclass
class StudyResults:
    """Everything the report shows. ``tables``: name -> tidy DataFrame (each becomes tables/NAME.csv
    and an entry of results.json). ``curves``: plot data (figures/data/NAME.csv). ``numbers``:
    headline numbers (JSON-serialisable). ``cohorts``: the analysed frames by role."""

    config: StudyConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    cohorts: dict[str, PreparedCohort] = field(default_factory=dict)
    cox: dict[tuple, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    truth: dict[str, Any] | None = None

    @property
    def roles(self) -> list[str]:
        return list(self.cohorts)

    def attach_truth(self, truth: dict[str, Any]) -> None:
        """Keep the simulator's planted values and add the truth-vs-estimate table."""
        from epi_spineage.report.truth import truth_table

        self.truth = truth
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = truth_table(truth, self)
            # a rare generating covariate can give an unbounded coefficient; note it, it is data, not a bug
            _collect_warnings(self, "truth comparison", caught)
        except Exception as exc:  # the comparison is a courtesy; never lose the report over it
            log.warning("truth comparison failed: %s", exc)
            self.warnings.append(f"truth comparison skipped: {exc}")
            return
        if len(table):
            self.tables["truth_vs_estimate"] = table

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "numbers": self.numbers,
            "tables": {k: v for k, v in self.tables.items()},
            "warnings": list(self.warnings),
            "skipped": dict(self.skipped),
            "truth": self.truth,
            "timings_s": self.timings_s,
        }


# ------------------------------------------------------------------------------------------------
def _collect_warnings(results: StudyResults, where: str, caught) -> None:
    for w in caught:
        if issubclass(w.category, (RuntimeWarning, DeprecationWarning, FutureWarning, PendingDeprecationWarning)) \
                and not issubclass(w.category, UserWarning):
            # numpy floating-point and library-deprecation chatter is not a data problem
            log.debug("%s: %s", where, w.message)
            continue
        msg = f"{where}: {w.message}"
        if msg not in results.warnings:
            results.warnings.append(msg)


def _step(results: StudyResults, name: str, func: Callable[[], None]) -> None:
    """Run one analysis; a user-data problem skips it with a logged reason instead of failing."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            func()
        except (UserError, ValueError, KeyError, np.linalg.LinAlgError, ZeroDivisionError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            results.skipped[name] = reason
            results.warnings.append(f"{name} skipped: {reason}")
            log.warning("%s skipped: %s", name, reason)
    _collect_warnings(results, name, caught)
    results.timings_s[name] = time.perf_counter() - t0


def _tag(frame: pd.DataFrame, **cols) -> pd.DataFrame:
    """Prepend identifying columns (cohort, outcome, ...) to a tidy frame."""
    frame = frame.copy()
    for i, (k, v) in enumerate(cols.items()):
        if k in frame.columns:
            frame = frame.drop(columns=k)
        frame.insert(i, k, v)
    return frame


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def has_outcome(df: pd.DataFrame, outcome: str) -> bool:
    event, time_col = OUTCOMES.get(outcome, (outcome, f"{outcome}_years"))
    return event in df.columns and time_col in df.columns and df[event].notna().any()


def _data_quality(results: StudyResults, quality: pd.DataFrame) -> pd.DataFrame:
    """Exclusions (flow, per model for missing covariates), missing values, skipped analyses, warnings."""
    rows = list(quality.to_dict(orient="records"))
    flow = results.tables.get("cohort_flow", pd.DataFrame())
    for r in flow.itertuples(index=False):
        if r.n_excluded:
            rows.append({"cohort": r.cohort, "item": f"excluded: {r.reason}", "n": r.n_excluded, "detail": r.step})
    for role, c in results.cohorts.items():
        for col in ("spine_age_years", "tscore_femoral_neck", "osteoporosis", "height_cm", "albumin_g_l",
                    "frax_mof_pct"):
            if col in c.frame.columns:
                miss = int(c.frame[col].isna().sum())
                if miss:
                    rows.append({"cohort": role, "item": f"missing {col}", "n": miss,
                                 "detail": f"{100 * miss / c.n:.1f}% of analysed rows"})
    for fam in ("fracture", "mortality"):
        ci = results.tables.get(f"c_index_{fam}", pd.DataFrame())
        for r in ci.itertuples(index=False):
            if r.n_excluded:
                rows.append({"cohort": r.cohort, "item": f"Cox {fam} {r.model}, {r.outcome}: complete cases only",
                             "n": r.n_excluded, "detail": "excluded for a missing covariate, time or event"})
    reg = results.tables.get("age_gap_regression", pd.DataFrame())
    if len(reg):
        for role, blk in reg.groupby("cohort", sort=False):
            if blk["n_excluded"].iloc[0]:
                rows.append({"cohort": role, "item": "age-gap regression: complete cases only",
                             "n": int(blk["n_excluded"].iloc[0]), "detail": "excluded for a missing covariate"})
    for role, v in results.numbers.get("frax_n", {}).items():
        if v["n_excluded"]:
            rows.append({"cohort": role, "item": "FRAX: complete cases only", "n": v["n_excluded"],
                         "detail": "missing a FRAX probability or the outcome"})
    for k, v in results.skipped.items():
        rows.append({"cohort": "", "item": f"analysis skipped: {k}", "n": np.nan, "detail": v})
    return pd.DataFrame(rows, columns=["cohort", "item", "n", "detail"])


# ------------------------------------------------------------------------------------------------
def run_study(derivation: pd.DataFrame | None, external: pd.DataFrame | None,
              config: StudyConfig | None = None) -> StudyResults:
    """Run every analysis; either cohort may be None (its sections then show the other alone)."""
    from epi_spineage.report import steps

    config = (config or StudyConfig()).validate()
    results = StudyResults(config=config)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohorts, flow, quality = prepare_cohorts(derivation, external, config)
    _collect_warnings(results, "input", caught)
    if not cohorts:
        raise UserError("no cohort with spine ages to analyse")
    results.cohorts = cohorts
    results.tables["cohort_flow"] = flow
    results.tables["data_quality"] = quality
    results.timings_s["prepare"] = time.perf_counter() - t0

    for name, func in steps.STEPS:
        _step(results, name, lambda func=func: func(results))
    results.tables["data_quality"] = _data_quality(results, quality)
    results.numbers.setdefault("n_warnings", len(results.warnings))
    results.timings_s["total"] = time.perf_counter() - t0
    return results


__all__ = ["StudyResults", "run_study", "ROLES", "PAD_COLUMN", "has_outcome"]
