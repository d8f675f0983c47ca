"""Cox proportional-hazards models: HR per 1 SD of an exposure (PAD), group and subgroup HRs.

Conventions (docs/methods.md#cox), checked against R ``survival::coxph`` in ``tests/reference/``:

- Ties: Efron by default (R ``coxph``, lifelines); ``ties="breslow"`` as Stata ``stcox``.
- Convergence as R: Newton-Raphson from 0, step-halving, ``|1 - ll_old/ll_new| <= 1e-9``,
  at most 20 iterations (lifelines' default tolerance is looser, so it differs in late digits).
- Per SD: the exposure is divided by its sample SD (ddof = 1) over every row of ``df`` with a
  non-missing exposure (the analysed cohort), unless ``sd`` is given, so that models 1-3 fitted on
  the same cohort share one SD and their HRs compare. ``HR = exp(beta_raw * SD)``.
- Complete cases per model: rows missing the time, event, exposure or any covariate are excluded
  and counted in ``n_excluded``.
- Guards (docs/methods.md#cox-guards): covariates constant or missing in the complete cases are
  dropped and listed (``dropped_terms``, ``note``); ``min_events_per_parameter`` (off by default,
  R's behaviour) blanks fits with too few events per coefficient or that did not converge; a row
  with a non-finite SE or an infinite CI is always null with "not estimable: <reason>" in ``note``.
- Wald intervals ``exp(beta +/- z SE)``; Harrell's C as R ``concordance``; the PH check is the
  Grambsch-Therneau score test of scaled Schoenfeld residuals against ``1 - KM(t-)`` (the
  ``cox.zph(transform="km")`` of survival 2.x; R's newer ``cox.zph`` differs a little).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._concordance import harrell_c
from epi_spineage.stats._coxfit import CoxFit, fit_cox
from epi_spineage.stats._survdata import (
    checked_time_event,
    notna_mask,
    numeric_values,
    require_columns,
    subset_order,
    time_event,
    time_order,
    z_value,
)

__all__ = [
    "MODEL_COVARIATES",
    "MODEL_EXPOSURE",
    "CoxResult",
    "CoxModelError",
    "NoEventsError",
    "ZeroVarianceError",
    "CoxConvergenceWarning",
    "CoxTermWarning",
    "cox_per_sd",
    "cox_model_set",
    "exposure_sd",
    "cause_specific_cox",
    "group_hazard_ratios",
    "subgroup_hazard_ratios",
]

#: The exposure of every model: predicted age difference (``tables.derive_variables``).
MODEL_EXPOSURE = "pad_years"

_FRACTURE_M1 = ["age_years", "sex"]
_FRACTURE_M2 = _FRACTURE_M1 + [
    "prevalent_vf",
    "height_dec5_cm",
    "prior_fracture",
    "prosthesis",
    "rheumatoid_arthritis",
    "glucocorticoid",
]
#: Covariate sets (besides the exposure) of the study's models, as column names made by
#: ``epi_spineage.tables.derive_variables``. ``sex`` is coded F/M (reference F unless changed).
MODEL_COVARIATES: dict[str, dict[str, list[str]]] = {
    "fracture": {
        "model 1": list(_FRACTURE_M1),
        "model 2": list(_FRACTURE_M2),
        "model 3": _FRACTURE_M2 + ["osteoporosis"],
    },
    "mortality": {
        "model 1": list(_FRACTURE_M1),
        "model 2": _FRACTURE_M1 + ["prevalent_vf", "albumin_dec", "hemoglobin_dec", "creatinine_inc"],
    },
}

TIES = ("efron", "breslow")


class CoxModelError(UserError):
    """A Cox model that cannot be fitted as asked (no rows, no events, constant exposure)."""


class NoEventsError(CoxModelError):
    """The analysed rows hold no events."""


class ZeroVarianceError(CoxModelError):
    """The exposure's SD is 0 or undefined, so 'per SD' means nothing."""


class CoxConvergenceWarning(UserWarning):
    """Newton-Raphson did not converge, or a coefficient looks infinite."""


class CoxTermWarning(UserWarning):
    """A term is constant among the analysed rows and was left out of the fit (NaN row)."""


@dataclass
class CoxResult:
    """A fitted Cox model.

    ``summary``: one row per term with ``analysis, model, term, estimate`` (hazard ratio),
    ``log_hr``, ``std_error`` (of log HR), ``statistic`` (Wald z), ``p_value``, ``ci_low``,
    ``ci_high`` (HR scale), ``ci_level``, ``scale`` ("per SD" for the standardised exposure,
    "per unit" otherwise, "vs <reference>" for a categorical level), ``sd`` (the SD used, exposure
    row only), ``n``, ``events``, ``n_excluded``, ``method``.
    ``ph_test``: per term and ``GLOBAL``: ``term, statistic, df, p_value, rho, method``.
    """

    summary: pd.DataFrame
    concordance: float
    ph_test: pd.DataFrame
    converged: bool
    warnings: list[str] = field(default_factory=list)
    n: int = 0
    events: int = 0
    n_excluded: int = 0
    sd: float | None = None
    exposure: str | None = None
    ties: str = "efron"
    loglik: float = np.nan
    loglik_null: float = np.nan
    iterations: int = 0
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    var: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    terms: list[str] = field(default_factory=list)
    concordance_counts: np.ndarray = field(default_factory=lambda: np.zeros(3))
    #: False when the fit (or the exposure's row; without an exposure, any row) is not estimable
    estimable: bool = True
    #: model-level note: "not estimable: <reason>", dropped terms, convergence messages (None when fine)
    note: str | None = None
    #: covariates left out because they are constant (or missing) in the complete cases
    dropped_terms: tuple[str, ...] = ()

    @property
    def lr_test(self) -> tuple[float, int, float]:
        """Likelihood-ratio test of all terms: (chi-square, df, p)."""
        stat = 2.0 * (self.loglik - self.loglik_null)
        k = len(self.terms)
        return float(stat), k, float(_sps.chi2.sf(stat, k)) if k else np.nan

    def to_frame(self) -> pd.DataFrame:
        """The summary table with the model-level figures (C, PH global p, loglik) as columns."""
        out = self.summary.copy()
        out["concordance"] = self.concordance
        glob = self.ph_test.loc[self.ph_test["term"] == "GLOBAL", "p_value"]
        out["ph_global_p_value"] = float(glob.iloc[0]) if len(glob) else np.nan
        out["loglik"] = self.loglik
        out["converged"] = self.converged
        return out


# ---------------------------------------------------------------------------------------------
# design matrix
# ---------------------------------------------------------------------------------------------
def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _design(frame: pd.DataFrame, columns: list[str], reference_levels: dict | None):
    """Numeric columns as they are; others dummy-coded against a reference level (sorted text levels,
    the first by default). ``frame`` holds complete cases: every row is used."""
    return _design_rows(frame, columns, reference_levels, np.ones(len(frame), dtype=bool), {})


def _text_codes(s: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The values of ``s`` at the boolean ``rows`` (none missing) as text levels: ``(codes, levels)``
    with ``levels`` sorted and ``levels[codes[i]]`` equal to ``str(value_i)``, as ``s.astype(str)`` gives.

    O(n): the distinct values are found by ``pd.factorize`` (a categorical column by its codes) and only
    they are made text, not every row; values with the same text share a level, as they do after
    ``astype(str)``. Columns other than categoricals, booleans and text go through ``astype(str)``.
    """
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        raw = s.cat.codes.to_numpy()[rows]
        uniques = [str(c) for c in dt.categories]
        present = np.bincount(raw, minlength=len(uniques)) > 0 if len(raw) else np.zeros(len(uniques), bool)
    else:
        plain = isinstance(dt, np.dtype) and dt.kind in "Ob"  # numpy object (text) or boolean
        if plain:
            raw, found = pd.factorize(s.to_numpy()[rows])
            # a str hashes and compares as its text; other objects (1 and 1.0) may not, so they go the slow way
            plain = dt.kind == "b" or all(type(u) is str for u in found)
            uniques = [str(u) for u in found]
        if not plain:
            raw, found = pd.factorize(s[rows].astype(str).to_numpy())
            uniques = list(found)
        present = np.ones(len(uniques), dtype=bool)
    levels = sorted({u for u, p_ in zip(uniques, present) if p_})
    index = {lev: i for i, lev in enumerate(levels)}
    remap = np.array([index.get(u, -1) for u in uniques], dtype=np.intp)
    return remap[raw], levels


def _design_columns(
    df: pd.DataFrame, columns: list[str], reference_levels: dict | None, rows: np.ndarray, texts: dict
) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The columns of ``_design(df[rows], ...)`` as 1-D arrays (each contiguous), with names and scales.

    ``texts``: ``{column: _text_codes(...)}`` already made for the text columns."""
    blocks, names, scales = [], [], []
    reference_levels = reference_levels or {}
    for col in columns:
        s = df[col]
        if _is_numeric(s):
            blocks.append(numeric_values(s, rows))
            names.append(col)
            scales.append("per unit")
            continue
        codes, levels = texts[col] if col in texts else _text_codes(s, rows)
        ref = str(reference_levels.get(col, levels[0]))
        if ref not in levels:
            raise UserError(f"reference level {ref!r} of {col!r} is not in the data")
        for i, lev in enumerate(levels):
            if lev == ref:
                continue
            blocks.append((codes == i).astype(float))
            names.append(f"{col}[{lev}]")
            scales.append(f"vs {ref}")
    return blocks, names, scales


def _stack(columns: list[np.ndarray], n: int) -> np.ndarray:
    return np.hstack([c[:, None] for c in columns]) if columns else np.zeros((n, 0))


def _design_rows(
    df: pd.DataFrame, columns: list[str], reference_levels: dict | None, rows: np.ndarray, texts: dict
) -> tuple[np.ndarray, list[str], list[str]]:
    """``_design(df[rows], ...)`` without the row copy of ``df``: the same matrix, names and scales."""
    blocks, names, scales = _design_columns(df, columns, reference_levels, rows, texts)
    return _stack(blocks, int(np.count_nonzero(rows))), names, scales


def _ph_test(
    fit: CoxFit, names: list[str], time: np.ndarray, event: np.ndarray, time_order: np.ndarray | None = None
) -> pd.DataFrame:
    """Grambsch-Therneau test with the KM transform (survival 2.x ``cox.zph``).

    O(n + d log d + d p^2) for d events given the ``time_order`` of the fit (O(n log n) without it)."""
    method = "scaled Schoenfeld residuals vs 1-KM(t-) (Grambsch-Therneau)"
    p = len(names)
    if p == 0 or len(fit.event_time) < 2:
        return _empty_ph()
    resid = fit.event_x - fit.event_xbar  # Schoenfeld residuals, ordered by (stratum, time)
    order = np.argsort(fit.event_time, kind="stable")
    resid = resid[order]
    et = fit.event_time[order]
    g = 1.0 - _km_left(time, event, et, time_order)
    xx = g - g.mean()
    nd = len(et)
    sxx = float(xx @ xx)
    V = fit.var
    test = xx @ resid  # p
    scaled = resid @ V * nd
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (xx @ scaled) ** 2 / (np.diag(V) * nd * sxx)
        rho = np.array([np.corrcoef(xx, scaled[:, j])[0, 1] if np.std(scaled[:, j]) > 0 else np.nan for j in range(p)])
        glob = float(test @ V @ test) * nd / sxx
    rows = [
        {"term": n_, "statistic": float(s), "df": 1, "p_value": float(_sps.chi2.sf(s, 1)), "rho": float(r)}
        for n_, s, r in zip(names, stat, rho)
    ]
    rows.append({"term": "GLOBAL", "statistic": glob, "df": p, "p_value": float(_sps.chi2.sf(glob, p)), "rho": np.nan})
    out = pd.DataFrame(rows)
    out["method"] = method
    return out


def _empty_ph() -> pd.DataFrame:
    return pd.DataFrame(columns=["term", "statistic", "df", "p_value", "rho", "method"])


def _km_left(time: np.ndarray, event: np.ndarray, at: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Left-continuous Kaplan-Meier S(t-) of the whole sample at the given times.

    Grouped over the distinct times; O(n) given the ascending ``order`` of ``time``, else O(n log n)."""
    if order is None:
        uniq, inv, counts = np.unique(time, return_inverse=True, return_counts=True)
        d = np.bincount(inv, weights=event, minlength=len(uniq))
    else:
        ts = time[order]
        new = np.concatenate(([True], ts[1:] != ts[:-1])) if len(ts) else np.zeros(0, bool)
        starts = np.flatnonzero(new)
        uniq = ts[starts]
        counts = np.diff(np.append(starts, len(ts)))
        d = np.bincount(np.cumsum(new) - 1, weights=np.asarray(event, float)[order], minlength=len(uniq))
    nrisk = len(time) - np.concatenate(([0], np.cumsum(counts)[:-1]))
    surv = np.cumprod(1.0 - d / nrisk)
    pos = np.searchsorted(uniq, at, side="left") - 1
    return np.where(pos >= 0, surv[np.maximum(pos, 0)], 1.0)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
_SUMMARY_COLUMNS = [
    "analysis",
    "model",
    "term",
    "estimate",
    "log_hr",
    "std_error",
    "statistic",
    "p_value",
    "ci_low",
    "ci_high",
    "ci_level",
    "scale",
    "sd",
    "n",
    "events",
    "n_excluded",
    "method",
    "note",
]
_NUMBERS = ["estimate", "log_hr", "std_error", "statistic", "p_value", "ci_low", "ci_high"]
_DROPPED_CONSTANT = "dropped (constant in the complete cases)"
_DROPPED_MISSING = "dropped (missing in every analysed row)"


def _check_min_epp(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = np.nan
    if not np.isfinite(v) or v <= 0:
        raise UserError(f"min_events_per_parameter must be a positive number or None, got {value!r}")
    return v


def _join(parts) -> str | None:
    parts = [p_ for p_ in dict.fromkeys(parts) if p_]
    return "; ".join(parts) if parts else None


def _fit_frame(
    df,
    time,
    event,
    terms,
    *,
    exposure=None,
    sd=None,
    ties="efron",
    level=0.95,
    strata=None,
    reference_levels=None,
    model=None,
    analysis=None,
    min_events_per_parameter: float | None = None,
    diagnostics: bool = True,
    order: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> CoxResult:
    """Fit one Cox model; the guards of docs/methods.md#cox-guards (constant covariates dropped and
    listed, not-estimable fits and rows blanked with a note).

    ``diagnostics``: compute Harrell's C and the PH test (else NaN and an empty table); ``order``: the
    stable ascending argsort of ``df[time]`` when the caller has it (else found or made by ``time_order``);
    ``rows``: a boolean mask of the rows to analyse (default all), as if ``df[rows]`` were passed."""
    if ties not in TIES:
        raise UserError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    min_epp = _check_min_epp(min_events_per_parameter)
    z = z_value(level)
    cols = list(terms) + ([strata] if strata else [])
    require_columns(df, cols)
    covars = [c for c in terms if c != exposure]
    # a covariate with no value in any row that has the rest (e.g. not recorded in this cohort) is
    # dropped and listed rather than emptying the complete cases
    needed = [time, event] + ([exposure] if exposure is not None else []) + ([strata] if strata else [])
    require_columns(df, needed)
    # each column's missing values found once, as numpy (pandas' isna on a text column is the slow part)
    present = {c: notna_mask(df[c]) for c in dict.fromkeys(needed + covars)}
    in_rows = [] if rows is None else [np.asarray(rows, dtype=bool)]
    base = np.logical_and.reduce([present[c] for c in needed] + in_rows)
    all_missing = [c for c in covars if not (present[c] & base).any()]
    if all_missing and (exposure is not None or len(all_missing) < len(covars)):
        covars = [c for c in covars if c not in all_missing]
        cols = [c for c in cols if c not in all_missing]
    else:  # nothing would be left to fit: the complete-case error below says so
        all_missing = []
    # the complete cases as a mask: the model's columns are read at these rows as numpy arrays, with
    # no copy of a data frame (the same values and checks as ``time_event``)
    kept = np.logical_and.reduce([base] + [present[c] for c in covars])
    n_rows = int(kept.sum())
    n_excluded = (len(df) if rows is None else int(np.count_nonzero(rows))) - n_rows
    t = numeric_values(df[time], kept)
    ev = checked_time_event(t, numeric_values(df[event], kept), time, event)
    if n_rows == 0:
        raise CoxModelError(f"no complete rows for the Cox model ({n_excluded} excluded for missing data)")
    if ev.sum() == 0:
        raise NoEventsError(f"no events in {event!r} among the {n_rows} analysed rows")
    n_events = int(ev.sum())
    # covariates constant in the complete cases: a numeric one gives a constant column, a text one
    # a single level (no indicator at all); both are dropped, kept as a NaN row and listed
    texts = {c: _text_codes(df[c], kept) for c in covars if not _is_numeric(df[c])}
    single_level = [c for c in texts if len(texts[c][1]) < 2]
    columns, names, scales = _design_columns(
        df, [c for c in covars if c not in single_level], reference_levels, kept, texts
    )
    sd_cols = [np.nan] * len(columns)
    if exposure is not None:
        columns = [numeric_values(df[exposure], kept) / sd] + columns
        names = [exposure] + names
        scales = ["per SD"] + scales
        sd_cols = [sd] + sd_cols
    strata_codes = None
    if strata:
        strata_codes = _text_codes(df[strata], kept)[0]
    notes: list[str] = []
    # tested column by column while each is still contiguous (a column of the stacked matrix is strided)
    constant = np.array([np.ptp(c) == 0 for c in columns], dtype=bool)
    if exposure is not None and constant[0]:
        raise CoxModelError(f"{exposure!r} is constant among the {n_rows} analysed rows")
    row_note: dict[str, list[str]] = {}
    for c in all_missing:
        row_note[c] = [_DROPPED_MISSING]
    for c in single_level:
        row_note[c] = [_DROPPED_CONSTANT]
    for n_, c_ in zip(names, constant):
        if c_:
            row_note[n_] = [_DROPPED_CONSTANT]
    dropped_constant = single_level + [n_ for n_, c_ in zip(names, constant) if c_]
    if dropped_constant:
        # R's coxph gives such a term NA; we drop it from the fit and report it with NaN figures
        warnings.warn(
            f"term(s) constant among the analysed rows, dropped: {', '.join(dropped_constant)}",
            CoxTermWarning,
            stacklevel=3,
        )
        notes.append(f"{_DROPPED_CONSTANT}: {', '.join(dropped_constant)}")
    if all_missing:
        warnings.warn(
            f"term(s) missing in every analysed row, dropped: {', '.join(all_missing)}", CoxTermWarning, stacklevel=3
        )
        notes.append(f"{_DROPPED_MISSING}: {', '.join(all_missing)}")
    dropped_terms = tuple(all_missing) + tuple(dropped_constant)
    # rows in the order asked: dropped ones keep their place with NaN figures
    all_names, all_scales, all_sd = [], [], []
    design_names = dict(zip(names, zip(scales, sd_cols)))
    order_terms = ([exposure] if exposure is not None else []) + [c for c in terms if c != exposure]
    for term in order_terms:
        if term in all_missing or term in single_level:
            all_names.append(term)
            all_scales.append("per unit" if term in all_missing or _is_numeric(df[term]) else "categorical")
            all_sd.append(np.nan)
            continue
        for n_ in [n_ for n_ in design_names if n_ == term or n_.startswith(f"{term}[")]:
            all_names.append(n_)
            all_scales.append(design_names[n_][0])
            all_sd.append(design_names[n_][1])
    keep = ~constant
    X = _stack([c for c, k_ in zip(columns, keep) if k_], n_rows)  # the design without its constant columns
    del columns
    names = [n_ for n_, k_ in zip(names, keep) if k_]
    # one sort per outcome column, shared by every model, subgroup, PH test and C-index that uses
    # it (found by content in a small cache, or handed in by the caller as ``order``); these complete
    # cases take their order in O(n)
    if order is None:
        order = time_order(numeric_values(df[time]))
    t_order = subset_order(order, kept)
    p = X.shape[1]
    method = f"Cox PH ({ties} ties, Wald CI)" + (f", stratified by {strata}" if strata else "")
    model_unestimable: str | None = None
    big: list[str] = []
    big_note: dict[str, str] = {}
    if min_epp is not None and p and n_events < min_epp * p:
        # events per parameter below the rule: not fitted at all (docs/methods.md#events-per-parameter)
        model_unestimable = (
            f"{n_events} event{'s' if n_events != 1 else ''} for {p} parameter{'s' if p != 1 else ''}"
            f" (fewer than {min_epp:g} per parameter)"
        )
        fit = None
    else:
        fit = fit_cox(X, t, ev, strata=strata_codes, ties=ties, time_order=t_order)
    if fit is not None:
        beta = fit.beta
        if not fit.converged:
            msg = f"did not converge in {fit.iterations} iteration{'s' if fit.iterations != 1 else ''}"
            notes.append(f"Cox model {msg}")
            warnings.warn(f"Cox model {msg}", CoxConvergenceWarning, stacklevel=3)
            if min_epp is not None:
                model_unestimable = msg
        if fit.information_singular:
            msg = "information matrix singular: collinear terms or an infinite coefficient"
            notes.append(msg)
            warnings.warn(msg, CoxConvergenceWarning, stacklevel=3)
            if min_epp is not None and model_unestimable is None:
                model_unestimable = "information matrix singular (collinear terms)"
        diag = np.diag(fit.var) if p else np.zeros(0)
        with np.errstate(invalid="ignore"):
            se = np.where(np.isfinite(diag) & (diag > 0), np.sqrt(np.abs(diag)), np.nan) if p else np.zeros(0)
        # R coxph.fit: a remaining Newton step that is large relative to the coefficient means the
        # log-likelihood converged while the coefficient kept growing (monotone likelihood).
        infs = np.abs(fit.score @ fit.var) if p else np.zeros(0)
        big = [n_ for n_, inf, b in zip(names, infs, beta) if inf > 1e-9 and inf > np.sqrt(1e-9) * abs(b)]
        if big:
            msg = f"log-likelihood converged before {', '.join(big)}: coefficient may be infinite"
            notes.append(msg)
            warnings.warn(msg, CoxConvergenceWarning, stacklevel=3)
            for n_ in big:
                big_note[n_] = "coefficient may be infinite (monotone likelihood)"
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            zstat = beta / se
            hr, lo, hi = np.exp(beta), np.exp(beta - z * se), np.exp(beta + z * se)
        pval = 2.0 * _sps.norm.sf(np.abs(zstat))
        if diagnostics:
            eta = (X - X.mean(axis=0)) @ beta if p else np.zeros(len(t))
            c, counts = harrell_c(t, ev, eta, strata_codes, time_order=t_order)
            ph = _ph_test(fit, names, t, ev, t_order)
        else:
            c, counts, ph = np.nan, np.zeros(3), _empty_ph()
        loglik, loglik0, iterations = fit.loglik, fit.loglik_null, fit.iterations
        converged, var = fit.converged, fit.var
    else:
        beta = np.full(p, np.nan)
        se = zstat = hr = lo = hi = pval = np.full(p, np.nan)
        c, counts = np.nan, np.zeros(3)
        ph = _empty_ph()
        loglik = loglik0 = np.nan
        iterations, converged, var = 0, False, np.full((p, p), np.nan)
    summary = pd.DataFrame(
        {
            "analysis": analysis,
            "model": model,
            "term": names,
            "estimate": hr,
            "log_hr": beta,
            "std_error": se,
            "statistic": zstat,
            "p_value": pval,
            "ci_low": lo,
            "ci_high": hi,
            "ci_level": float(level),
            "scale": "",
            "sd": np.nan,
            "n": n_rows,
            "events": n_events,
            "n_excluded": n_excluded,
            "method": method,
            "note": None,
        }
    )
    summary = summary.set_index("term").reindex(all_names).reset_index()
    summary["scale"] = all_scales
    summary["sd"] = np.asarray(all_sd, dtype=float)
    for col, val in (
        ("analysis", analysis),
        ("model", model),
        ("ci_level", float(level)),
        ("n", n_rows),
        ("events", n_events),
        ("n_excluded", n_excluded),
        ("method", method),
    ):
        summary[col] = val
    fitted_rows = summary["term"].isin(names).to_numpy()
    unestimable = np.zeros(len(summary), dtype=bool)
    reasons: list[str | None] = [None] * len(summary)
    for i, term in enumerate(summary["term"]):
        if not fitted_rows[i]:
            continue
        r = summary.iloc[i]
        why = model_unestimable
        if why is None and not (np.isfinite(r["std_error"]) and r["std_error"] > 0):
            why = "non-finite standard error"
        elif why is None and not (np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]) and r["ci_low"] > 0):
            why = "infinite confidence interval"
        elif why is None and min_epp is not None and term in big:
            why = "coefficient may be infinite (monotone likelihood)"
        if why is not None:
            unestimable[i] = True
            reasons[i] = f"not estimable: {why}"
    summary.loc[unestimable, _NUMBERS] = np.nan
    drop_note = [n_ for n_ in notes if n_.startswith("dropped")]
    other_notes = [n_ for n_ in notes if not n_.startswith("dropped")]
    exposure_rows = (summary["term"] == exposure).to_numpy() if exposure is not None else fitted_rows
    row_notes = []
    for i, term in enumerate(summary["term"]):
        parts = [reasons[i]] + row_note.get(term, [])
        if fitted_rows[i] and model_unestimable is None:
            parts += [n_ for n_ in other_notes if n_.startswith("Cox model did not converge")]
            if not unestimable[i] and term in big_note:
                parts.append(big_note[term])
        if exposure_rows[i]:
            parts += drop_note
        row_notes.append(_join(parts))
    summary["note"] = row_notes
    summary.loc[~fitted_rows, "method"] = method + "; term dropped, not estimable"
    summary = summary[_SUMMARY_COLUMNS]
    key_rows = exposure_rows & fitted_rows
    estimable = not bool(unestimable[key_rows].any()) and model_unestimable is None and bool(key_rows.any())
    model_note = _join(
        [f"not estimable: {model_unestimable}"] + drop_note
        if model_unestimable
        else [r_ for r_, k_ in zip(reasons, key_rows) if k_ and r_] + notes
    )
    return CoxResult(
        summary=summary,
        concordance=c,
        ph_test=ph,
        converged=converged,
        warnings=notes,
        n=n_rows,
        events=n_events,
        n_excluded=n_excluded,
        sd=None if exposure is None else float(sd),
        exposure=exposure,
        ties=ties,
        loglik=loglik,
        loglik_null=loglik0,
        iterations=iterations,
        coef=beta,
        var=var,
        terms=names,
        concordance_counts=counts,
        estimable=estimable,
        note=model_note,
        dropped_terms=dropped_terms,
    )


def _check_sd(sd) -> None:
    if not np.isfinite(sd) or sd <= 0:
        raise ZeroVarianceError(f"sd must be positive, got {sd!r}")


def exposure_sd(df: pd.DataFrame, exposure: str) -> float:
    """Sample SD (ddof = 1) of ``exposure`` over every row where it is present."""
    require_columns(df, [exposure])
    x = pd.to_numeric(df[exposure], errors="coerce").dropna().to_numpy(float)
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else np.nan
    if not np.isfinite(sd) or sd <= 0:
        raise ZeroVarianceError(f"SD of {exposure!r} is {sd!r} over {len(x)} rows: cannot scale per SD")
    return sd


@ci_level_keyword
def cox_per_sd(
    df: pd.DataFrame,
    time: str,
    event: str,
    exposure: str,
    covariates=(),
    ties: str = "efron",
    sd: float | None = None,
    level: float = 0.95,
    strata: str | None = None,
    *,
    model: str | None = None,
    analysis: str | None = None,
    reference_levels: dict | None = None,
    min_events_per_parameter: float | None = None,
    diagnostics: bool = True,
) -> CoxResult:
    """Cox model giving the hazard ratio per 1 SD of ``exposure``, adjusted for ``covariates``.

    Complexity: O(n p^2) per Newton step (about 5 steps), O(n log n) for Harrell's C, O(n + d p^2)
    for the PH test with d events. The follow-up column is sorted once, O(n log n), and the order
    shared with every later model, subgroup, C-index and PH test of the same column (found by
    content, docs/guides/stats.md#registry-scale); a model's complete cases take it in O(n).

    Parameters
    ----------
    df : the analysed cohort (one cohort: the SD is taken over it).
    time, event : follow-up (years) and 0/1 event columns.
    exposure : the exposure (e.g. ``pad_years``); entered as ``exposure / SD``.
    covariates : further columns; numeric ones per unit, text ones (e.g. ``sex`` F/M) dummy-coded
        against the first level in sort order or ``reference_levels[col]``.
    ties : ``"efron"`` (default) or ``"breslow"``.
    sd : the SD to scale by; default the sample SD of ``exposure`` over all rows of ``df`` where
        it is present (pass one SD to models 1-3 so they share it).
    strata : optional column; a stratified model (separate baseline hazards).
    model, analysis : labels copied into the summary.
    min_events_per_parameter : the events-per-parameter rule (docs/methods.md#events-per-parameter);
        None (default) keeps R's behaviour. When set (the report uses 5), a model with fewer events
        than this many per fitted coefficient is not fitted, and a fit that did not converge, has a
        singular information matrix or a coefficient that looks infinite is not estimable: its
        numbers are NaN and ``note`` says "not estimable: <reason>". Whatever the rule, a row with a
        non-finite standard error or an infinite CI is NaN with such a note.
    diagnostics : True (default) computes Harrell's C (``concordance``) and the PH test (``ph_test``);
        False leaves them out (C is NaN, ``ph_test`` empty), for callers that show only the hazard
        ratios: they cost about a third of a fit at registry scale. Every other figure is the same.

    Returns
    -------
    CoxResult (see its docstring for the ``summary`` columns). Raises ``NoEventsError`` without
    events, ``ZeroVarianceError`` when the SD is 0, ``CoxModelError`` when the exposure is constant
    among the complete cases; warns ``CoxConvergenceWarning`` on non-convergence (``.converged`` is
    then False) or an infinite coefficient, and ``CoxTermWarning`` when a covariate is constant
    (it is left out of the fit, its row holds NaN as R's NA coefficient, ``dropped_terms`` lists it
    and the exposure row's ``note`` says "dropped (constant in the complete cases): <terms>"); a
    text covariate with one level (a one-sex cohort) and a covariate missing in every analysed row
    are dropped the same way.
    """
    if ties not in TIES:
        raise UserError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    require_columns(df, [exposure])
    if sd is None:
        sd = exposure_sd(df, exposure)
    else:
        _check_sd(sd)
    terms = [exposure] + [c for c in covariates if c != exposure]
    return _fit_frame(
        df,
        time,
        event,
        terms,
        exposure=exposure,
        sd=float(sd),
        ties=ties,
        level=level,
        strata=strata,
        reference_levels=reference_levels,
        model=model,
        analysis=analysis,
        min_events_per_parameter=min_events_per_parameter,
        diagnostics=diagnostics,
    )


def cause_specific_cox(
    df: pd.DataFrame,
    time: str,
    event_type: str,
    exposure: str,
    covariates=(),
    cause: int = 1,
    *,
    min_events_per_parameter: float | None = None,
    **kwargs,
) -> CoxResult:
    """Cause-specific Cox model: ``cox_per_sd`` with competing events (codes other than ``cause``)
    treated as censoring. ``event_type``: 0 censored, 1 fracture, 2 death (see
    ``survival.competing_event_type``)."""
    if "level" in kwargs:
        # The keyword passes through to cox_per_sd, whose decorator stays quiet for calls from inside the
        # package; warn here so the user who wrote level= hears about it.
        warnings.warn("cause_specific_cox(level=...) is deprecated; use ci_level=", DeprecationWarning, stacklevel=2)
    require_columns(df, [event_type])
    codes = pd.to_numeric(df[event_type], errors="coerce")
    # only the columns the model reads beside the new event column (a copy of those, not of the whole table)
    covariates = list(covariates)
    cols = [c for c in dict.fromkeys([time, exposure, *covariates, kwargs.get("strata")]) if c in df.columns]
    tmp = df[cols].assign(_cause_event=(codes == cause).astype(float).where(codes.notna()))
    res = cox_per_sd(
        tmp, time, "_cause_event", exposure, covariates, min_events_per_parameter=min_events_per_parameter, **kwargs
    )
    res.summary["method"] = res.summary["method"] + f", cause-specific (cause {cause}, others censored)"
    return res


@ci_level_keyword
def group_hazard_ratios(
    df: pd.DataFrame,
    time: str,
    event: str,
    group: str,
    reference,
    ties: str = "efron",
    level: float = 0.95,
    covariates=(),
    *,
    min_events_per_parameter: float | None = None,
) -> pd.DataFrame:
    """Hazard ratio of each level of ``group`` against ``reference`` (unadjusted by default).

    Complexity: one Cox fit (see ``cox_per_sd``) plus O(n) group counts.

    Returns
    -------
    DataFrame, one row per group level (the reference first, with estimate 1 and no CI):
    ``group``, ``term``, ``estimate`` (HR), ``log_hr``, ``std_error``, ``statistic``, ``p_value``,
    ``ci_low``, ``ci_high``, ``ci_level``, ``scale``, ``n`` (model rows), ``n_group``, ``events_group``,
    ``events`` (model), ``n_excluded``, ``method``, ``note`` ("not estimable: <reason>" where the
    numbers are NaN, e.g. a group without events; see ``cox_per_sd`` for ``min_events_per_parameter``).
    When no group besides the reference has complete rows, only the reference row comes back, with a note.
    """
    require_columns(df, [time, event, group, *covariates])
    # only the columns the model reads: the copies below then cost O(n) in those, not in the whole table
    df = df[list(dict.fromkeys([time, event, group, *covariates]))]
    values = df[group].dropna().unique()
    # match the reference by value first (1 == 1.0), then by its text
    ref_value = next((v for v in values if v == reference), None)
    if ref_value is None:
        ref_value = next((v for v in values if str(v) == str(reference)), None)
    if ref_value is None:
        raise UserError(f"reference group {reference!r} is not a value of {group!r}")
    reference = str(ref_value)
    # the group as text; a text column already is (str() of each of a million values costs a second)
    text = df[group]
    if not (text.dtype == object and all(type(v) is str for v in values)):
        text = text.map(str).where(text.notna())
    tmp = df.assign(**{group: text})
    res = _fit_frame(
        tmp,
        time,
        event,
        [group] + list(covariates),
        ties=ties,
        level=level,
        reference_levels={group: str(reference)},
        min_events_per_parameter=min_events_per_parameter,
        diagnostics=False,  # the table shows the hazard ratios only
    )
    s = res.summary
    s = s[s["term"].astype(str).str.startswith(f"{group}[")].copy()
    s.insert(0, "group", s["term"].str.slice(len(group) + 1, -1))
    frame, _ = time_event(tmp, time, event, extra=[group] + list(covariates))
    counts = frame.groupby(group, observed=True)["_event"].agg(["size", "sum"])
    ref: dict[str, object] = {c: np.nan for c in s.columns}
    ref.update(
        group=str(reference),
        term=f"{group}[{reference}]",
        estimate=1.0,
        log_hr=0.0,
        ci_level=float(level),
        scale="reference",
        n=res.n,
        events=res.events,
        n_excluded=res.n_excluded,
        method=s["method"].iloc[0] if len(s) else res.summary["method"].iloc[0],
        note=None if len(s) else f"not estimable: no group besides {reference!r} has complete rows",
    )
    out = pd.concat([pd.DataFrame([ref]), s], ignore_index=True)
    out["n_group"] = out["group"].map(counts["size"]).astype("Int64")
    out["events_group"] = out["group"].map(counts["sum"]).astype("Int64")
    return out.drop(columns=["analysis", "model", "sd"])


@ci_level_keyword
def subgroup_hazard_ratios(
    df: pd.DataFrame,
    time: str,
    event: str,
    exposure: str,
    by: str = "sex",
    covariates=(),
    ties: str = "efron",
    sd: float | None = None,
    level: float = 0.95,
    *,
    min_events_per_parameter: float | None = None,
) -> pd.DataFrame:
    """HR per SD of ``exposure`` within each level of ``by``, with the interaction p value.

    Complexity: one Cox fit per level plus the two interaction models (see ``cox_per_sd``); the
    two interaction models share one sort of the follow-up.

    The SD is the whole cohort's (as ``cox_per_sd``), so subgroup HRs share one scale. ``by`` is
    dropped from the covariates inside a subgroup. The interaction test is the likelihood-ratio
    test of the exposure x ``by`` product term(s) in the whole-cohort model (same complete cases).

    Returns
    -------
    DataFrame, one row per subgroup: ``subgroup`` (the ``by`` column name), ``level``, ``term``,
    ``estimate`` (HR per SD), ``std_error``, ``statistic``, ``p_value``, ``ci_low``, ``ci_high``,
    ``ci_level``, ``scale``, ``sd``, ``n``, ``events``, ``n_excluded``, ``p_interaction``,
    ``interaction_df``, ``method``, ``note``. A subgroup that cannot be fitted (no events) or is not
    estimable (``min_events_per_parameter``, see ``cox_per_sd``) gets NaN figures and a ``note``
    "not estimable: <reason>"; the interaction p value is NaN when either of its models is not estimable.
    """
    require_columns(df, [time, event, exposure, by, *covariates])
    if sd is None:
        sd = exposure_sd(df, exposure)
    covs = [c for c in covariates if c not in (by, exposure)]
    # only the columns the models read: each subgroup and the interaction frame copy these, not the table
    df = df[list(dict.fromkeys([time, event, exposure, by, *covs]))]
    rows = []
    if ties not in TIES:
        raise UserError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    # the whole cohort's follow-up sorted once; each subgroup and the interaction models take their
    # rows' order from it in O(n). Only the hazard ratios and log-likelihoods are shown, so Harrell's
    # C and the PH test are not computed (``diagnostics=False``).
    order = time_order(numeric_values(df[time]))
    fit: dict[str, Any] = dict(
        exposure=exposure,
        sd=float(sd),
        ties=ties,
        level=level,
        min_events_per_parameter=min_events_per_parameter,
        diagnostics=False,
    )
    has_by = notna_mask(df[by])
    by_codes, levels = _text_codes(df[by], has_by)
    by_level = np.full(len(df), -1, dtype=np.intp)
    by_level[has_by] = by_codes
    for i, lev in enumerate(levels):
        in_level = by_level == i
        try:
            _check_sd(sd)  # as cox_per_sd: a bad SD makes each model's row NaN with a note
            r = _fit_frame(df, time, event, [exposure, *covs], order=order, rows=in_level, **fit)
            row = r.summary.iloc[0].to_dict()
        except CoxModelError as exc:
            warnings.warn(f"subgroup {by}={lev}: {exc}", CoxConvergenceWarning, stacklevel=2)
            row = {
                "term": exposure,
                "estimate": np.nan,
                "scale": "per SD",
                "sd": sd,
                "ci_level": level,
                "n": int(in_level.sum()),
                "events": np.nan,
                "n_excluded": np.nan,
                "method": str(exc),
                "note": f"not estimable: {exc}",
            }
        row.update(subgroup=by, level=lev)
        rows.append(row)
    # interaction: LR test of product terms on the complete cases of the full model
    need = [time, event, exposure, by, *covs]
    complete = np.logical_and.reduce([notna_mask(df[c]) for c in need])
    cc = df[complete]
    ind = pd.get_dummies(cc[by].astype(str), prefix="_lvl", dtype=float)
    ind = ind.iloc[:, 1:]
    prod = ind.mul(pd.to_numeric(cc[exposure]) / sd, axis=0).add_prefix("_x_")
    tmp = pd.concat([cc, ind, prod], axis=1)
    base_terms = covs + list(ind.columns)
    cc_order = subset_order(order, complete)
    try:
        with warnings.catch_warnings():
            # the product terms' own convergence and constant-term messages are not the user's models
            warnings.simplefilter("ignore", CoxTermWarning)
            _check_sd(sd)
            m0 = _fit_frame(tmp, time, event, [exposure] + base_terms, order=cc_order, **fit)
            m1 = _fit_frame(tmp, time, event, [exposure] + base_terms + list(prod.columns), order=cc_order, **fit)
        lr = 2.0 * (m1.loglik - m0.loglik)
        k = prod.shape[1] - sum(1 for t_ in m1.dropped_terms if t_.startswith("_x_"))
        guarded = min_events_per_parameter is not None and not (m0.estimable and m1.estimable)
        p_int = float(_sps.chi2.sf(lr, k)) if k and not guarded and np.isfinite(lr) else np.nan
    except CoxModelError as exc:
        warnings.warn(f"interaction model: {exc}", CoxConvergenceWarning, stacklevel=2)
        p_int, k = np.nan, prod.shape[1]
    out = pd.DataFrame(rows)
    out["p_interaction"] = p_int
    out["interaction_df"] = k
    cols = [
        "subgroup",
        "level",
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "ci_level",
        "scale",
        "sd",
        "n",
        "events",
        "n_excluded",
        "p_interaction",
        "interaction_df",
        "method",
        "note",
    ]
    for c in cols:
        if c not in out.columns:
            out[c] = None if c == "note" else np.nan
    out["note"] = out["note"].astype(object).where(out["note"].notna(), None)
    return out[cols]


@ci_level_keyword
def cox_model_set(
    df: pd.DataFrame,
    time: str,
    event: str,
    exposure: str = MODEL_EXPOSURE,
    models: str | dict[str, list[str]] = "fracture",
    ties: str = "efron",
    level: float = 0.95,
    analysis: str | None = None,
    reference_levels: dict | None = None,
    *,
    min_events_per_parameter: float | None = None,
) -> tuple[pd.DataFrame, dict[str, CoxResult]]:
    """Fit a named set of models (``MODEL_COVARIATES["fracture"]`` models 1-3 by default) with one SD.

    Complexity: one O(n log n) sort of the follow-up shared by all models, then per model as
    ``cox_per_sd`` without its sort.

    ``models`` is a key of ``MODEL_COVARIATES`` or a dict ``{model name: covariates}``. The SD of
    ``exposure`` is computed once over ``df`` and shared by every model, so their HRs compare;
    each model uses its own complete cases (``n``, ``n_excluded`` per row).

    Returns
    -------
    (table, results): ``table`` stacks ``CoxResult.to_frame()`` of every model (column ``model``
    names it; ``concordance`` and ``ph_global_p_value`` per model); ``results`` maps model name to
    its ``CoxResult``.
    """
    if isinstance(models, str):
        if models not in MODEL_COVARIATES:
            raise UserError(f"unknown model set {models!r}; choose from {', '.join(MODEL_COVARIATES)}")
        models = MODEL_COVARIATES[models]
    sd = exposure_sd(df, exposure)
    results: dict[str, CoxResult] = {}
    for name, covs in models.items():
        results[name] = cox_per_sd(
            df,
            time,
            event,
            exposure,
            covs,
            ties=ties,
            sd=sd,
            level=level,
            model=name,
            analysis=analysis,
            reference_levels=reference_levels,
            min_events_per_parameter=min_events_per_parameter,
        )
    table = pd.concat([r.to_frame() for r in results.values()], ignore_index=True)
    return table, results
