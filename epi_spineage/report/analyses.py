"""Runs every analysis of the study on the two cohorts and collects the results.

``run_study(derivation, external, config) -> StudyResults``: one typed result per section
(``report.results``), the data-quality log (exclusions, dropped terms, warnings, skipped analyses).
Nothing here formats or rounds; ``document`` does that.

A step that cannot run on a user's data (``AnalysisNotPossible`` or a ``UserError`` from the stats layer:
no events, an empty group, a missing column) is skipped and the reason goes to the data-quality section.
Any other exception is a programming error and propagates, so that the test suite sees it.

With ``config.jobs`` > 1 (default "auto": two processes where two cores are usable) and a cohort of at
least ``parallel.PARALLEL_MIN_ROWS`` participants, the steps run in this process and one forked worker
(``report.parallel``); the results are the same as running them one after another.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from epi_spineage.errors import AnalysisNotPossible, UserError
from epi_spineage.progress import Progress
from epi_spineage.report import parallel, steps
from epi_spineage.report.config import StudyConfig, resolve_jobs
from epi_spineage.report.prepare import prepare_cohorts, release_free_memory
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


@dataclass
class StepOutcome:
    """What one step gave: its section result and what it added to the run's log, kept apart from
    ``StudyResults`` until ``merge`` so that steps run in any order (or in another process) give the
    results of running them one after another in the study's order.

    ``warnings``: the lines the step appended (its "skipped" line included), in order; ``caught``: the
    user-facing Python warnings it raised, as ``collect_warnings`` words them (added unless already
    listed, as ``collect_warnings`` does); ``skipped``, ``timings_s``: its entries."""

    name: str
    value: Any = None
    warnings: list[str] = field(default_factory=list)
    caught: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


#: the StudyResults fields a step may add to (through the view ``run_step`` gives it)
_LOG_FIELDS = ("warnings", "skipped", "timings_s")


def run_step(results: StudyResults, name: str, func: Callable[[StudyResults], Any]) -> StepOutcome:
    """Run one analysis on a view of ``results`` with an empty log; a data problem skips it with a
    reason, a programming error propagates. ``results`` itself is not changed (``merge`` does that)."""
    view = dataclasses.replace(results, warnings=[], skipped={}, timings_s={})
    t0 = time.perf_counter()
    out = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = func(view)
        except DATA_ERRORS as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            view.skipped[name] = reason
            view.warnings.append(f"{name} skipped: {reason}")
            log.warning("%s skipped: %s", name, reason)
    # a step's freed temporaries would otherwise stay in this process (glibc keeps ~0.15-0.2 GB at a
    # million rows per step) and raise the resident floor of every later step and of a forked worker
    release_free_memory()
    scratch = StudyResults(config=results.config)
    collect_warnings(scratch, name, caught)
    view.timings_s[name] = time.perf_counter() - t0
    changed = [
        f.name
        for f in dataclasses.fields(results)
        if f.name not in _LOG_FIELDS and getattr(view, f.name) is not getattr(results, f.name)
    ]
    if changed:  # cross-step state a parallel run could not carry: the steps' contract (steps.py) forbids it
        raise RuntimeError(f"analysis step {name!r} set results.{', results.'.join(changed)}; a step only returns")
    return StepOutcome(name, out, view.warnings, scratch.warnings, view.skipped, view.timings_s)


def merge(results: StudyResults, attr: str, outcome: StepOutcome) -> None:
    """Add one step's outcome to ``results``, as if the step had run on ``results`` itself."""
    setattr(results, attr, outcome.value)
    results.warnings.extend(outcome.warnings)
    for msg in outcome.caught:
        if msg not in results.warnings:
            results.warnings.append(msg)
    results.skipped.update(outcome.skipped)
    results.timings_s.update(outcome.timings_s)


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


def use_parallel(config: StudyConfig, cohorts: dict[str, Any]) -> bool:
    """Whether ``run_study`` runs the steps in two processes: ``jobs`` > 1, fork available (Linux), not
    inside a daemonic process (which may not have children), and a cohort big enough to pay for it."""
    if resolve_jobs(config.jobs) < 2 or not parallel.fork_available():
        return False
    if multiprocessing.current_process().daemon:
        return False
    return sum(c.n for c in cohorts.values()) >= parallel.PARALLEL_MIN_ROWS


def _run_parallel(results: StudyResults, bar: Progress) -> None:
    """The steps in two processes (``report.parallel``), merged in the study's order."""
    funcs = {name: func for name, _, func in steps.STEPS}
    attrs = {name: attr for name, attr, _ in steps.STEPS}
    lock = threading.Lock()

    def run(name: str, ready: dict[str, StepOutcome]) -> StepOutcome:
        # the step sees the sections of the steps it needs, as it would after them in a sequential run
        base = dataclasses.replace(results, **{attrs[d]: o.value for d, o in ready.items()}) if ready else results
        return run_step(base, name, funcs[name])

    def shown(name: str, outcome: StepOutcome) -> None:  # either thread, as each step finishes
        with lock:
            bar.record(name, outcome.timings_s.get(name, float("nan")))

    outcomes = parallel.run_parallel(results, list(funcs), run, shown)
    for name, attr, _ in steps.STEPS:
        merge(results, attr, outcomes[name])


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
    its own ("analyses"). ``config.jobs`` > 1 runs the steps in two processes (``use_parallel``); the
    results do not depend on it.
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

        if use_parallel(config, cohorts):
            _run_parallel(results, bar)
        else:
            for name, attr, func in steps.STEPS:
                with bar.step(name):
                    merge(results, attr, run_step(results, name, func))
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
