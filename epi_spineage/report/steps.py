"""The analyses of the study, one function each, in the study's order (``STEPS``).

Each step reads the prepared cohorts from ``StudyResults`` and returns its typed section result
(``report.results``), which the runner stores on ``StudyResults``. Every stats call is the public
``epi_spineage.stats`` function with the conventions of ``StudyConfig``; the tests call the same
functions directly and compare.

Odd data (an empty group, one sex, no events, a constant covariate) never crash a step: a part that
cannot run raises or records ``AnalysisNotPossible``/``UserError`` and the reason goes to the
data-quality section. Anything else is a programming error and propagates.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from epi_spineage import stats
from epi_spineage.errors import AnalysisNotPossible, UserError
from epi_spineage.report import plotdata
from epi_spineage.report.config import MI_LARGE_N
from epi_spineage.report.results import (
    ACCEL_COLUMN,
    AGE_PREDICTOR,
    GROUP_COLUMN,
    ROC_OUTCOMES,
    SPINE_PREDICTOR,
    AgeGapResult,
    AgreementResult,
    CompetingResult,
    CoxFamilyResult,
    CoxFractureResult,
    DiscriminationResult,
    FraxResult,
    GroupsKMResult,
    ImputationResult,
    MortalityResult,
    RatesResult,
    StudyResults,
    SubgroupResult,
    Table1Result,
    concat,
    has_outcome,
    tag,
)
from epi_spineage.schema import OUTCOMES, PAD_COLUMN
from epi_spineage.stats._survdata import notna_mask
from epi_spineage.stats.grouping import REFERENCE_GROUP

#: the columns that hold uncorrected and corrected PAD beside the analysed one (docs/conventions.md#pad)
PAD_RAW, PAD_CORRECTED = "pad_raw_years", "pad_corrected_years"
NOT_ESTIMABLE = "not estimable"
_NUMBERS = ("estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high")
_DATA_ERRORS = (AnalysisNotPossible, UserError)


def _cut_kwargs(func: Callable, cfg) -> dict[str, Any]:
    """``cut_rule=`` where stats takes it (contract 3), else the older ``strict=``."""
    params = inspect.signature(func).parameters
    return {"cut_rule": cfg.cut_rule} if "cut_rule" in params else {"strict": cfg.cut_rule == ">"}


def _cox_kwargs(func: Callable, cfg) -> dict[str, Any]:
    """The events-per-parameter rule, passed where the stats function takes it (contract 1)."""
    if cfg.min_events_per_parameter is not None and "min_events_per_parameter" in inspect.signature(func).parameters:
        return {"min_events_per_parameter": cfg.min_events_per_parameter}
    return {}


def mark_not_estimable(
    summary: pd.DataFrame,
    events: int,
    rule: float | None,
    *,
    n_params: int | None = None,
    rows: pd.Series | None = None,
) -> pd.DataFrame:
    """Blank every number of a fit that is not estimable and say why in ``note`` (docs/methods.md#epv).

    Not estimable: fewer than ``min_events_per_parameter`` events per model parameter, or a
    non-finite standard error or confidence limit. Rows already marked by ``epi_spineage.stats``
    keep their note. ``n_params``: the model's parameters (default: one per row of ``summary``);
    ``rows`` limits the marking to some rows (e.g. not the reference row of a group contrast).
    """
    s = summary.copy()
    if "note" not in s.columns:
        s["note"] = None
    has_note = s["note"].fillna("").astype(str).str.startswith(NOT_ESTIMABLE)
    reason = None
    n_params = int(len(s)) if n_params is None else int(n_params)
    if rule is not None and n_params and events / n_params < rule:
        reason = f"{NOT_ESTIMABLE}: {events} event(s) for {n_params} parameter(s), fewer than {rule:g} per parameter"
    # rows stats already marked keep their note and are not checked again
    check = s.index[~has_note.to_numpy(bool) & (True if rows is None else rows.to_numpy(bool))]
    bad = pd.Series(False, index=s.index)
    for col in ("std_error", "ci_low", "ci_high"):
        if col in s.columns:
            v = pd.to_numeric(s.loc[check, col], errors="coerce")
            x = v.to_numpy(float)
            bad.loc[check] |= ~np.isfinite(x) | ((x == 0) if col == "std_error" else False)
    if reason is None and bad.any():
        reason = f"{NOT_ESTIMABLE}: infinite confidence interval or no standard error (separation or too few events)"
    if reason is not None:
        target = (~has_note) if rows is None else (~has_note & rows)
        for col in _NUMBERS:
            if col in s.columns:
                s.loc[target, col] = np.nan
        s.loc[target, "note"] = reason
    return s


def _usable_covariates(
    df: pd.DataFrame, time_col: str, event: str, exposure: str | None, covariates: list[str]
) -> tuple[list[str], tuple[str, ...]]:
    """Covariates that vary in the complete cases, and those dropped as constant (contract 2)."""
    cols = [c for c in [time_col, event, *([exposure] if exposure else []), *covariates] if c in df.columns]
    # the complete cases as a mask, each column tested once (no copy of the columns, no hash of every value)
    rows = np.logical_and.reduce([np.ones(len(df), dtype=bool), *(notna_mask(df[c]) for c in dict.fromkeys(cols))])
    keep, dropped = [], []
    for c in covariates:
        if c in df.columns and _varies(df[c], rows):
            keep.append(c)
        else:
            dropped.append(c)
    return keep, tuple(dropped)


def _varies(s: pd.Series, rows: np.ndarray) -> bool:
    """``s[rows].nunique() > 1`` (``rows`` hold no missing value) in O(n) without hashing: numbers by
    their min and max, a categorical by its codes, anything else against the first value."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        v = s.cat.codes.to_numpy()[rows]
    elif isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiub":
        v = s.to_numpy()[rows]
        if v.dtype.kind == "b":
            v = v.view(np.uint8)
    else:
        return bool(s[rows].nunique(dropna=True) > 1)
    return bool(len(v)) and bool(v.min() != v.max())


def dropped_label(model: str, dropped: tuple[str, ...]) -> str:
    """'model 1; sex dropped: constant in the complete cases (one sex only)'."""
    if not dropped:
        return model
    why = [f"{v} (one sex only)" if v in ("sex", "female", "male") else v for v in dropped]
    return f"{model}; dropped (constant in the complete cases): {', '.join(why)}"


_ACCEL_LABELS = {1.0: "accelerated", 0.0: "not accelerated"}


def columns_of(df: pd.DataFrame, columns: list[str], rows: np.ndarray, **labels: pd.Series) -> pd.DataFrame:
    """The ``rows`` (a boolean mask) of only ``columns`` of ``df``, plus each ``labels`` series as text.

    What a step hands to a stats function instead of a copy of the whole cohort: O(n k) time and
    memory for the k columns the function reads (the cohort has ~40). A label series (a group or
    accelerated flag) becomes text once, through its categories where it is categorical (and then
    stays a categorical of those texts, which the stats functions read through its codes instead of
    hashing every row), so the stats functions see the same string levels as before.
    """
    out = df.loc[rows, list(dict.fromkeys(c for c in columns if c not in labels))]
    for name, series in labels.items():
        kept = series[rows]
        names = [str(c) for c in kept.cat.categories] if isinstance(kept.dtype, pd.CategoricalDtype) else []
        if names and len(set(names)) == len(names):
            # kept categorical (its levels as text): the stats functions then hash nothing per row
            text = kept.cat.rename_categories(names)
        elif isinstance(kept.dtype, pd.CategoricalDtype):
            text = kept.cat.rename_categories([str(c) for c in kept.cat.categories]).astype(object)
        else:
            text = kept.astype(str) if not pd.api.types.is_string_dtype(kept) else kept
        out[name] = text.array if isinstance(text.dtype, pd.CategoricalDtype) else text.to_numpy()
    return out


def model_view(df: pd.DataFrame, columns) -> pd.DataFrame:
    """The ``columns`` of ``df`` (those it has) as a frame that shares their memory, a text column as a
    categorical of the same values.

    What a step hands to the Cox functions it calls many times on one cohort: pandas tests a text
    column for missing values and hashes it value by value on every call (about 40 ms at a million
    rows each time); as a categorical it is hashed once here, O(n), and then read through its codes.
    The models see the same text levels (``str`` of each category), so every number is the same. A
    column holding anything but text is left as it is.
    """
    out = {}
    for c in dict.fromkeys(columns):
        if c not in df.columns:
            continue
        s = df[c]
        if s.dtype == object:
            cat = s.astype("category")
            if all(type(v) is str for v in cat.cat.categories):
                s = cat
        out[c] = s
    return pd.DataFrame(out, copy=False)


def _levels_or_skip(df: pd.DataFrame, column: str, reference: str, event: str, what: str) -> None:
    """Raise ``AnalysisNotPossible`` unless ``column`` has the reference and one more non-empty level."""
    s = df[column].dropna()
    if isinstance(s.dtype, pd.CategoricalDtype) and all(type(c) is str for c in s.cat.categories):
        present = s.value_counts()  # counted by codes; the levels already are text
    else:
        present = s.astype(str).value_counts()
    present = present[present > 0]
    if reference not in present.index:
        raise AnalysisNotPossible(f"{what}: the reference group '{reference}' is empty")
    if len(present) < 2:
        raise AnalysisNotPossible(
            f"{what}: only the group '{reference}' has participants (the others are empty at this cut)"
        )
    if pd.to_numeric(df[event], errors="coerce").fillna(0).sum() == 0:
        raise AnalysisNotPossible(f"{what}: no events")


def _try(results: StudyResults, where: str, func: Callable[[], Any]) -> Any:
    """Run one part of a step; a data problem is recorded under ``where`` and gives ``None``."""
    try:
        return func()
    except _DATA_ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        results.warnings.append(f"{where}: not estimated ({reason})")
        return None


# ---------------------------------------------------------------------------------- Table 1
def table1(results: StudyResults) -> Table1Result:
    """Table 1 by incident fracture. Complexity: O(n v) for v variables (``stats.table_one``), no copy."""
    cfg = results.config
    frames = []
    for role, c in results.cohorts.items():
        df = c.frame
        by = OUTCOMES[cfg.km_outcome][0]
        if by not in df.columns or df[by].nunique(dropna=True) < 2:
            results.warnings.append(f"table 1 ({role}): no split by {by} (the outcome is absent or constant)")
            continue
        variables = [v for v in cfg.table1_variables if v in df.columns and df[v].notna().any()]
        t1 = _try(results, f"table 1 ({role})", lambda: stats.table_one(df, by=by, variables=variables))
        if t1 is not None:
            frames.append(tag(t1, cohort=role, by=by))
    return Table1Result(concat(frames))


# ---------------------------------------------------------------------------------- agreement
def _pad_columns(df: pd.DataFrame) -> dict[str, str]:
    """The uncorrected and (where it exists) corrected PAD columns of a cohort, by kind."""
    if PAD_RAW not in df.columns and "spine_age_years" in df.columns:
        df[PAD_RAW] = df["spine_age_years"] - df["age_years"]
    if PAD_CORRECTED not in df.columns and "spine_age_corrected_years" in df.columns:
        df[PAD_CORRECTED] = df["spine_age_corrected_years"] - df["age_years"]
    out = {}
    if PAD_RAW in df.columns and df[PAD_RAW].notna().sum() > 2:
        out["uncorrected"] = PAD_RAW
    if PAD_CORRECTED in df.columns and df[PAD_CORRECTED].notna().sum() > 2:
        out["corrected"] = PAD_CORRECTED
    return out


def agreement(results: StudyResults) -> AgreementResult:
    """Pearson r, PAD summaries and the age-scatter cells. Complexity: O(n) per cohort (the scatter is 1-year
    cells of counts, ``plotdata.age_histogram``). Memory: a few columns' temporaries (~0.07 GB at 1,000,000);
    the PAD columns ``tables.derive_variables`` made are read, a missing one is added to the cohort frame."""
    level = results.config.ci_level
    out = AgreementResult()
    rows, summaries = [], []
    for role, c in results.cohorts.items():
        df = c.frame
        if "spine_age_years" in df.columns and df["spine_age_years"].notna().sum() > 2:
            r = _try(
                results,
                f"agreement ({role})",
                lambda: stats.pearson(
                    df["age_years"],
                    df["spine_age_years"],
                    ci_level=level,
                    term="chronological age ~ spine age (uncorrected)",
                ),
            )
            if r is not None:
                rows.append(tag(r.to_frame(), cohort=role))
                out.pearson_r[role] = r.estimate
        ps = _try(results, f"PAD summary ({role})", lambda: stats.pad_summary(df, pad=PAD_COLUMN, ci_level=level))
        if ps is not None:
            summaries.append(tag(ps, cohort=role, pad=c.pad_kind, analysed=True))
        # the other PAD beside the analysed one, where a correction exists (issue 11 item 8)
        kinds = _pad_columns(df)
        if "corrected" in kinds:
            for kind, col in kinds.items():
                if kind == c.pad_kind:
                    continue
                other = _try(
                    results, f"PAD summary, {kind} ({role})", lambda: stats.pad_summary(df, pad=col, ci_level=level)
                )
                if other is not None:
                    summaries.append(tag(other, cohort=role, pad=kind, analysed=False))
        out.pad_mean_years[role] = float(df[PAD_COLUMN].mean())
        out.pad_sd_years[role] = float(df[PAD_COLUMN].std(ddof=1))
        out.n_analysed[role] = c.n
        out.pad_used[role] = c.pad_kind
        if "spine_age_years" in df.columns:  # plot data: 1-year cells, O(n) to count, bounded in size
            out.scatter[role] = plotdata.age_histogram(df["age_years"], df["spine_age_years"])
            out.scatter_line[role] = plotdata.least_squares_line(df["age_years"], df["spine_age_years"])
    out.pearson = concat(rows)
    out.pad_summary = concat(summaries)
    return out


# ---------------------------------------------------------------------------------- discrimination
def discrimination(results: StudyResults) -> DiscriminationResult:
    """AUROC of spine age vs chronological age for prevalent VF and osteoporosis, paired DeLong.

    Complexity: O(n log n) per outcome (DeLong placements and the ROC curve sort); the stored ROC curves
    are thinned to at most ~2/``plotdata.RESOLUTION`` points, whatever n. Memory: O(n), a few columns (the
    spine age, the outcome) and one sort's temporaries at a time: ~0.15 GB above the frame at 1,000,000
    rows (memray; 0.26 GB before issue 18's memory work); the cohort frame is read, not written.
    """
    level = results.config.ci_level
    out = DiscriminationResult()
    frames, curves = [], []
    for role, c in results.cohorts.items():
        df = c.frame
        spine = df["age_years"] + df[PAD_COLUMN]
        for outcome in ROC_OUTCOMES:
            if outcome not in df.columns or df[outcome].nunique(dropna=True) < 2:
                continue
            y = pd.to_numeric(df[outcome], errors="coerce").astype(float)
            res = _try(
                results,
                f"discrimination ({role}, {outcome})",
                lambda: stats.delong_test(
                    y, spine, df["age_years"], names=(SPINE_PREDICTOR, AGE_PREDICTOR), ci_level=level
                ),
            )
            if res is None:
                continue
            frames.append(tag(res.to_frame(), cohort=role, outcome=outcome))
            out.auroc.setdefault(role, {})[outcome] = {
                SPINE_PREDICTOR: res.auc_a.estimate,
                AGE_PREDICTOR: res.auc_b.estimate,
                "p_delong": res.p_value,
            }
            for pred, score in ((SPINE_PREDICTOR, spine), (AGE_PREDICTOR, df["age_years"])):
                roc = stats.roc_curve(y, score)
                curves.append(
                    tag(
                        plotdata.thin_steps(
                            roc[["fpr", "sensitivity"]].rename(columns={"sensitivity": "tpr"}), "fpr", "tpr"
                        ),
                        cohort=role,
                        outcome=outcome,
                        predictor=pred,
                    )
                )
    out.table = concat(frames)
    out.roc = concat(curves)
    return out


# ---------------------------------------------------------------------------------- groups and KM
def _cut_source(cfg, ref_role: str, ref) -> str:
    """Where the accelerated-ageing cut came from, in words, for every place the report states it."""
    if cfg.fixed_cut_years is not None:
        return "a fixed cut set in the study config"
    what = f"top tertile (quantile {cfg.tertile_method})"
    if ref_role != "derivation":
        return f"{what} of the {ref_role} cohort itself (there is no derivation cohort to learn it on)"
    split = cfg.derivation_split
    if split and "split" in ref.columns and len(ref) and (ref["split"] == split).all():
        return f"{what} of the derivation {split} set, applied unchanged to the other cohorts"
    return f"{what} of all derivation rows (no '{split}' split to learn it on), applied unchanged to the other cohorts"


def groups_km(results: StudyResults) -> GroupsKMResult:
    """Tertile cut from the derivation (test) set, applied to every cohort; four groups; KM; HRs.

    Complexity: O(n log n) per cohort (the tertile quantile, Kaplan-Meier, log-rank and one Cox fit of the
    group contrasts), on a 3-column frame of the analysed rows (``columns_of``), not a copy of the cohort;
    the stored curves are at event times only and thinned (``plotdata.compact_curve``).
    """
    cfg = results.config
    ref_role = "derivation" if "derivation" in results.cohorts else next(iter(results.cohorts))
    ref = results.cohorts[ref_role].frame
    if cfg.fixed_cut_years is not None:
        cut = stats.TertileCuts(float("nan"), float(cfg.fixed_cut_years), "fixed", 0, "config")
    else:
        cut = stats.tertile_cuts(
            ref[PAD_COLUMN], method=cfg.tertile_method, source=f"{ref_role} {cfg.derivation_split}".strip()
        )
    out = GroupsKMResult(
        tertile_cuts=cut.to_frame(),
        cut_years=cut.upper,
        cut_source=_cut_source(cfg, ref_role, ref),
        cut_rule=cfg.cut_rule,
    )
    event, time_col = OUTCOMES[cfg.km_outcome]
    km_at, km_full, lr, hrs, counts = [], [], [], [], []
    for role, c in results.cohorts.items():
        df = c.frame
        median_age = float(df["age_years"].median())
        out.median_age_years[role] = median_age
        df[GROUP_COLUMN] = stats.four_groups(df, age_median=median_age, cut=cut, **_cut_kwargs(stats.four_groups, cfg))
        df[ACCEL_COLUMN] = stats.accelerated(df[PAD_COLUMN], cut, **_cut_kwargs(stats.accelerated, cfg)).astype("float")
        cnt = df[GROUP_COLUMN].value_counts(sort=False).rename_axis("group").reset_index(name="n")
        counts.append(tag(cnt, cohort=role, median_age_years=median_age))
        empty = [g for g in cnt.loc[cnt["n"] == 0, "group"].astype(str)]
        if empty:
            results.warnings.append(
                f"four groups ({role}): empty at this cut (PAD {cfg.cut_rule} "
                f"{cut.upper:.2f} y): {', '.join(empty)}; accelerated-ageing comparisons "
                "involving them are not estimated"
            )
        if not has_outcome(df, cfg.km_outcome):
            continue
        # only the three columns Kaplan-Meier, log-rank and the group HRs read, not the whole cohort
        keep = (df[GROUP_COLUMN].notna() & df[time_col].notna() & df[event].notna()).to_numpy()
        sub = columns_of(df, [time_col, event], keep, **{GROUP_COLUMN: df[GROUP_COLUMN]})
        if not len(sub):
            continue
        tmax = float(sub[time_col].max())
        times = [t for t in cfg.km_times_years if t <= tmax]
        where = f"Kaplan-Meier ({role})"
        a = _try(
            results,
            where,
            lambda: stats.km_cumulative_failure(
                sub, time_col, event, group=GROUP_COLUMN, times=times, ci=cfg.km_ci, ci_level=cfg.ci_level
            ),
        )
        if a is not None:
            km_at.append(tag(a, cohort=role, outcome=cfg.km_outcome))
        f = _try(
            results,
            where,
            lambda: stats.km_curves(sub, time_col, event, group=GROUP_COLUMN, ci=cfg.km_ci, ci_level=cfg.ci_level),
        )
        if f is not None:  # plot data: event times only, thinned below a pixel (report.plotdata)
            km_full.append(tag(plotdata.compact_curve(f), cohort=role, outcome=cfg.km_outcome))
        if sub[GROUP_COLUMN].nunique() > 1:
            t = _try(results, f"log-rank ({role})", lambda: stats.logrank(sub, time_col, event, group=GROUP_COLUMN))
            if t is not None:
                lr.append(tag(t, cohort=role, outcome=cfg.km_outcome))
        h = _try(
            results, f"group hazard ratios ({role}, {cfg.km_outcome})", lambda: _group_hrs(sub, time_col, event, cfg)
        )
        if h is not None:
            hrs.append(tag(h, cohort=role, outcome=cfg.km_outcome))
    out.group_counts = concat(counts)
    out.km_failure = concat(km_at)
    out.logrank = concat(lr)
    out.group_hazard_ratios = concat(hrs)
    out.km = concat(km_full)
    return out


def _group_hrs(
    df: pd.DataFrame,
    time_col: str,
    event: str,
    cfg,
    *,
    column: str = GROUP_COLUMN,
    reference: str = REFERENCE_GROUP,
    covariates: tuple[str, ...] = (),
) -> pd.DataFrame:
    sub = columns_of(df, [time_col, event, *covariates], df[column].notna().to_numpy(), **{column: df[column]})
    _levels_or_skip(sub, column, reference, event, f"hazard ratios by {column}")
    res = stats.group_hazard_ratios(
        sub,
        time_col,
        event,
        column,
        reference,
        ties=cfg.ties,
        ci_level=cfg.ci_level,
        covariates=list(covariates),
        **_cox_kwargs(stats.group_hazard_ratios, cfg),
    )
    events = int(pd.to_numeric(sub[event], errors="coerce").fillna(0).sum())
    # the parameters are the group contrasts plus the covariates; the reference row has no CI by design
    n_par = sub[column].nunique() - 1 + len(covariates)
    return mark_not_estimable(
        res, events, cfg.min_events_per_parameter, n_params=n_par, rows=res["scale"].ne("reference")
    )


# ---------------------------------------------------------------------------------- Cox
_Family = TypeVar("_Family", bound=CoxFamilyResult)


def _fit_models(results: StudyResults, out: _Family, outcomes: list[str], models: dict[str, list[str]]) -> _Family:
    cfg = results.config
    family = out.family
    summaries, cindex, ph = [], [], []
    for role, c in results.cohorts.items():
        full = c.frame
        sd = float(full[PAD_COLUMN].std(ddof=1))
        used = [PAD_COLUMN, *(v for covs in models.values() for v in covs)]
        df = model_view(full, [*used, *(col for o in outcomes for col in OUTCOMES[o])])
        for outcome in outcomes:
            if not has_outcome(full, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            for model, covs in models.items():
                absent = [v for v in covs if v not in df.columns or df[v].isna().all()]
                if absent:
                    results.warnings.append(
                        f"{family} {model} ({role}, {outcome}) not fitted: no {', '.join(absent)} in the data"
                    )
                    continue
                use, dropped = _usable_covariates(df, time_col, event, PAD_COLUMN, list(covs))
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", UserWarning)
                        res = stats.cox_per_sd(
                            df,
                            time_col,
                            event,
                            PAD_COLUMN,
                            use,
                            ties=cfg.ties,
                            sd=sd,
                            ci_level=cfg.ci_level,
                            model=model,
                            analysis=f"cox_{family}",
                            **_cox_kwargs(stats.cox_per_sd, cfg),
                        )
                except _DATA_ERRORS as exc:  # one model failing keeps the others
                    results.warnings.append(f"{family} {model} ({role}, {outcome}) not fitted: {exc}")
                    continue
                for w in caught:  # say which model a convergence warning belongs to
                    if issubclass(w.category, UserWarning):
                        results.warnings.append(f"{family} {model} ({role}, {outcome}): {w.message}")
                    else:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                dropped = tuple(dict.fromkeys([*dropped, *getattr(res, "dropped_terms", ())]))
                if dropped:
                    out.dropped[(role, outcome, model)] = dropped
                    results.warnings.append(
                        f"{family} {model} ({role}, {outcome}): {dropped_label(model, dropped).split('; ', 1)[1]}"
                    )
                summary = mark_not_estimable(res.summary, int(res.events), cfg.min_events_per_parameter)
                out.fits[(role, outcome, model)] = res
                tags = dict(cohort=role, outcome=outcome, model=model)
                summaries.append(tag(summary.assign(model_label=dropped_label(model, dropped)), **tags))
                glob = res.ph_test.loc[res.ph_test["term"] == "GLOBAL", "p_value"]
                cindex.append(
                    {
                        **tags,
                        "analysis": f"cox_{family}",
                        "concordance": res.concordance,
                        "n": res.n,
                        "events": res.events,
                        "n_excluded": res.n_excluded,
                        "ph_global_p_value": float(glob.iloc[0]) if len(glob) else np.nan,
                        "converged": res.converged,
                        "ties": res.ties,
                    }
                )
                ph.append(tag(res.ph_test, **tags))
                pad_row = summary[summary["term"] == PAD_COLUMN].iloc[0]
                out.hr_per_sd.setdefault(role, {}).setdefault(outcome, {})[model] = {
                    "estimate": pad_row["estimate"],
                    "ci_low": pad_row["ci_low"],
                    "ci_high": pad_row["ci_high"],
                    "p_value": pad_row["p_value"],
                    "n": int(res.n),
                    "events": int(res.events),
                    **({"note": pad_row["note"]} if pad_row.get("note") else {}),
                }
    out.summary = concat(summaries)
    out.c_index = pd.DataFrame(cindex)
    out.ph_test = concat(ph)
    return out


def _pad_alternatives(results: StudyResults, out: CoxFamilyResult, outcome: str, model: str, covs: list[str]) -> None:
    """The headline HR per SD with the other PAD (uncorrected vs corrected) where a correction exists."""
    cfg = results.config
    rows = []
    for role, c in results.cohorts.items():
        kinds = _pad_columns(c.frame)
        if "corrected" not in kinds or not has_outcome(c.frame, outcome):
            continue
        event, time_col = OUTCOMES[outcome]
        df = model_view(c.frame, [time_col, event, *kinds.values(), *covs])
        for kind, col in kinds.items():
            use, dropped = _usable_covariates(df, time_col, event, col, [v for v in covs if v in df.columns])
            res = _try(
                results,
                f"{out.family} {model} with {kind} PAD ({role}, {outcome})",
                lambda: stats.cox_per_sd(
                    df,
                    time_col,
                    event,
                    col,
                    use,
                    ties=cfg.ties,
                    sd=float(df[col].std(ddof=1)),
                    ci_level=cfg.ci_level,
                    model=model,
                    diagnostics=False,  # the side-by-side table shows the hazard ratio only
                    **_cox_kwargs(stats.cox_per_sd, cfg),
                ),
            )
            if res is None:
                continue
            s = mark_not_estimable(res.summary, int(res.events), cfg.min_events_per_parameter)
            row = s[s["term"] == col].iloc[0].to_dict()
            rows.append(
                {
                    "cohort": role,
                    "outcome": outcome,
                    "model": dropped_label(model, dropped),
                    "pad": kind,
                    "analysed": kind == c.pad_kind,
                    **{k: row.get(k) for k in ("estimate", "ci_low", "ci_high", "p_value", "note")},
                    "n": int(res.n),
                    "events": int(res.events),
                }
            )
    out.pad_side_by_side = pd.DataFrame(rows)


def cox_fracture(results: StudyResults) -> CoxFractureResult:
    """Cox models 1-3 per fracture outcome, and the headline HR with the other PAD.

    Complexity: per outcome one O(n log n) sort shared by its models, then O(n p^2) per Newton step,
    O(n log n) for Harrell's C and O(n + d p^2) for the PH test per model (``stats.cox_per_sd``).
    """
    cfg = results.config
    out = _fit_models(results, CoxFractureResult(), cfg.fracture_outcomes, cfg.fracture_models)
    first = next(iter(cfg.fracture_models))
    _pad_alternatives(results, out, cfg.fracture_outcomes[0], first, list(cfg.fracture_models[first]))
    return out


def cox_mortality(results: StudyResults) -> MortalityResult:
    """Cox models for death, and accelerated vs not (external cohort). Complexity: as ``cox_fracture``,
    plus two O(n log n) Cox fits on a frame of the 5 columns they read."""
    cfg = results.config
    out = _fit_models(results, MortalityResult(), [cfg.mortality_outcome], cfg.mortality_models)
    # accelerated vs not, as the paper: in the external cohort (in the derivation cohort uncorrected PAD
    # falls with age, so an unadjusted contrast there is confounded by age), unadjusted and adjusted
    frames = []
    event, time_col = OUTCOMES[cfg.mortality_outcome]
    for role, c in results.cohorts.items():
        df = c.frame
        if not has_outcome(df, cfg.mortality_outcome) or ACCEL_COLUMN not in df.columns:
            continue
        if role != "external" and "external" in results.cohorts:
            continue
        wanted_all = [v for v in ("age_years", "sex") if v in df.columns]
        # text as categoricals (sex through model_view, the labels from their two values): the group
        # HR functions then read codes rather than hash a million strings on every call
        sub = columns_of(
            model_view(df, [time_col, event, *wanted_all]),
            [time_col, event, *wanted_all],
            df[ACCEL_COLUMN].notna().to_numpy(),
            acceleration=df[ACCEL_COLUMN].map(_ACCEL_LABELS).astype("category"),
        )
        for label, wanted in (("unadjusted", []), ("age- and sex-adjusted", ["age_years", "sex"])):
            use, dropped = _usable_covariates(
                sub, time_col, event, "acceleration", [v for v in wanted if v in sub.columns]
            )
            adj = label if not dropped else f"{label}; dropped (constant): {', '.join(dropped)}"
            h = _try(
                results,
                f"mortality, accelerated vs not, {label} ({role})",
                lambda: _group_hrs(
                    sub, time_col, event, cfg, column="acceleration", reference="not accelerated", covariates=tuple(use)
                ),
            )
            if h is not None:
                frames.append(tag(h, cohort=role, outcome=cfg.mortality_outcome, adjustment=adj))
    if (
        not frames
        and any(has_outcome(c.frame, cfg.mortality_outcome) for c in results.cohorts.values())
        and "external" not in results.cohorts
    ):
        results.warnings.append(
            "mortality, accelerated vs not: shown for the external cohort only (as the study); there is none here"
        )
    out.accelerated = concat(frames)
    return out


def subgroups(results: StudyResults) -> SubgroupResult:
    """HR per SD of PAD by sex (model 1 covariates), with the interaction p value.

    Complexity: per outcome one Cox fit per sex and the two interaction models, O(n p^2) per Newton
    step, sharing the outcome's sort (``stats.subgroup_hazard_ratios`` copies only the columns it reads).
    """
    cfg = results.config
    first_model = next(iter(cfg.fracture_models.values()))
    frames = []
    outcomes = [*cfg.fracture_outcomes, cfg.mortality_outcome]
    for role, c in results.cohorts.items():
        full = c.frame
        if "sex" not in full.columns or full["sex"].dropna().nunique() < 2:
            results.warnings.append(f"subgroups by sex ({role}): not estimated (one sex only)")
            continue
        df = model_view(full, [PAD_COLUMN, "sex", *first_model, *(col for o in outcomes for col in OUTCOMES[o])])
        for outcome in outcomes:
            if not has_outcome(full, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            covs = [v for v in first_model if v in df.columns]
            res = _try(
                results,
                f"subgroups by sex ({role}, {outcome})",
                lambda: stats.subgroup_hazard_ratios(
                    df,
                    time_col,
                    event,
                    PAD_COLUMN,
                    by="sex",
                    covariates=covs,
                    ties=cfg.ties,
                    sd=float(df[PAD_COLUMN].std(ddof=1)),
                    ci_level=cfg.ci_level,
                    **_cox_kwargs(stats.subgroup_hazard_ratios, cfg),
                ),
            )
            if res is None:
                continue
            ev = pd.to_numeric(res["events"], errors="coerce").fillna(0).astype(int)
            n_par = 1 + len([v for v in covs if v != "sex"])  # within a sex: PAD + the others
            marked = [
                mark_not_estimable(res.iloc[[i]], int(ev.iloc[i]), cfg.min_events_per_parameter, n_params=n_par)
                for i in range(len(res))
            ]
            frames.append(tag(pd.concat(marked, ignore_index=True), cohort=role, outcome=outcome))
    return SubgroupResult(concat(frames))


# ---------------------------------------------------------------------------------- rates
def rates(results: StudyResults) -> RatesResult:
    """Incidence per 1,000 person-years (overall, by group, by accelerated) and median follow-up.

    Complexity: O(n G) per outcome for G groups (sums over integer-code masks) on a 3-column frame,
    plus O(n log n) for the reverse-KM median follow-up.
    """
    cfg = results.config
    out = RatesResult()
    inc, fu = [], []
    outcomes = [*cfg.fracture_outcomes, cfg.mortality_outcome]
    for role, c in results.cohorts.items():
        df = c.frame
        for outcome in outcomes:
            if not has_outcome(df, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            where = f"incidence ({role}, {outcome})"
            overall = _try(results, where, lambda: stats.incidence_rates(df, time_col, event, ci_level=cfg.ci_level))
            if overall is None:
                continue
            inc.append(tag(overall, cohort=role, outcome=outcome, by="all"))
            for by in (ACCEL_COLUMN, GROUP_COLUMN):
                if by in df.columns:
                    labels = df[by] if by == GROUP_COLUMN else df[by].map(_ACCEL_LABELS)
                    sub = columns_of(df, [time_col, event], df[by].notna().to_numpy(), **{by: labels})
                    t = _try(
                        results,
                        where,
                        lambda: stats.incidence_rates(sub, time_col, event, group=by, ci_level=cfg.ci_level),
                    )
                    if t is not None:
                        inc.append(tag(t, cohort=role, outcome=outcome, by=by))
            f = _try(
                results, f"median follow-up ({role}, {outcome})", lambda: stats.median_followup(df, time_col, event)
            )
            if f is not None:
                fu.append(tag(f, cohort=role, outcome=outcome))
            if outcome == cfg.km_outcome:
                out.incidence_per_1000py[role] = float(overall["estimate"].iloc[0])
                if f is not None:
                    out.median_followup_years[role] = float(f["estimate"].iloc[0])
                out.events[role] = int(pd.to_numeric(df[event]).sum())
    out.incidence = concat(inc)
    out.followup = concat(fu)
    return out


# ---------------------------------------------------------------------------------- competing risk
#: the three estimators of the competing-risk hazard-ratio table (column ``estimator``)
FINE_GRAY = "Fine-Gray subdistribution HR"
CAUSE_SPECIFIC = "cause-specific Cox HR"
ORDINARY_COX = "Cox HR, deaths censored"
CR_TIME, CR_EVENT = "cr_years", "cr_event"


def _competing_frame(df: pd.DataFrame, frac: str, death: str, extra: list[str]) -> pd.DataFrame:
    """Time and type of the first event (1 fracture, 2 death first, 0 censored) on the needed columns only.

    O(n): one copy of the complete rows of the outcome columns, PAD and ``extra``, never of the whole
    cohort (the event type is worked out on the four outcome columns alone).
    """
    (f_event, f_time), (d_event, d_time) = OUTCOMES[frac], OUTCOMES[death]
    outcome = [f_event, f_time, d_event, d_time]
    cols = list(dict.fromkeys([*outcome, PAD_COLUMN, *[c for c in extra if c in df.columns]]))
    typed = stats.competing_event_type(
        df[outcome], fracture=f_event, death=d_event, fracture_time=f_time, death_time=d_time, out_time=CR_TIME
    )
    keep = typed[CR_EVENT].notna().to_numpy()
    cr = df.loc[keep, cols]
    cr[CR_TIME] = typed[CR_TIME].to_numpy()[keep]
    cr[CR_EVENT] = typed[CR_EVENT].array[keep]
    return cr


def _pad_row(summary: pd.DataFrame, n_events: int, rule: float | None, **extra: Any) -> dict[str, Any]:
    """The PAD row of a fit, blanked with a note where the fit is not estimable (``mark_not_estimable``)."""
    s = mark_not_estimable(summary, n_events, rule)
    row = s[s["term"] == PAD_COLUMN].iloc[0].to_dict()
    keep = ("term", "estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high", "ci_level", "note")
    return {**{k: row.get(k) for k in keep}, **extra}


def _competing_hrs(results: StudyResults, role: str, df: pd.DataFrame, outcome: str) -> list[dict[str, Any]]:
    """Fine-Gray, cause-specific and ordinary Cox HR per SD of PAD for one fracture outcome (death competing).

    The three models share the rows (complete cases of the first fracture model's covariates), the
    covariates and the SD of PAD (the cohort's, as the Cox sections). Each model costs O(n p^2) per
    Newton step after one O(n log n) sort (``stats.fine_gray``'s sorted cumulative sums; no O(n^2)
    risk-set loop as in ``cmprsk::crr``).
    """
    cfg = results.config
    model, wanted = next(iter(cfg.fracture_models.items()))
    cr = _competing_frame(df, outcome, cfg.mortality_outcome, list(wanted))
    f_event, f_time = OUTCOMES[outcome]
    use, dropped = _usable_covariates(cr, CR_TIME, CR_EVENT, PAD_COLUMN, [v for v in wanted if v in cr.columns])
    cr = cr.dropna(subset=[PAD_COLUMN, *use])
    sd = float(df[PAD_COLUMN].std(ddof=1))
    label = dropped_label(model, dropped)
    rule = cfg.min_events_per_parameter
    n_par = 1 + len(use)
    common = dict(cohort=role, outcome=outcome, model=label)
    rows = []
    where = f"competing risk, {label} ({role}, {outcome})"

    def fine_gray() -> dict[str, Any]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            fg = stats.fine_gray(cr, CR_TIME, CR_EVENT, PAD_COLUMN, use, sd=sd, ci_level=cfg.ci_level, model=model)
        summary = fg.summary
        if not fg.converged or caught:
            why = "; ".join(str(w.message) for w in caught) or "the fit did not converge"
            summary = summary.assign(note=f"{NOT_ESTIMABLE}: {why}", **{c: np.nan for c in _NUMBERS})
        return _pad_row(
            summary,
            fg.events,
            rule,
            n=fg.n,
            events=fg.events,
            n_competing=fg.n_competing,
            method=fg.summary["method"].iloc[0],
        )

    def cox(kind: str) -> dict[str, Any]:
        kw = dict(sd=sd, ties=cfg.ties, ci_level=cfg.ci_level, model=model, **_cox_kwargs(stats.cox_per_sd, cfg))
        if kind == CAUSE_SPECIFIC:
            res = stats.cause_specific_cox(cr, CR_TIME, CR_EVENT, PAD_COLUMN, use, cause=1, **kw)
        else:  # the fracture sections' model on the same rows: fracture time, deaths censored at death
            res = stats.cox_per_sd(cr, f_time, f_event, PAD_COLUMN, use, **kw)
        n_comp = int((cr[CR_EVENT] == 2).sum())
        return _pad_row(
            res.summary,
            int(res.events),
            rule,
            n=int(res.n),
            events=int(res.events),
            n_competing=n_comp,
            method=res.summary["method"].iloc[0],
        )

    fits = ((FINE_GRAY, fine_gray), (CAUSE_SPECIFIC, lambda: cox(CAUSE_SPECIFIC)), (ORDINARY_COX, lambda: cox("")))
    for estimator, fit in fits:
        if estimator == FINE_GRAY and not cfg.fine_gray:
            continue
        row = _try(results, f"{where}, {estimator}", fit)
        if row is not None:
            rows.append({**common, "estimator": estimator, "n_parameters": n_par, **row})
    return rows


def competing_risk(results: StudyResults) -> CompetingResult:
    """Death competing with fracture: cumulative incidence, Gray's test and three hazard ratios per SD of PAD.

    - Aalen-Johansen cumulative incidence of the KM outcome (death competing) vs 1 - KM, by accelerated
      ageing, with Gray's test of equal cumulative incidence (accelerated vs not);
    - for every fracture outcome and cohort (when ``config.fine_gray``): the Fine-Gray subdistribution HR
      per SD of PAD beside the cause-specific Cox HR and the ordinary Cox HR (deaths censored), all with
      the first fracture model's covariates on the same rows.

    Complexity: O(n log n) per cohort and outcome (sorts; Aalen-Johansen, Gray's test and each model's
    Newton steps are linear passes over the sorted rows). Copies only the columns it uses.
    """
    cfg = results.config
    frac, death = cfg.km_outcome, cfg.mortality_outcome
    out = CompetingResult(fine_gray=cfg.fine_gray)
    at, curves, gray, hrs = [], [], [], []
    for role, c in results.cohorts.items():
        df = c.frame
        if not has_outcome(df, death):
            continue
        for outcome in cfg.fracture_outcomes:
            if has_outcome(df, outcome):
                hrs.extend(_competing_hrs(results, role, df, outcome))
        if not has_outcome(df, frac) or ACCEL_COLUMN not in df.columns:
            continue
        cr = _competing_frame(df, frac, death, [ACCEL_COLUMN])
        # only the five columns the curves and Gray's test read, on the rows with an accelerated flag
        keep = cr[ACCEL_COLUMN].notna().to_numpy()
        acceleration = cr[ACCEL_COLUMN].map(_ACCEL_LABELS)
        cr = columns_of(cr, [CR_TIME, CR_EVENT, *OUTCOMES[frac]], keep, acceleration=acceleration)
        del acceleration
        if not len(cr):
            continue
        tmax = float(cr[CR_TIME].max())
        times = [t for t in cfg.km_times_years if t <= tmax]

        def fit(cr=cr, times=times):
            kw = dict(group="acceleration", ci=cfg.km_ci, ci_level=cfg.ci_level)
            aj = stats.aalen_johansen(cr, CR_TIME, CR_EVENT, cause=1, times=times, **kw)
            km = stats.km_cumulative_failure(cr, OUTCOMES[frac][1], OUTCOMES[frac][0], times=times, **kw)
            ajc = stats.aalen_johansen(cr, CR_TIME, CR_EVENT, cause=1, **kw)
            kmc = stats.km_curves(cr, OUTCOMES[frac][1], OUTCOMES[frac][0], **kw)
            return aj, km, ajc, kmc

        res = _try(results, f"competing risk ({role})", fit)
        if res is None:
            continue
        aj, km, ajc, kmc = res
        at.append(tag(aj, cohort=role, method_label="Aalen-Johansen"))
        at.append(tag(km, cohort=role, method_label="1 - KM"))
        # plot data, as the Kaplan-Meier curves: event times only, thinned below a pixel (report.plotdata), so
        # drawing does not grow with n; the interval of Aalen-Johansen also moves at competing events
        ajc = plotdata.compact_curve(ajc.assign(events=ajc["events"] + ajc["competing_events"]))
        kmc = plotdata.compact_curve(kmc)
        curves.append(
            tag(ajc[["group", "time", "estimate", "ci_low", "ci_high"]], cohort=role, method="Aalen-Johansen")
        )
        curves.append(tag(kmc[["group", "time", "estimate", "ci_low", "ci_high"]], cohort=role, method="1 - KM"))
        if cr["acceleration"].nunique() > 1:
            frame = cr
            g = _try(
                results,
                f"Gray's test ({role})",
                lambda: stats.gray_test(frame, CR_TIME, CR_EVENT, group="acceleration", cause=1),
            )
            if g is not None:
                gray.append(tag(g, cohort=role, outcome=frac, comparison="accelerated vs not accelerated"))
    out.table, out.cuminc, out.gray = concat(at), concat(curves), concat(gray)
    out.hazard_ratios = pd.DataFrame(hrs)
    for r in hrs:
        entry = {k: r.get(k) for k in ("estimate", "ci_low", "ci_high", "p_value", "n", "events", "n_competing")}
        if r.get("note"):
            entry["note"] = r["note"]
        out.hr_per_sd.setdefault(r["cohort"], {}).setdefault(r["outcome"], {})[r["estimator"]] = entry
    return out


# ---------------------------------------------------------------------------------- multiple imputation
MI_ANALYSIS, CC_ANALYSIS = "multiple imputation", "complete cases"


def _mi_models(results: StudyResults, df: pd.DataFrame) -> list[tuple[str, str, str, list[str]]]:
    """(family, outcome, model, covariates) refitted after imputation: every model after the first of its
    family (the study's models 2-3 for fracture and model 2 for mortality; model 1 needs only age and sex),
    and a first model too where one of its variables has a missing value. Models whose covariate is absent
    from the data are left out, as the complete-case fits leave them out."""
    cfg = results.config
    out: list[tuple[str, str, str, list[str]]] = []
    for family, outcomes, models in (
        ("fracture", cfg.fracture_outcomes, cfg.fracture_models),
        ("mortality", [cfg.mortality_outcome], cfg.mortality_models),
    ):
        for i, (model, covs) in enumerate(models.items()):
            if any(v not in df.columns or df[v].isna().all() for v in covs):
                continue
            if i == 0 and not df[[PAD_COLUMN, *covs]].isna().any().any():
                continue
            out.extend((family, o, model, list(covs)) for o in outcomes if has_outcome(df, o))
    return out


def _complete_case_row(results: StudyResults, family: str, role: str, outcome: str, model: str) -> dict | None:
    """The complete-case PAD row the Cox sections already fitted (the same numbers, not a refit)."""
    cox = results.cox(family)
    if cox is None or not len(cox.summary):
        return None
    s = cox.summary
    hit = s[(s["cohort"] == role) & (s["outcome"] == outcome) & (s["model"] == model) & (s["term"] == PAD_COLUMN)]
    if not len(hit):
        return None
    r = hit.iloc[0]
    keep = ("estimate", "std_error", "ci_low", "ci_high", "ci_level", "p_value", "n", "events", "note")
    return {k: r.get(k) for k in keep}


def mi_sets(cfg, n: int) -> int:
    """Imputed sets for a cohort of ``n`` rows: ``mi_imputations``, or ``mi_imputations_large`` (if fewer)
    above ``MI_LARGE_N`` rows. The efficiency of m sets relative to infinitely many is 1 / (1 + FMI / m)
    (Rubin 1987): at least 94% with m = 5 for a fraction of missing information up to 0.3."""
    return min(cfg.mi_imputations, cfg.mi_imputations_large) if n > MI_LARGE_N else cfg.mi_imputations


def multiple_imputation(results: StudyResults) -> ImputationResult:
    """Models 2-3 (fracture) and model 2 (mortality) after multiple imputation, beside the complete cases.

    Per cohort, one imputation model (``stats.impute_mice``: ``config.mi_imputations`` sets, seeded by
    ``config.mi_seed``; substantive-model-compatible chained equations) holds PAD and every covariate of
    the refitted models, with each outcome's Cox likelihood in the draws. Each model is fitted on every set
    and pooled by Rubin's rules with Barnard-Rubin df (``stats.mi_cox_per_sd``; complete-data df =
    events - coefficients, as ``mice::pool`` for coxph). PAD per the cohort's SD, as the Cox sections.

    Complexity: O(m c k (n p^2 + n log n) + m M n p^2) per cohort for m sets, c chained-equation cycles
    (``mi_iterations``) over the k incomplete variables (one regression on n rows and p predictors each,
    and one Cox fit per outcome, as ``stats.impute_mice`` does it) and M refitted
    models: about n log n in n, linear in m. It is the report's slowest step, so its time is reported on
    its own line (``seconds``, and the step timings); a cohort of more than ``MI_LARGE_N`` rows gets
    ``mi_imputations_large`` sets (default 5, stated in the report), and ``multiple_imputation = false``
    skips it (docs/guides/report.md).
    """
    cfg = results.config
    out = ImputationResult(enabled=cfg.multiple_imputation, m=cfg.mi_imputations, seed=cfg.mi_seed, large_n=MI_LARGE_N)
    if not cfg.multiple_imputation:
        return out
    rows, missing = [], []
    for role, c in results.cohorts.items():
        t0 = time.perf_counter()
        df = c.frame
        specs = _mi_models(results, df)
        if not specs:
            continue
        if not df[list(dict.fromkeys([PAD_COLUMN, *[v for *_, covs in specs for v in covs]]))].isna().any().any():
            out.nothing_missing.append(role)
            continue
        todo = []
        for family, outcome, model, covs in specs:
            event, time_col = OUTCOMES[outcome]
            use, dropped = _usable_covariates(df, time_col, event, PAD_COLUMN, covs)
            n_events = int(pd.to_numeric(df[event], errors="coerce").fillna(0).sum())
            n_par, rule = 1 + len(use), cfg.min_events_per_parameter
            if not df[[PAD_COLUMN, *use]].isna().any().any():
                note = "no missing values"
            elif rule is not None and n_events / n_par < rule:
                # the events-per-parameter rule does not depend on the imputation: a model it refuses on
                # every row is not imputed for (this also keeps small cohorts fast)
                note = (
                    f"{NOT_ESTIMABLE}: {n_events} event(s) for {n_par} parameter(s) on all rows, fewer than "
                    f"{rule:g} per parameter (not imputed)"
                )
            else:
                todo.append((family, outcome, model, covs))
                continue
            tags = dict(cohort=role, family=family, outcome=outcome, model=dropped_label(model, dropped))
            cc = _complete_case_row(results, family, role, outcome, model)
            if cc is not None:
                rows.append({**tags, "analysis": CC_ANALYSIS, "term": PAD_COLUMN, **cc})
            rows.append({**tags, "analysis": MI_ANALYSIS, "term": PAD_COLUMN, "note": note})
        if not todo:
            continue
        columns = list(dict.fromkeys([PAD_COLUMN, *[v for *_, covs in todo for v in covs]]))
        outcomes = list(dict.fromkeys(o for _, o, _, _ in todo))
        times, events = [OUTCOMES[o][1] for o in outcomes], [OUTCOMES[o][0] for o in outcomes]
        sub = df[[*columns, *times, *events]]
        complete_outcome = sub[[*times, *events]].notna().all(axis=1)
        if not complete_outcome.all():
            results.warnings.append(
                f"multiple imputation ({role}): {int((~complete_outcome).sum()):,} row(s) without complete "
                "outcomes left out (the imputation model needs every outcome)"
            )
            sub = sub[complete_outcome]
        m = mi_sets(cfg, len(sub))
        mi = _try(
            results,
            f"multiple imputation ({role})",
            lambda: stats.impute_mice(
                sub, columns, time=times, event=events, m=m, n_iter=cfg.mi_iterations, seed=cfg.mi_seed
            ),
        )
        if mi is None:
            continue
        out.m_used[role] = m
        out.method = mi.method
        missing.append(tag(mi.missing, cohort=role))
        sd = float(df[PAD_COLUMN].std(ddof=1))
        for family, outcome, model, covs in todo:
            event, time_col = OUTCOMES[outcome]
            cc = _complete_case_row(results, family, role, outcome, model)
            use, dropped = _usable_covariates(df, time_col, event, PAD_COLUMN, covs)
            tags = dict(cohort=role, family=family, outcome=outcome, model=dropped_label(model, dropped))
            if cc is not None:
                rows.append({**tags, "analysis": CC_ANALYSIS, "term": PAD_COLUMN, **cc})
            res = _try(
                results,
                f"multiple imputation, {family} {model} ({role}, {outcome})",
                lambda: stats.mi_cox_per_sd(
                    mi, time_col, event, PAD_COLUMN, use, sd=sd, ties=cfg.ties, ci_level=cfg.ci_level, model=model
                ),
            )
            if res is None:
                continue
            res = mark_not_estimable(res, int(res["events"].iloc[0]), cfg.min_events_per_parameter)
            r = res[res["term"] == PAD_COLUMN].iloc[0]
            keep = ("estimate", "std_error", "ci_low", "ci_high", "ci_level", "p_value", "n", "events")
            rows.append(
                {
                    **tags,
                    "analysis": MI_ANALYSIS,
                    "term": PAD_COLUMN,
                    **{k: r[k] for k in keep},
                    "note": r.get("note"),
                    **{k: r[k] for k in ("n_imputed", "m", "df", "dfcom", "fmi", "method")},
                }
            )
            entry = {k: r[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "n", "fmi", "dfcom")}
            out.hr_per_sd.setdefault(role, {}).setdefault(outcome, {})[model] = entry
        out.seconds[role] = time.perf_counter() - t0
    comp = pd.DataFrame(rows)
    if len(comp):  # the configured order (cohort, family, model, outcome), complete cases first
        cohort_rank = {r: i for i, r in enumerate(results.cohorts)}
        models = {m: i for i, m in enumerate(dict.fromkeys([*cfg.fracture_models, *cfg.mortality_models]))}
        outcome_rank = {o: i for i, o in enumerate([*cfg.fracture_outcomes, cfg.mortality_outcome])}
        key = pd.DataFrame(
            {
                "c": comp["cohort"].map(cohort_rank),
                "f": comp["family"].ne("fracture"),
                "m": comp["model"].str.split(";").str[0].map(models),
                "o": comp["outcome"].map(outcome_rank),
                "a": comp["analysis"].ne(CC_ANALYSIS),
            }
        )
        comp = comp.loc[key.sort_values(list(key.columns), kind="stable").index].reset_index(drop=True)
    out.comparison = comp
    out.missing = concat(missing)
    return out


# ---------------------------------------------------------------------------------- FRAX
FRAX_COLUMNS = ("frax_mof_pct", "frax_hip_pct", "frax_mof_spine_pct", "frax_hip_spine_pct")
HIP_EVENT = "fracture_hip"


def frax(results: StudyResults) -> FraxResult:
    """Reclassification of FRAX high risk with spine age in place of age, NRI and AUROC comparison.

    Complexity: O(n log n) per cohort (DeLong), O(n) for the cross-tables and NRI. Memory: O(n) in the five
    FRAX columns, never a copy of the cohort frame (``stats.frax_reclassification``): at 1,000,000 rows about
    0.16 GB above the frame (memray), mostly one DeLong comparison's sort and placements (2.30 GB peak -> 1.24).
    """
    cfg = results.config
    out = FraxResult()
    parts: dict[str, list] = {k: [] for k in ("crosstab", "reclassification", "performance", "nri", "auroc")}
    for role, c in results.cohorts.items():
        df = c.frame
        if not all(col in df.columns and df[col].notna().any() for col in FRAX_COLUMNS):
            continue
        event = OUTCOMES[cfg.km_outcome][0]
        if event not in df.columns or df[event].nunique(dropna=True) < 2:
            results.warnings.append(f"FRAX ({role}): not estimated (no incident {event} or no participant without)")
            continue
        res = _try(
            results,
            f"FRAX ({role})",
            lambda: stats.frax_reclassification(
                df,
                event=event,
                mof_threshold=cfg.frax_mof_threshold_pct,
                hip_threshold=cfg.frax_hip_threshold_pct,
                ci_level=cfg.ci_level,
            ),
        )
        if res is None:
            continue
        parts["crosstab"].append(tag(res.crosstab, cohort=role))
        parts["reclassification"].append(tag(res.reclassification, cohort=role))
        parts["performance"].append(tag(res.performance, cohort=role))
        parts["nri"].append(tag(res.nri, cohort=role))
        parts["auroc"].append(tag(res.delong, cohort=role))
        mof_hip = _frax_mof_for_hip(results, df, role, event)
        if mof_hip is not None:
            parts["auroc"].append(tag(mof_hip, cohort=role))
        nri = res.nri.set_index("term")["estimate"]
        out.nri_total[role] = float(nri.get("nri_total", np.nan))
        out.n[role] = {"n": res.n, "events": res.events, "n_excluded": res.n_excluded}
        out.notes = list(res.notes)
        if "frax_source" in df.columns and df["frax_source"].notna().any():
            out.source[role] = "; ".join(sorted(map(str, df["frax_source"].dropna().unique())))
    for k, v in parts.items():
        setattr(out, k, concat(v))
    return out


def _frax_mof_for_hip(results: StudyResults, df: pd.DataFrame, role: str, event: str) -> pd.DataFrame | None:
    """AUROC of the MOF probability for hip fracture, age vs spine age (the study: 0.81 vs 0.77)."""
    if HIP_EVENT not in df.columns or event == HIP_EVENT:
        return None
    keep = np.ones(len(df), dtype=bool)
    for col in (event, *FRAX_COLUMNS):  # column by column: no numeric copy of the five at once
        keep &= pd.to_numeric(df[col], errors="coerce").notna().to_numpy()
    kept = columns_of(df, [HIP_EVENT, "frax_mof_pct", "frax_mof_spine_pct"], keep)
    y = pd.to_numeric(kept[HIP_EVENT], errors="coerce")
    if y.nunique(dropna=True) < 2:
        results.warnings.append(f"FRAX ({role}): AUROC of MOF for hip fracture not estimated (no hip fractures)")
        return None
    res = _try(
        results,
        f"FRAX, MOF for hip fracture ({role})",
        lambda: stats.delong_test(
            y,
            kept["frax_mof_pct"],
            kept["frax_mof_spine_pct"],
            names=("FRAX MOF (chronological age)", "FRAX MOF (spine age)"),
            ci_level=results.config.ci_level,
        ),
    )
    if res is None:
        return None
    f = res.to_frame()
    f["analysis"] = "frax_auroc"
    f["outcome"] = HIP_EVENT
    return f


# ---------------------------------------------------------------------------------- age-gap regression
def age_gap(results: StudyResults) -> AgeGapResult:
    """Linear regression of PAD on the covariates. Complexity: O(n p^2) (least squares on the complete
    cases of the p columns) and O(n p^3) for R's alias check. Memory: O(n p), the design and one QR
    decomposition's copies of it (``stats.age_gap_regression``): ~0.26 GB above the frame at 1,000,000 rows and
    8 terms (memray, LAPACK's buffers included); the cohort frame is read, not written."""
    cfg = results.config
    out = AgeGapResult()
    frames = []
    for role, c in results.cohorts.items():
        df = c.frame
        covs = [v for v in cfg.regression_covariates if v in df.columns and df[v].notna().any()]
        missing = [v for v in cfg.regression_covariates if v not in covs]
        use, dropped = _usable_covariates(df, PAD_COLUMN, PAD_COLUMN, None, covs)
        res = _try(
            results,
            f"age-gap regression ({role})",
            lambda: stats.age_gap_regression(df, PAD_COLUMN, use, ci_level=cfg.ci_level),
        )
        if res is None:
            continue
        dropped = tuple(dict.fromkeys([*dropped, *getattr(res, "dropped_terms", ())]))
        frames.append(tag(res.to_frame(), cohort=role))
        out.adj_r2[role] = res.adj_r2
        if dropped:
            out.dropped[role] = dropped
            results.warnings.append(
                f"age-gap regression ({role}): dropped (constant in the complete cases): {', '.join(dropped)}"
            )
        if missing:
            results.warnings.append(
                f"age-gap regression ({role}): left out covariate(s) not in the data: {', '.join(missing)}"
            )
    out.table = concat(frames)
    return out


#: (name shown when skipped, StudyResults attribute, step)
STEPS: list[tuple[str, str, Callable[[StudyResults], Any]]] = [
    ("table 1", "table1", table1),
    ("agreement", "agreement", agreement),
    ("discrimination", "discrimination", discrimination),
    ("four groups and Kaplan-Meier", "groups", groups_km),
    ("Cox models, fracture", "cox_fracture", cox_fracture),
    ("Cox models, mortality", "mortality", cox_mortality),
    ("incidence rates", "rates", rates),
    ("competing risk", "competing", competing_risk),
    ("multiple imputation", "imputation", multiple_imputation),
    ("subgroups by sex", "subgroups", subgroups),
    ("FRAX reclassification", "frax", frax),
    ("age-gap regression", "age_gap", age_gap),
]
