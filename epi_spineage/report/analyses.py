"""Runs every analysis of the study on the two cohorts and collects the results.

``run_study(derivation, external, config) -> StudyResults``: one typed result per section
(``report.results``), the data-quality log (exclusions, dropped terms, warnings, skipped analyses).
Nothing here formats or rounds; ``document`` does that.

A step that cannot run on a user's data (``AnalysisNotPossible`` or a ``UserError`` from the stats layer:
no events, an empty group, a missing column) is skipped and the reason goes to the data-quality section.
Any other exception is a programming error and propagates, so that the test suite sees it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from epi_spineage.errors import AnalysisNotPossible, UserError
from epi_spineage.progress import Progress
from epi_spineage.report import steps
from epi_spineage.report.config import StudyConfig
from epi_spineage.report.prepare import prepare_cohorts
from epi_spineage.report.results import (
    ACCEL_COLUMN,
    AGE_PREDICTOR,
    GROUP_COLUMN,
    ROC_OUTCOMES,
    ROLES,
    SPINE_PREDICTOR,
    StudyResults,
    collect_warnings,
    has_outcome,
)
from epi_spineage.schema import PAD_COLUMN

log = logging.getLogger(__name__)

#: the errors that mean "this analysis cannot run on these data"
DATA_ERRORS = (AnalysisNotPossible, UserError)


def _step(results: StudyResults, name: str, func: Callable[[], Any]) -> Any:
    """Run one analysis; a data problem skips it with a logged reason, a programming error propagates."""
    t0 = time.perf_counter()
    out = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = func()
        except DATA_ERRORS as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            results.skipped[name] = reason
            results.warnings.append(f"{name} skipped: {reason}")
            log.warning("%s skipped: %s", name, reason)
    collect_warnings(results, name, caught)
    results.timings_s[name] = time.perf_counter() - t0
    return out


def _data_quality(results: StudyResults, quality: pd.DataFrame) -> pd.DataFrame:
    """Exclusions (flow, per model for missing covariates), missing values, dropped terms, skipped analyses."""
    rows = list(quality.to_dict(orient="records"))
    for r in results.flow.itertuples(index=False):
        if r.n_excluded:
            rows.append({"cohort": r.cohort, "item": f"excluded: {r.reason}", "n": r.n_excluded, "detail": r.step})
    for role, c in results.cohorts.items():
        for col in (
            "spine_age_years",
            "tscore_femoral_neck",
            "osteoporosis",
            "height_cm",
            "albumin_g_l",
            "frax_mof_pct",
        ):
            if col in c.frame.columns:
                miss = int(c.frame[col].isna().sum())
                if miss:
                    rows.append(
                        {
                            "cohort": role,
                            "item": f"missing {col}",
                            "n": miss,
                            "detail": f"{100 * miss / c.n:.1f}% of analysed rows",
                        }
                    )
    for fam in ("fracture", "mortality"):
        cox = results.cox(fam)
        if cox is None:
            continue
        for r in cox.c_index.itertuples(index=False):
            if r.n_excluded:
                rows.append(
                    {
                        "cohort": r.cohort,
                        "item": f"Cox {fam} {r.model}, {r.outcome}: complete cases only",
                        "n": r.n_excluded,
                        "detail": "excluded for a missing covariate, time or event",
                    }
                )
        for (role, outcome, model), dropped in cox.dropped.items():
            rows.append(
                {
                    "cohort": role,
                    "item": f"Cox {fam} {model}, {outcome}: covariate(s) dropped",
                    "n": np.nan,
                    "detail": f"constant in the complete cases: {', '.join(dropped)}",
                }
            )
        summ = cox.summary
        if len(summ) and "note" in summ.columns:
            ne = summ[summ["note"].fillna("").astype(str).str.startswith("not estimable")]
            for (role, outcome, model), blk in ne.groupby(["cohort", "outcome", "model"], sort=False):
                rows.append(
                    {
                        "cohort": role,
                        "item": f"Cox {fam} {model}, {outcome}: not estimable",
                        "n": np.nan,
                        "detail": str(blk["note"].iloc[0]),
                    }
                )
    if results.age_gap is not None:
        reg = results.age_gap.table
        if len(reg):
            for role, blk in reg.groupby("cohort", sort=False):
                if blk["n_excluded"].iloc[0]:
                    rows.append(
                        {
                            "cohort": role,
                            "item": "age-gap regression: complete cases only",
                            "n": int(blk["n_excluded"].iloc[0]),
                            "detail": "excluded for a missing covariate",
                        }
                    )
        for role, dropped in results.age_gap.dropped.items():
            rows.append(
                {
                    "cohort": role,
                    "item": "age-gap regression: term(s) dropped",
                    "n": np.nan,
                    "detail": f"constant or aliased in the complete cases: {', '.join(dropped)}",
                }
            )
    if results.frax is not None:
        for role, v in results.frax.n.items():
            if v["n_excluded"]:
                rows.append(
                    {
                        "cohort": role,
                        "item": "FRAX: complete cases only",
                        "n": v["n_excluded"],
                        "detail": "missing a FRAX probability or the outcome",
                    }
                )
    for k, reason in results.skipped.items():
        rows.append({"cohort": "", "item": f"analysis skipped: {k}", "n": np.nan, "detail": reason})
    for w in results.warnings:
        if "not estimated" in w or "empty at this cut" in w or "one sex only" in w:
            rows.append({"cohort": "", "item": "not estimated", "n": np.nan, "detail": w})
    out = pd.DataFrame(rows, columns=["cohort", "item", "n", "detail"])
    # counts are whole numbers: a nullable integer column, so an item without a count does not turn the
    # others into floats ("800.0" in data_quality.csv)
    out["n"] = pd.to_numeric(out["n"], errors="coerce").round().astype("Int64")
    return out


def n_steps() -> int:
    """The steps ``run_study`` reports to its progress display: preparing the cohorts, then ``steps.STEPS``."""
    return 1 + len(steps.STEPS)


def run_study(
    derivation: pd.DataFrame | None,
    external: pd.DataFrame | None,
    config: StudyConfig | None = None,
    *,
    progress: Progress | None = None,
) -> StudyResults:
    """Run every analysis; either cohort may be None (its sections then show the other alone).

    Each step's time goes into ``results.timings_s`` and to ``progress`` (``epi_spineage.progress``:
    one line per step on a terminal, else one INFO summary line); without one, ``run_study`` makes
    its own ("analyses").
    """
    config = (config or StudyConfig()).validate()
    results = StudyResults(config=config)
    own = progress is None
    bar = Progress("analyses", total=n_steps(), unit="step", logger=log) if progress is None else progress
    try:
        t0 = time.perf_counter()
        with bar.step("prepare cohorts"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cohorts, flow, quality = prepare_cohorts(derivation, external, config)
        collect_warnings(results, "input", caught)
        if not cohorts:
            raise UserError("no cohort with spine ages to analyse")
        results.cohorts = cohorts
        results.flow = flow
        results.data_quality = quality
        results.timings_s["prepare"] = time.perf_counter() - t0

        for name, attr, func in steps.STEPS:
            with bar.step(name):
                setattr(results, attr, _step(results, name, partial(func, results)))
        results.data_quality = _data_quality(results, quality)
        results.timings_s["total"] = time.perf_counter() - t0
    finally:
        if own:
            bar.close()
    return results


__all__ = [
    "StudyResults",
    "run_study",
    "ROLES",
    "PAD_COLUMN",
    "has_outcome",
    "ACCEL_COLUMN",
    "GROUP_COLUMN",
    "ROC_OUTCOMES",
    "SPINE_PREDICTOR",
    "AGE_PREDICTOR",
]
