"""Kaplan-Meier cumulative failure, log-rank test, incidence rates, follow-up, Aalen-Johansen.

Conventions (docs/methods.md#kaplan-meier), checked against R ``survival`` in ``tests/reference/``:

- Kaplan-Meier ``S(t) = prod_{t_i <= t} (1 - d_i / n_i)``; we report the cumulative failure
  ``F = 1 - S``. Greenwood: ``Var log S = sum d_i / (n_i (n_i - d_i))``; a term with ``n_i = d_i``
  (everyone left at risk fails) is set to 0, as lifelines does (R gives an infinite variance there).
- Confidence interval default log(-log) (lifelines, Stata); ``ci="log"`` is R ``survfit``'s default
  and ``ci="plain"`` the linear one. The interval of F is 1 minus the interval of S, bounds swapped.
- Log-rank: ``survdiff``'s chi-square over all groups (df = groups - 1).
- Incidence: exact Poisson (gamma) interval, as R ``poisson.test``.
- Median follow-up: reverse Kaplan-Meier (censoring is the "event"), quantiles by R's rule.
- Aalen-Johansen cumulative incidence with competing events; the variance is the infinitesimal
  jackknife (as R ``survfit`` for multi-state data), which reduces to Greenwood without competitors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._gray import gray_score_variance
from epi_spineage.stats._survdata import group_labels, require_columns, sorted_labels, time_event, z_value

CI_TYPES = ("log-log", "log", "plain")
_AJ_VARIANCE = {"ij": "infinitesimal-jackknife", "cmprsk": "Gray delta-method (cmprsk)"}

__all__ = [
    "km_cumulative_failure",
    "km_curves",
    "logrank",
    "incidence_rates",
    "median_followup",
    "aalen_johansen",
    "competing_event_type",
    "gray_test",
    "CI_TYPES",
]


# ---------------------------------------------------------------------------------------------
# Kaplan-Meier core
# ---------------------------------------------------------------------------------------------
def _km_table(t: np.ndarray, e: np.ndarray) -> dict:
    """Distinct times with numbers at risk, events, censorings, S and the Greenwood sum."""
    uniq, inv, counts = np.unique(t, return_inverse=True, return_counts=True)
    d = np.bincount(inv, weights=e, minlength=len(uniq))
    n_risk = len(t) - np.concatenate(([0], np.cumsum(counts)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / n_risk)
        term = np.where(n_risk > d, d / (n_risk * (n_risk - d)), 0.0)
    return {
        "time": uniq,
        "n_risk": n_risk.astype(np.int64),
        "events": d.astype(np.int64),
        "censored": (counts - d).astype(np.int64),
        "surv": surv,
        "greenwood": np.cumsum(term),
    }


def _surv_ci(surv: np.ndarray, gw: np.ndarray, z: float, ci: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of S. ``gw`` is the Greenwood sum (variance of log S)."""
    se = np.sqrt(gw)
    with np.errstate(divide="ignore", invalid="ignore"):
        if ci == "log-log":
            logs = np.log(surv)
            lower = np.exp(-np.exp(np.log(-logs) - z * se / logs))
            upper = np.exp(-np.exp(np.log(-logs) + z * se / logs))
        elif ci == "log":
            lower = surv * np.exp(-z * se)
            upper = np.minimum(surv * np.exp(z * se), 1.0)
        else:  # plain
            lower = np.maximum(surv - z * se * surv, 0.0)
            upper = np.minimum(surv + z * se * surv, 1.0)
    # S = 1 (before the first event) has no spread; S = 0 is certain too.
    certain = (surv >= 1.0) | (surv <= 0.0) | (gw == 0.0)
    lower = np.where(certain, surv, lower)
    upper = np.where(certain, surv, upper)
    return lower, upper


def _check_ci(ci: str) -> str:
    if ci not in CI_TYPES:
        raise UserError(f"ci must be one of {', '.join(CI_TYPES)}; got {ci!r}")
    return ci


def _label(g):
    return "all" if g is None else g


def _with_column(df: pd.DataFrame, columns: list[str], **new: pd.Series) -> pd.DataFrame:
    """``columns`` of ``df`` (those present: ``time_event`` reports the others) with the ``new`` columns added.

    A copy of the columns a function reads rather than ``df.assign``'s copy of the whole table.
    """
    return df[[c for c in dict.fromkeys(columns) if c in df.columns]].assign(**new)


def _subsets(frame: pd.DataFrame, group: str | None):
    """(label, times, events) per group, in ``group_labels`` order. O(n G) for G groups: the group
    column is coded once (a hash pass) and each group is a mask of integer codes, not a comparison
    of text per row and group; the rows keep their order, so sums over them are unchanged."""
    t_all = frame["_time"].to_numpy()
    e_all = frame["_event"].to_numpy()
    if group is None:
        yield _label(None), t_all, e_all
        return
    codes, uniques = pd.factorize(frame[group])
    index = {u: i for i, u in enumerate(uniques)}
    # the distinct values are factorize's (no second hash pass of the column); the frame holds no missing
    # group (time_event dropped those), so they are the values group_labels would sort
    for g in sorted_labels(list(uniques)):
        m = codes == index[g]
        yield _label(g), t_all[m], e_all[m]


def _step_values(step_time, t, times, series: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Right-continuous step functions read at ``times``: ``(times, n at risk, {name: values})``.

    ``series`` maps a name to (its values at ``step_time``, its value before the first step); ``t``
    holds every participant's follow-up time, for the numbers at risk.
    """
    at = np.asarray(times, dtype=float).ravel()
    pos = np.searchsorted(step_time, at, side="right") - 1
    ok = pos >= 0
    safe = np.where(ok, pos, 0)
    values = {name: np.where(ok, v[safe], before) for name, (v, before) in series.items()}
    n_at_risk = len(t) - np.searchsorted(np.sort(t), at, side="left")
    return at, n_at_risk, values


@ci_level_keyword
def km_cumulative_failure(
    df: pd.DataFrame,
    time: str,
    event: str,
    group: str | None = None,
    times=None,
    ci: str = "log-log",
    ci_level: float = 0.95,
) -> pd.DataFrame:
    """Kaplan-Meier cumulative failure ``1 - S(t)`` with a Greenwood confidence interval.

    Complexity: O(n log n) (one sort per group, then cumulative sums over its distinct times; the
    groups are coded once, O(n G) for G groups), O(m log n) to read the curve at m ``times``.

    Parameters
    ----------
    df, time, event : the table, its follow-up column (> 0) and its 0/1 event column.
    group : optional grouping column; one curve per distinct value.
    times : evaluate at these times (right-continuous step function); default: at each distinct
        event time of each group.
    ci : ``"log-log"`` (default; lifelines, Stata), ``"log"`` (R ``survfit``) or ``"plain"``.
    ci_level : confidence level (old name ``level``, deprecated).

    Returns
    -------
    DataFrame, one row per group and time:
    ``group`` (``"all"`` without grouping), ``time``, ``estimate`` (cumulative failure 1 - S),
    ``std_error`` (Greenwood SE of S, which is also that of 1 - S), ``ci_low``, ``ci_high``
    (1 minus the bounds of S), ``ci_level``, ``n_at_risk`` (at risk just before ``time``),
    ``events`` (cumulative events up to and including ``time``), ``n`` (participants in the group
    with time and event), ``method``.
    """
    _check_ci(ci)
    z = z_value(ci_level)
    frame, _ = time_event(df, time, event, extra=[group] if group else ())
    rows = []
    for label, t, e in _subsets(frame, group):
        tab = _km_table(t, e)
        if times is None:
            idx = np.flatnonzero(tab["events"] > 0)
            at = tab["time"][idx]
            surv, gw, nrisk = tab["surv"][idx], tab["greenwood"][idx], tab["n_risk"][idx]
            cum_events = np.cumsum(tab["events"])[idx]
        else:
            at, nrisk, v = _step_values(
                tab["time"],
                t,
                times,
                {"surv": (tab["surv"], 1.0), "gw": (tab["greenwood"], 0.0), "events": (np.cumsum(tab["events"]), 0)},
            )
            surv, gw, cum_events = v["surv"], v["gw"], v["events"]
        lo, hi = _surv_ci(surv, gw, z, ci)
        rows.append(
            pd.DataFrame(
                {
                    "group": [label] * len(at),
                    "time": at,
                    "estimate": 1.0 - surv,
                    "std_error": surv * np.sqrt(gw),
                    "ci_low": 1.0 - hi,
                    "ci_high": 1.0 - lo,
                    "ci_level": float(ci_level),
                    "n_at_risk": np.asarray(nrisk, dtype=np.int64),
                    "events": np.asarray(cum_events, dtype=np.int64),
                    "n": len(t),
                    "method": f"Kaplan-Meier 1-S, Greenwood, {ci} CI",
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@ci_level_keyword
def km_curves(
    df: pd.DataFrame, time: str, event: str, group: str | None = None, ci: str = "log-log", ci_level: float = 0.95
) -> pd.DataFrame:
    """Full Kaplan-Meier step curves of cumulative failure, for plotting (``drawstyle="steps-post"``).

    Complexity: O(n log n); one row per distinct time per group, so the output has at most n rows.

    Returns
    -------
    DataFrame per group: a first row at ``time`` 0 (estimate 0), then one row per distinct time
    (events or censorings): ``group``, ``time``, ``estimate`` (1 - S after ``time``), ``ci_low``,
    ``ci_high``, ``ci_level``, ``n_at_risk`` (just before ``time``), ``events`` and ``censored``
    (at ``time``), ``n``, ``method``.
    """
    _check_ci(ci)
    z = z_value(ci_level)
    frame, _ = time_event(df, time, event, extra=[group] if group else ())
    rows = []
    for label, t, e in _subsets(frame, group):
        tab = _km_table(t, e)
        lo, hi = _surv_ci(tab["surv"], tab["greenwood"], z, ci)
        rows.append(
            pd.DataFrame(
                {
                    "group": [label] * (len(tab["time"]) + 1),
                    "time": np.concatenate(([0.0], tab["time"])),
                    "estimate": np.concatenate(([0.0], 1.0 - tab["surv"])),
                    "ci_low": np.concatenate(([0.0], 1.0 - hi)),
                    "ci_high": np.concatenate(([0.0], 1.0 - lo)),
                    "ci_level": float(ci_level),
                    "n_at_risk": np.concatenate(([len(t)], tab["n_risk"])).astype(np.int64),
                    "events": np.concatenate(([0], tab["events"])).astype(np.int64),
                    "censored": np.concatenate(([0], tab["censored"])).astype(np.int64),
                    "n": len(t),
                    "method": f"Kaplan-Meier 1-S, Greenwood, {ci} CI",
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Log-rank
# ---------------------------------------------------------------------------------------------
def _logrank_arrays(t: np.ndarray, e: np.ndarray, g: np.ndarray, n_groups: int):
    """Observed, expected and the covariance of O - E (R ``survdiff``, rho = 0)."""
    uniq, tinv = np.unique(t, return_inverse=True)
    nt = len(uniq)
    flat = tinv * n_groups + g
    counts = np.bincount(flat, minlength=nt * n_groups).reshape(nt, n_groups)
    deaths = np.bincount(flat, weights=e, minlength=nt * n_groups).reshape(nt, n_groups)
    at_risk = counts[::-1].cumsum(axis=0)[::-1].astype(float)
    d = deaths.sum(axis=1)
    y = at_risk.sum(axis=1)
    keep = d > 0
    d, y, at_risk, deaths = d[keep], y[keep], at_risk[keep], deaths[keep]
    expected = (at_risk * (d / y)[:, None]).sum(axis=0)
    observed = deaths.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(y > 1, d * (y - d) / (y * (y - 1)), 0.0)
    frac = at_risk / y[:, None]
    var = np.diag((factor[:, None] * at_risk).sum(axis=0))
    var -= (frac * factor[:, None]).T @ at_risk
    return observed, expected, var


def logrank(df: pd.DataFrame, time: str, event: str, group: str) -> pd.DataFrame:
    """Log-rank test of equal survival across the groups of ``group`` (R ``survdiff``).

    Complexity: O(n log n + u G^2) for u distinct times and G groups (one sort, counts by bincount).

    Returns
    -------
    One-row DataFrame: ``statistic`` (chi-square), ``df`` (groups - 1, the rank of the covariance),
    ``p_value``, ``n``, ``events``, ``groups`` (number of groups), ``method``.
    """
    if group is None:
        raise UserError("logrank needs a group column")
    frame, _ = time_event(df, time, event, extra=[group])
    labels = group_labels(frame, group)
    codes = pd.Categorical(frame[group], categories=labels).codes.astype(np.int64)
    obs, exp, var = _logrank_arrays(frame["_time"].to_numpy(), frame["_event"].to_numpy(), codes, len(labels))
    diff = obs - exp
    if len(labels) < 2 or obs.sum() == 0:
        stat, dof = np.nan, max(len(labels) - 1, 0)
    else:
        # As survdiff: drop the last group and use a generalised inverse (rank = df).
        v = var[:-1, :-1]
        w = diff[:-1]
        pinv = np.linalg.pinv(v, rcond=1e-10, hermitian=True)
        stat = float(w @ pinv @ w)
        dof = int(np.linalg.matrix_rank(v, tol=1e-10 * max(np.abs(v).max(), 1e-300)))
    p = float(_sps.chi2.sf(stat, dof)) if dof > 0 and np.isfinite(stat) else np.nan
    return pd.DataFrame(
        {
            "statistic": [stat],
            "df": [dof],
            "p_value": [p],
            "n": [len(frame)],
            "events": [int(frame["_event"].sum())],
            "groups": [len(labels)],
            "method": ["log-rank (survdiff, rho=0)"],
        }
    )


# ---------------------------------------------------------------------------------------------
# Rates and follow-up
# ---------------------------------------------------------------------------------------------
@ci_level_keyword
def incidence_rates(
    df: pd.DataFrame, time: str, event: str, group: str | None = None, per: float = 1000.0, ci_level: float = 0.95
) -> pd.DataFrame:
    """Events, person-time and the incidence rate per ``per`` person-years, exact Poisson CI.

    Complexity: O(n G) for G groups (the group column is coded once; each group's events and
    person-years are sums over an integer-code mask, no per-row Python).

    The interval is R ``poisson.test``'s: ``qgamma(a/2, d) / T`` and ``qgamma(1 - a/2, d + 1) / T``
    (lower bound 0 when there are no events). ``time`` is in years.

    Returns
    -------
    DataFrame, one row per group: ``group``, ``events``, ``person_years``, ``estimate`` (rate per
    ``per`` person-years), ``ci_low``, ``ci_high``, ``ci_level``, ``per_person_years`` (= ``per``),
    ``n``, ``method``.
    """
    z_value(ci_level)
    alpha = 1.0 - ci_level
    frame, _ = time_event(df, time, event, extra=[group] if group else ())
    rows = []
    for label, t, e in _subsets(frame, group):
        d = float(e.sum())
        py = float(t.sum())
        lo = _sps.gamma.ppf(alpha / 2, d) if d > 0 else 0.0
        hi = _sps.gamma.ppf(1 - alpha / 2, d + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.append(
                {
                    "group": label,
                    "events": int(d),
                    "person_years": py,
                    "estimate": d / py * per if py > 0 else np.nan,
                    "ci_low": lo / py * per if py > 0 else np.nan,
                    "ci_high": hi / py * per if py > 0 else np.nan,
                    "ci_level": float(ci_level),
                    "per_person_years": float(per),
                    "n": len(t),
                    "method": "exact Poisson (gamma) CI",
                }
            )
    return pd.DataFrame(rows)


def _survfit_quantile(time: np.ndarray, surv: np.ndarray, p: float) -> float:
    """R ``quantile.survfit``: first time where 1 - S >= p; midpoint where S sits exactly on 1 - p."""
    target = 1.0 - p
    tol = np.sqrt(np.finfo(float).eps)
    # Only the times where S changes matter.
    jump = np.concatenate(([True], np.diff(surv) != 0)) if len(surv) else np.array([], bool)
    tt, ss = time[jump], surv[jump]
    on = np.flatnonzero(np.abs(ss - target) < tol)
    if len(on):
        i = on[0]
        return float((tt[i] + tt[i + 1]) / 2) if i + 1 < len(tt) else float(tt[i])
    below = np.flatnonzero(ss < target)
    return float(tt[below[0]]) if len(below) else np.nan


def median_followup(df: pd.DataFrame, time: str, event: str, group: str | None = None) -> pd.DataFrame:
    """Median follow-up (with IQR) by the reverse Kaplan-Meier method.

    Complexity: O(n log n) (one sort per group).

    Censoring is treated as the event and events as censoring; quantiles follow R
    ``quantile(survfit(Surv(time, 1 - event) ~ 1))``.

    Returns
    -------
    DataFrame, one row per group: ``group``, ``estimate`` (median follow-up, in the units of
    ``time``), ``q1``, ``q3`` (25th and 75th percentiles), ``n``, ``events``, ``method``.
    """
    frame, _ = time_event(df, time, event, extra=[group] if group else ())
    rows = []
    for label, t, e in _subsets(frame, group):
        tab = _km_table(t, 1 - e)
        keep = tab["events"] > 0
        tt, ss = tab["time"][keep], tab["surv"][keep]
        rows.append(
            {
                "group": label,
                "estimate": _survfit_quantile(tt, ss, 0.5),
                "q1": _survfit_quantile(tt, ss, 0.25),
                "q3": _survfit_quantile(tt, ss, 0.75),
                "n": len(t),
                "events": int(e.sum()),
                "method": "reverse Kaplan-Meier",
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Competing risks
# ---------------------------------------------------------------------------------------------
def competing_event_type(
    df: pd.DataFrame,
    fracture: str = "fracture_any",
    death: str = "death",
    fracture_time: str | None = None,
    death_time: str | None = None,
    out_time: str = "cr_years",
    out_type: str = "cr_event",
) -> pd.DataFrame:
    """Add a competing-risk time and event type built from the cohort schema's outcome columns.

    ``out_type`` is 1 for a fracture that happens before or on the day of death, 2 for a death
    with no earlier fracture seen while the fracture follow-up lasted, 0 for censored.
    ``out_time`` is the fracture time, the death time, or otherwise the fracture follow-up
    (``<fracture>_years``). Rows missing any of the four columns get missing values.
    Returns a copy of ``df`` with the two columns added.
    """
    ft = fracture_time or f"{fracture}_years"
    dt = death_time or f"{death}_years"
    require_columns(df, [fracture, death, ft, dt])
    f = pd.to_numeric(df[fracture], errors="coerce").to_numpy(float)
    d = pd.to_numeric(df[death], errors="coerce").to_numpy(float)
    tf = pd.to_numeric(df[ft], errors="coerce").to_numpy(float)
    td = pd.to_numeric(df[dt], errors="coerce").to_numpy(float)
    missing = np.isnan(f) | np.isnan(d) | np.isnan(tf) | np.isnan(td)
    died = d == 1
    is_frac = (f == 1) & (~died | (tf <= td))
    is_death = ~is_frac & died & (td <= tf)
    etype = np.where(is_frac, 1, np.where(is_death, 2, 0)).astype(float)
    etime = np.where(is_frac, tf, np.where(is_death, td, tf))
    out = df.copy()
    out[out_time] = np.where(missing, np.nan, etime)
    out[out_type] = pd.array(np.where(missing, np.nan, etype), dtype="Int64")
    return out


def _cmprsk_variance(y, d, dk, s_prev, surv, cif) -> np.ndarray:
    """Gray's delta-method variance of the cumulative incidence (``cmprsk::cuminc``).

    Accumulates, over event times u, the three sums of the paper's estimator with
    ``w = S(u-)^2 (1 - (m-1)/(Y-1)) m / Y^2`` for the m failures of each cause; the variance at t is
    ``v1 + F^2 v3 - 2 F v2`` evaluated at the last failure from the cause of interest <= t (cmprsk
    updates it only there, so it stays flat across competing-only times, which we reproduce).
    """
    dc = d - dk
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_s = np.where(surv > 0, 1.0 / np.where(surv > 0, surv, 1.0), 0.0)
        tie_c = np.where(dc > 1, 1.0 - (dc - 1.0) / (y - 1.0), 1.0)
        tie_k = np.where(dk > 1, 1.0 - (dk - 1.0) / (y - 1.0), 1.0)
        w_c = np.where((dc > 0) & (surv > 0), s_prev**2 * tie_c * dc / y**2, 0.0)
        w_k = np.where(dk > 0, s_prev**2 * tie_k * dk / y**2, 0.0)
    a_c = cif * inv_s  # competing failures: t3 = 1/S(u), t4 = F(u)/S(u)
    a_k = 1.0 + inv_s * cif  # failures from the cause: t3 = 1/S(u), t4 = 1 + F(u)/S(u)
    v1 = np.cumsum(a_c**2 * w_c + a_k**2 * w_k)
    v2 = np.cumsum(inv_s * a_c * w_c + inv_s * a_k * w_k)
    v3 = np.cumsum(inv_s**2 * (w_c + w_k))
    var = v1 + cif**2 * v3 - 2.0 * cif * v2
    # hold the value of the last failure from the cause (0 before the first)
    last = np.maximum.accumulate(np.where(dk > 0, np.arange(len(dk)), -1))
    return np.where(last >= 0, np.maximum(var[np.maximum(last, 0)], 0.0), 0.0)


def _aj_one(t: np.ndarray, etype: np.ndarray, cause: int, variance: str = "ij"):
    uniq, inv, counts = np.unique(t, return_inverse=True, return_counts=True)
    d = np.bincount(inv, weights=(etype != 0).astype(float), minlength=len(uniq))
    dk = np.bincount(inv, weights=(etype == cause).astype(float), minlength=len(uniq))
    dc = d - dk
    y = (len(t) - np.concatenate(([0], np.cumsum(counts)[:-1]))).astype(float)
    surv = np.cumprod(1.0 - d / y)
    s_prev = np.concatenate(([1.0], surv[:-1]))
    cif = np.cumsum(s_prev * dk / y)
    # Infinitesimal-jackknife variance (R survfit, multi-state): cross-time terms cancel, leaving
    # var F(t) = sum_{u<=t} g_u (F(t)-F(u))^2 - 2 h_u (F(t)-F(u)) + c_u   (derivation in the docs).
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(y > d, d / (y * (y - d)), 0.0)
    h = dk * s_prev / y**2
    c = dk * (y - dk) / y * (s_prev / y) ** 2
    G = np.cumsum(g)
    GF = np.cumsum(g * cif)
    GF2 = np.cumsum(g * cif**2)
    H = np.cumsum(h)
    HF = np.cumsum(h * cif)
    C = np.cumsum(c)
    var = cif**2 * G - 2 * cif * GF + GF2 - 2 * (cif * H - HF) + C
    var = np.maximum(var, 0.0)
    if variance == "cmprsk":
        var = _cmprsk_variance(y, d, dk, s_prev, surv, cif)
    return {"time": uniq, "n_risk": y.astype(np.int64), "d": d, "dk": dk, "dc": dc, "cif": cif, "var": var}


def _cif_ci(f: np.ndarray, se: np.ndarray, z: float, ci: str):
    with np.errstate(divide="ignore", invalid="ignore"):
        if ci == "log-log":
            logf = np.log(f)
            lo = np.exp(-np.exp(np.log(-logf) - z * se / (f * logf)))
            hi = np.exp(-np.exp(np.log(-logf) + z * se / (f * logf)))
        elif ci == "log":
            lo = f * np.exp(-z * se / f)
            hi = np.minimum(f * np.exp(z * se / f), 1.0)
        else:
            lo = np.maximum(f - z * se, 0.0)
            hi = np.minimum(f + z * se, 1.0)
    certain = (f <= 0.0) | (f >= 1.0) | (se == 0.0)
    return np.where(certain, f, lo), np.where(certain, f, hi)


@ci_level_keyword
def aalen_johansen(
    df: pd.DataFrame,
    time: str,
    event_type: str,
    group: str | None = None,
    cause: int = 1,
    times=None,
    ci: str = "log-log",
    ci_level: float = 0.95,
    variance: str = "ij",
) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of ``cause`` with competing events.

    Complexity: O(n log n) (one sort per group, cumulative sums over the distinct times).

    ``event_type`` is 0 for censored, ``cause`` (default 1, fracture) for the event of interest and
    any other positive code (e.g. 2, death) for a competing event. The estimate equals R
    ``survfit(Surv(time, factor(event_type)) ~ 1)``'s probability of state ``cause``; the standard
    error is the infinitesimal jackknife (R's default for multi-state curves;
    ``variance="ij"``), or ``variance="cmprsk"``: Gray's delta-method estimator of
    ``cmprsk::cuminc``. Without competing events the estimate equals ``km_cumulative_failure``
    (and the IJ standard error its Greenwood one).

    Returns
    -------
    DataFrame, one row per group and time (distinct times with any event, or ``times``):
    ``group``, ``time``, ``cause``, ``estimate`` (cumulative incidence), ``std_error``, ``ci_low``,
    ``ci_high``, ``ci_level``, ``n_at_risk`` (just before ``time``), ``events`` (cumulative events of
    ``cause``), ``competing_events`` (cumulative competing events), ``n``, ``method``.
    """
    _check_ci(ci)
    if variance not in _AJ_VARIANCE:
        raise UserError(f"variance must be one of {', '.join(_AJ_VARIANCE)}; got {variance!r}")
    z = z_value(ci_level)
    require_columns(df, [event_type])
    codes = pd.to_numeric(df[event_type], errors="coerce")
    if (codes.dropna() < 0).any() or (codes.dropna() % 1 != 0).any():
        raise UserError(f"column {event_type!r} must hold 0 (censored) or positive integer event codes")
    indicator = (codes > 0).astype(float).where(codes.notna())
    extra = [event_type] + ([group] if group else [])
    frame, _ = time_event(_with_column(df, [time, *extra], _any_event=indicator), time, "_any_event", extra=extra)
    rows = []
    for g in group_labels(frame, group):
        sub = frame if g is None else frame[frame[group] == g]
        t = sub["_time"].to_numpy()
        et = pd.to_numeric(sub[event_type]).to_numpy().astype(np.int64)
        tab = _aj_one(t, et, cause, variance)
        cum_k = np.cumsum(tab["dk"])
        cum_c = np.cumsum(tab["dc"])
        if times is None:
            idx = np.flatnonzero(tab["d"] > 0)
            at = tab["time"][idx]
            f, var, nrisk = tab["cif"][idx], tab["var"][idx], tab["n_risk"][idx]
            ek, ec = cum_k[idx], cum_c[idx]
        else:
            at, nrisk, v = _step_values(
                tab["time"],
                t,
                times,
                {"cif": (tab["cif"], 0.0), "var": (tab["var"], 0.0), "k": (cum_k, 0), "c": (cum_c, 0)},
            )
            f, var, ek, ec = v["cif"], v["var"], v["k"], v["c"]
        se = np.sqrt(var)
        lo, hi = _cif_ci(f, se, z, ci)
        rows.append(
            pd.DataFrame(
                {
                    "group": [_label(g)] * len(at),
                    "time": at,
                    "cause": int(cause),
                    "estimate": f,
                    "std_error": se,
                    "ci_low": lo,
                    "ci_high": hi,
                    "ci_level": float(ci_level),
                    "n_at_risk": np.asarray(nrisk, dtype=np.int64),
                    "events": np.asarray(ek, dtype=np.int64),
                    "competing_events": np.asarray(ec, dtype=np.int64),
                    "n": len(t),
                    "method": f"Aalen-Johansen, {_AJ_VARIANCE[variance]} SE, {ci} CI",
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def gray_test(
    df: pd.DataFrame,
    time: str,
    event_type: str,
    group: str,
    cause: int = 1,
    strata: str | None = None,
    rho: float = 0.0,
) -> pd.DataFrame:
    """Gray's test of equal cumulative incidence of ``cause`` across the groups of ``group``.

    Complexity: O(n log n) per stratum.

    ``event_type``: 0 censored, ``cause`` the event of interest, any other positive code a
    competing event. ``strata``: optional column; scores and variances add over strata (as
    ``cmprsk::cuminc(..., strata)``). ``rho``: weight ``(1 - F(t-))^rho`` (0 = log-rank-like).

    Returns
    -------
    One-row DataFrame: ``statistic`` (chi-square), ``df`` (groups - 1), ``p_value``, ``n``,
    ``events`` (of ``cause``), ``groups``, ``cause``, ``method``.
    """
    require_columns(df, [event_type, group] + ([strata] if strata else []))
    codes = pd.to_numeric(df[event_type], errors="coerce")
    indicator = (codes > 0).astype(float).where(codes.notna())
    extra = [event_type, group] + ([strata] if strata else [])
    frame, _ = time_event(_with_column(df, [time, *extra], _any_event=indicator), time, "_any_event", extra=extra)
    labels = group_labels(frame, group)
    k = len(labels)
    et = pd.to_numeric(frame[event_type]).to_numpy().astype(np.int64)
    code = np.where(et == cause, 1, np.where(et > 0, 2, 0))
    g = pd.Categorical(frame[group], categories=labels).codes.astype(np.int64)
    t = frame["_time"].to_numpy()
    st = np.zeros(len(t), dtype=np.int64) if not strata else pd.factorize(frame[strata], sort=True)[0]
    score = np.zeros(max(k - 1, 0))
    var = np.zeros((max(k - 1, 0), max(k - 1, 0)))
    if k >= 2:
        for s_ in np.unique(st):
            m = st == s_
            sc, v = gray_score_variance(t[m], code[m], g[m], k, rho=rho)
            score += sc
            var += v
        try:
            stat = float(score @ np.linalg.solve(var, score))
        except np.linalg.LinAlgError:
            stat = float(score @ np.linalg.pinv(var) @ score)
        p = float(_sps.chi2.sf(stat, k - 1))
    else:
        stat, p = np.nan, np.nan
    return pd.DataFrame(
        {
            "statistic": [stat],
            "df": [k - 1],
            "p_value": [p],
            "n": [len(t)],
            "events": [int((code == 1).sum())],
            "groups": [k],
            "cause": [int(cause)],
            "method": [f"Gray's test (rho={rho:g})" + (f", stratified by {strata}" if strata else "")],
        }
    )
