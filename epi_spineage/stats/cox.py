"""Cox proportional-hazards models: HR per 1 SD of an exposure (PAD), group and subgroup HRs.

Conventions (METHODS.md section 6), checked against R ``survival::coxph`` in ``tests/reference/``:

- Ties: Efron by default (R ``coxph``, lifelines); ``ties="breslow"`` as Stata ``stcox``.
- Convergence as R: Newton-Raphson from 0, step-halving, ``|1 - ll_old/ll_new| <= 1e-9``,
  at most 20 iterations (lifelines' default tolerance is looser, so it differs in late digits).
- Per SD: the exposure is divided by its sample SD (ddof = 1) over every row of ``df`` with a
  non-missing exposure (the analysed cohort), unless ``sd`` is given, so that models 1-3 fitted on
  the same cohort share one SD and their HRs compare. ``HR = exp(beta_raw * SD)``.
- Complete cases per model: rows missing the time, event, exposure or any covariate are excluded
  and counted in ``n_excluded``.
- Wald intervals ``exp(beta +/- z SE)``; Harrell's C as R ``concordance``; the PH check is the
  Grambsch-Therneau score test of scaled Schoenfeld residuals against ``1 - KM(t-)`` (the
  ``cox.zph(transform="km")`` of survival 2.x; R's newer ``cox.zph`` differs a little).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._concordance import harrell_c
from epi_spineage.stats._coxfit import CoxFit, fit_cox
from epi_spineage.stats._survdata import require_columns, time_event, z_value

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
_FRACTURE_M2 = _FRACTURE_M1 + ["prevalent_vf", "height_dec5_cm", "prior_fracture", "prosthesis",
                               "rheumatoid_arthritis", "glucocorticoid"]
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
    """Numeric columns as they are; others dummy-coded against a reference level."""
    blocks, names, scales = [], [], []
    reference_levels = reference_levels or {}
    for col in columns:
        s = frame[col]
        if _is_numeric(s):
            blocks.append(pd.to_numeric(s).to_numpy(float)[:, None])
            names.append(col)
            scales.append("per unit")
            continue
        levels = sorted(s.astype(str).unique())
        ref = str(reference_levels.get(col, levels[0]))
        if ref not in levels:
            raise UserError(f"reference level {ref!r} of {col!r} is not in the data")
        for lev in levels:
            if lev == ref:
                continue
            blocks.append((s.astype(str) == lev).to_numpy(float)[:, None])
            names.append(f"{col}[{lev}]")
            scales.append(f"vs {ref}")
    X = np.hstack(blocks) if blocks else np.zeros((len(frame), 0))
    return X, names, scales


def _ph_test(fit: CoxFit, names: list[str], time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Grambsch-Therneau test with the KM transform (survival 2.x ``cox.zph``)."""
    method = "scaled Schoenfeld residuals vs 1-KM(t-) (Grambsch-Therneau)"
    p = len(names)
    if p == 0 or len(fit.event_time) < 2:
        return pd.DataFrame(columns=["term", "statistic", "df", "p_value", "rho", "method"])
    resid = fit.event_x - fit.event_xbar  # Schoenfeld residuals, ordered by (stratum, time)
    order = np.argsort(fit.event_time, kind="stable")
    resid = resid[order]
    et = fit.event_time[order]
    g = 1.0 - _km_left(time, event, et)
    xx = g - g.mean()
    nd = len(et)
    sxx = float(xx @ xx)
    V = fit.var
    test = xx @ resid  # p
    scaled = resid @ V * nd
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (xx @ scaled) ** 2 / (np.diag(V) * nd * sxx)
        rho = np.array([np.corrcoef(xx, scaled[:, j])[0, 1] if np.std(scaled[:, j]) > 0 else np.nan
                        for j in range(p)])
        glob = float(test @ V @ test) * nd / sxx
    rows = [{"term": n_, "statistic": float(s), "df": 1, "p_value": float(_sps.chi2.sf(s, 1)), "rho": float(r)}
            for n_, s, r in zip(names, stat, rho)]
    rows.append({"term": "GLOBAL", "statistic": glob, "df": p, "p_value": float(_sps.chi2.sf(glob, p)),
                 "rho": np.nan})
    out = pd.DataFrame(rows)
    out["method"] = method
    return out


def _km_left(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Left-continuous Kaplan-Meier S(t-) of the whole sample at the given times."""
    uniq, inv, counts = np.unique(time, return_inverse=True, return_counts=True)
    d = np.bincount(inv, weights=event, minlength=len(uniq))
    nrisk = len(time) - np.concatenate(([0], np.cumsum(counts)[:-1]))
    surv = np.cumprod(1.0 - d / nrisk)
    pos = np.searchsorted(uniq, at, side="left") - 1
    return np.where(pos >= 0, surv[np.maximum(pos, 0)], 1.0)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def _fit_frame(df, time, event, terms, *, exposure=None, sd=None, ties="efron", level=0.95,
               strata=None, reference_levels=None, model=None, analysis=None) -> CoxResult:
    if ties not in TIES:
        raise UserError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    z = z_value(level)
    cols = list(terms) + ([strata] if strata else [])
    require_columns(df, cols)
    frame, n_excluded = time_event(df, time, event, extra=cols)
    if len(frame) == 0:
        raise CoxModelError(f"no complete rows for the Cox model ({n_excluded} excluded for missing data)")
    ev = frame["_event"].to_numpy()
    if ev.sum() == 0:
        raise NoEventsError(f"no events in {event!r} among the {len(frame)} analysed rows")
    covars = [c for c in terms if c != exposure]
    X_cov, names, scales = _design(frame, covars, reference_levels)
    sd_cols = []
    if exposure is not None:
        x = pd.to_numeric(frame[exposure], errors="coerce").to_numpy(float)
        X = np.hstack([(x / sd)[:, None], X_cov])
        names = [exposure] + names
        scales = ["per SD"] + scales
        sd_cols = [sd] + [np.nan] * X_cov.shape[1]
    else:
        X = X_cov
        sd_cols = [np.nan] * X.shape[1]
    strata_codes = None
    if strata:
        strata_codes = pd.factorize(frame[strata].astype(str), sort=True)[0]
    notes = []
    constant = np.array([np.ptp(X[:, j]) == 0 for j in range(X.shape[1])], dtype=bool)
    if exposure is not None and constant[0]:
        raise CoxModelError(f"{exposure!r} is constant among the {len(frame)} analysed rows")
    all_names, all_scales, all_sd = names, scales, sd_cols
    if constant.any():
        # R's coxph gives such a term NA; we drop it from the fit and report it with NaN figures
        dropped = [n_ for n_, c_ in zip(names, constant) if c_]
        msg = f"term(s) constant among the analysed rows, not estimable: {', '.join(dropped)}"
        notes.append(msg)
        warnings.warn(msg, CoxTermWarning, stacklevel=3)
        X = X[:, ~constant]
        names = [n_ for n_, c_ in zip(names, constant) if not c_]
        scales = [s_ for s_, c_ in zip(scales, constant) if not c_]
        sd_cols = [s_ for s_, c_ in zip(sd_cols, constant) if not c_]
    t = frame["_time"].to_numpy()
    fit = fit_cox(X, t, ev, strata=strata_codes, ties=ties)
    if not fit.converged:
        msg = f"Cox model did not converge in {fit.iterations} iterations"
        notes.append(msg)
        warnings.warn(msg, CoxConvergenceWarning, stacklevel=3)
    if fit.information_singular:
        msg = "information matrix singular: collinear terms or an infinite coefficient"
        notes.append(msg)
        warnings.warn(msg, CoxConvergenceWarning, stacklevel=3)
    se = np.sqrt(np.maximum(np.diag(fit.var), 0.0)) if X.shape[1] else np.zeros(0)
    # R coxph.fit: a remaining Newton step that is large relative to the coefficient means the
    # log-likelihood converged while the coefficient kept growing (monotone likelihood).
    infs = np.abs(fit.score @ fit.var) if X.shape[1] else np.zeros(0)
    big = [n_ for n_, inf, b in zip(names, infs, fit.beta) if inf > 1e-9 and inf > np.sqrt(1e-9) * abs(b)]
    if big:
        msg = f"log-likelihood converged before {', '.join(big)}: coefficient may be infinite"
        notes.append(msg)
        warnings.warn(msg, CoxConvergenceWarning, stacklevel=3)
    beta = fit.beta
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        zstat = beta / se
        hr, lo, hi = np.exp(beta), np.exp(beta - z * se), np.exp(beta + z * se)
    pval = 2.0 * _sps.norm.sf(np.abs(zstat))
    eta = (X - X.mean(axis=0)) @ beta if X.shape[1] else np.zeros(len(t))
    c, counts = harrell_c(t, ev, eta, strata_codes)
    method = f"Cox PH ({ties} ties, Wald CI)" + (f", stratified by {strata}" if strata else "")
    summary = pd.DataFrame({
        "analysis": analysis, "model": model, "term": names,
        "estimate": hr, "log_hr": beta, "std_error": se, "statistic": zstat, "p_value": pval,
        "ci_low": lo, "ci_high": hi, "ci_level": float(level),
        "scale": scales, "sd": np.asarray(sd_cols, dtype=float), "n": len(frame), "events": int(ev.sum()),
        "n_excluded": n_excluded, "method": method,
    })
    if constant.any():  # dropped terms keep their row, in the requested order, with NaN figures
        summary = summary.set_index("term").reindex(all_names).reset_index()
        summary["scale"] = all_scales
        summary["sd"] = np.asarray(all_sd, dtype=float)
        for col, val in (("analysis", analysis), ("model", model), ("ci_level", float(level)), ("n", len(frame)),
                         ("events", int(ev.sum())), ("n_excluded", n_excluded)):
            summary[col] = val
        summary["method"] = np.where(constant, method + "; constant term, not estimable", method)
        summary = summary[["analysis", "model", "term", "estimate", "log_hr", "std_error", "statistic", "p_value",
                           "ci_low", "ci_high", "ci_level", "scale", "sd", "n", "events", "n_excluded", "method"]]
    return CoxResult(
        summary=summary, concordance=c, ph_test=_ph_test(fit, names, t, ev), converged=fit.converged,
        warnings=notes, n=len(frame), events=int(ev.sum()), n_excluded=n_excluded,
        sd=None if exposure is None else float(sd), exposure=exposure, ties=ties, loglik=fit.loglik,
        loglik_null=fit.loglik_null, iterations=fit.iterations, coef=beta, var=fit.var, terms=names,
        concordance_counts=counts,
    )


def exposure_sd(df: pd.DataFrame, exposure: str) -> float:
    """Sample SD (ddof = 1) of ``exposure`` over every row where it is present."""
    require_columns(df, [exposure])
    x = pd.to_numeric(df[exposure], errors="coerce").dropna().to_numpy(float)
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else np.nan
    if not np.isfinite(sd) or sd <= 0:
        raise ZeroVarianceError(f"SD of {exposure!r} is {sd!r} over {len(x)} rows: cannot scale per SD")
    return sd


@ci_level_keyword
def cox_per_sd(df: pd.DataFrame, time: str, event: str, exposure: str, covariates=(),
               ties: str = "efron", sd: float | None = None, level: float = 0.95, strata: str | None = None,
               *, model: str | None = None, analysis: str | None = None,
               reference_levels: dict | None = None) -> CoxResult:
    """Cox model giving the hazard ratio per 1 SD of ``exposure``, adjusted for ``covariates``.

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

    Returns
    -------
    CoxResult (see its docstring for the ``summary`` columns). Raises ``NoEventsError`` without
    events, ``ZeroVarianceError`` when the SD is 0, ``CoxModelError`` when the exposure is constant
    among the complete cases; warns ``CoxConvergenceWarning`` on non-convergence (``.converged`` is
    then False) or an infinite coefficient, and ``CoxTermWarning`` when a covariate is constant
    (it is left out of the fit and its row holds NaN, as R's NA coefficient).
    """
    if ties not in TIES:
        raise UserError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    require_columns(df, [exposure])
    if sd is None:
        sd = exposure_sd(df, exposure)
    elif not np.isfinite(sd) or sd <= 0:
        raise ZeroVarianceError(f"sd must be positive, got {sd!r}")
    terms = [exposure] + [c for c in covariates if c != exposure]
    return _fit_frame(df, time, event, terms, exposure=exposure, sd=float(sd), ties=ties, level=level,
                      strata=strata, reference_levels=reference_levels, model=model, analysis=analysis)


def cause_specific_cox(df: pd.DataFrame, time: str, event_type: str, exposure: str, covariates=(),
                       cause: int = 1, **kwargs) -> CoxResult:
    """Cause-specific Cox model: ``cox_per_sd`` with competing events (codes other than ``cause``)
    treated as censoring. ``event_type``: 0 censored, 1 fracture, 2 death (see
    ``survival.competing_event_type``)."""
    require_columns(df, [event_type])
    codes = pd.to_numeric(df[event_type], errors="coerce")
    tmp = df.assign(_cause_event=(codes == cause).astype(float).where(codes.notna()))
    res = cox_per_sd(tmp, time, "_cause_event", exposure, covariates, **kwargs)
    res.summary["method"] = res.summary["method"] + f", cause-specific (cause {cause}, others censored)"
    return res


@ci_level_keyword
def group_hazard_ratios(df: pd.DataFrame, time: str, event: str, group: str, reference,
                        ties: str = "efron", level: float = 0.95, covariates=()) -> pd.DataFrame:
    """Hazard ratio of each level of ``group`` against ``reference`` (unadjusted by default).

    Returns
    -------
    DataFrame, one row per group level (the reference first, with estimate 1 and no CI):
    ``group``, ``term``, ``estimate`` (HR), ``log_hr``, ``std_error``, ``statistic``, ``p_value``,
    ``ci_low``, ``ci_high``, ``ci_level``, ``scale``, ``n`` (model rows), ``n_group``, ``events_group``,
    ``events`` (model), ``n_excluded``, ``method``.
    """
    require_columns(df, [group])
    values = df[group].dropna().unique()
    # match the reference by value first (1 == 1.0), then by its text
    ref_value = next((v for v in values if v == reference), None)
    if ref_value is None:
        ref_value = next((v for v in values if str(v) == str(reference)), None)
    if ref_value is None:
        raise UserError(f"reference group {reference!r} is not a value of {group!r}")
    reference = str(ref_value)
    tmp = df.assign(**{group: df[group].map(str).where(df[group].notna())})
    res = _fit_frame(tmp, time, event, [group] + list(covariates), ties=ties, level=level,
                     reference_levels={group: str(reference)})
    s = res.summary
    s = s[s["term"].str.startswith(f"{group}[")].copy()
    s.insert(0, "group", s["term"].str.slice(len(group) + 1, -1))
    frame, _ = time_event(tmp, time, event, extra=[group] + list(covariates))
    counts = frame.groupby(group)["_event"].agg(["size", "sum"])
    ref = {c: np.nan for c in s.columns}
    ref.update(group=str(reference), term=f"{group}[{reference}]", estimate=1.0, log_hr=0.0,
               ci_level=float(level), scale="reference", n=res.n, events=res.events,
               n_excluded=res.n_excluded, method=s["method"].iloc[0] if len(s) else "")
    out = pd.concat([pd.DataFrame([ref]), s], ignore_index=True)
    out["n_group"] = out["group"].map(counts["size"]).astype("Int64")
    out["events_group"] = out["group"].map(counts["sum"]).astype("Int64")
    return out.drop(columns=["analysis", "model", "sd"])


@ci_level_keyword
def subgroup_hazard_ratios(df: pd.DataFrame, time: str, event: str, exposure: str, by: str = "sex",
                           covariates=(), ties: str = "efron", sd: float | None = None,
                           level: float = 0.95) -> pd.DataFrame:
    """HR per SD of ``exposure`` within each level of ``by``, with the interaction p value.

    The SD is the whole cohort's (as ``cox_per_sd``), so subgroup HRs share one scale. ``by`` is
    dropped from the covariates inside a subgroup. The interaction test is the likelihood-ratio
    test of the exposure x ``by`` product term(s) in the whole-cohort model (same complete cases).

    Returns
    -------
    DataFrame, one row per subgroup: ``subgroup`` (the ``by`` column name), ``level``, ``term``,
    ``estimate`` (HR per SD), ``std_error``, ``statistic``, ``p_value``, ``ci_low``, ``ci_high``,
    ``ci_level``, ``scale``, ``sd``, ``n``, ``events``, ``n_excluded``, ``p_interaction``,
    ``interaction_df``, ``method``. A subgroup that cannot be fitted (no events) gets NaN figures.
    """
    require_columns(df, [exposure, by])
    if sd is None:
        sd = exposure_sd(df, exposure)
    covs = [c for c in covariates if c not in (by, exposure)]
    rows = []
    levels = sorted(df[by].dropna().astype(str).unique())
    for lev in levels:
        sub = df[df[by].astype(str) == lev]
        try:
            r = cox_per_sd(sub, time, event, exposure, covs, ties=ties, sd=sd, level=level)
            row = r.summary.iloc[0].to_dict()
        except CoxModelError as exc:
            warnings.warn(f"subgroup {by}={lev}: {exc}", CoxConvergenceWarning, stacklevel=2)
            row = {"term": exposure, "estimate": np.nan, "scale": "per SD", "sd": sd, "ci_level": level,
                   "n": int(len(sub)), "events": np.nan, "n_excluded": np.nan, "method": str(exc)}
        row.update(subgroup=by, level=lev)
        rows.append(row)
    # interaction: LR test of product terms on the complete cases of the full model
    need = [time, event, exposure, by, *covs]
    cc = df.dropna(subset=need)
    ind = pd.get_dummies(cc[by].astype(str), prefix="_lvl", dtype=float)
    ind = ind.iloc[:, 1:]
    prod = ind.mul(pd.to_numeric(cc[exposure]) / sd, axis=0).add_prefix("_x_")
    tmp = pd.concat([cc, ind, prod], axis=1)
    base_terms = covs + list(ind.columns)
    try:
        m0 = cox_per_sd(tmp, time, event, exposure, base_terms, ties=ties, sd=sd, level=level)
        m1 = cox_per_sd(tmp, time, event, exposure, base_terms + list(prod.columns), ties=ties, sd=sd,
                        level=level)
        lr = 2.0 * (m1.loglik - m0.loglik)
        k = prod.shape[1]
        p_int = float(_sps.chi2.sf(lr, k)) if k else np.nan
    except CoxModelError as exc:
        warnings.warn(f"interaction model: {exc}", CoxConvergenceWarning, stacklevel=2)
        p_int, k = np.nan, prod.shape[1]
    out = pd.DataFrame(rows)
    out["p_interaction"] = p_int
    out["interaction_df"] = k
    cols = ["subgroup", "level", "term", "estimate", "std_error", "statistic", "p_value", "ci_low",
            "ci_high", "ci_level", "scale", "sd", "n", "events", "n_excluded", "p_interaction",
            "interaction_df", "method"]
    for c in cols:
        if c not in out.columns:
            out[c] = np.nan
    return out[cols]


@ci_level_keyword
def cox_model_set(df: pd.DataFrame, time: str, event: str, exposure: str = MODEL_EXPOSURE,
                  models: str | dict[str, list[str]] = "fracture", ties: str = "efron", level: float = 0.95,
                  analysis: str | None = None, reference_levels: dict | None = None,
                  ) -> tuple[pd.DataFrame, dict[str, CoxResult]]:
    """Fit a named set of models (``MODEL_COVARIATES["fracture"]`` models 1-3 by default) with one SD.

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
        results[name] = cox_per_sd(df, time, event, exposure, covs, ties=ties, sd=sd, level=level, model=name,
                                   analysis=analysis, reference_levels=reference_levels)
    table = pd.concat([r.to_frame() for r in results.values()], ignore_index=True)
    return table, results
