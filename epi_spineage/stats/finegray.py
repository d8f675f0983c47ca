"""Fine-Gray proportional subdistribution hazards regression, equal to R ``cmprsk::crr``.

Model (Fine and Gray, JASA 1999; 94: 496-509): the subdistribution hazard of the event of interest,
``lambda_1(t | x) = lambda_10(t) exp(x' beta)``, where a participant who had the competing event
stays in the risk set after it, down-weighted by the inverse probability of remaining uncensored.
``exp(beta)`` is the subdistribution hazard ratio (sHR): it orders the cumulative incidence
(a covariate with sHR > 1 raises the cumulative incidence of the event at every time), but it is not
a rate ratio among those still event-free (that is the cause-specific HR, ``cause_specific_cox``).

Conventions, all those of ``cmprsk::crr`` (Gray's Fortran ``crrfsv``/``crrvv``), so that the
estimates equal R's to rounding when crr is run to convergence (``gtol = 1e-9, maxiter = 100``;
``tests/reference/finegray_reference.R``):

- Censoring weights ``G(t-)``: the Kaplan-Meier estimate of the censoring distribution (censored =
  "event"), just before t; those who fail (either cause) at t are still at risk of censoring at t.
  One censoring group (crr's ``cengroup`` is not offered).
- At a distinct time t of the event of interest, the risk set holds everyone with follow-up >= t
  (weight 1) and everyone who had the competing event before t, with weight
  ``G(t-) / G(t_i-)``. Tied events: Breslow.
- Newton-Raphson from 0 with crr's backtracking (halve the step while the objective does not fall
  by ``1e-4`` of the predicted decrease), stopped when the step is below ``tol`` (relative).
- Variance: crr's sandwich ``I^-1 (sum_i (eta_i + psi_i)(eta_i + psi_i)') I^-1``, where eta_i is
  subject i's score contribution (its martingale residual part) and psi_i the term that accounts
  for estimating G (Fine and Gray 1999, section 3; ``crrvv``). Wald CIs on the log scale.

Complexity: crr loops over pairs of subjects (O(n^2) per iteration and O(n^3) worst case for the
variance). Here every risk-set sum is a prefix or suffix cumulative sum over rows sorted by time, so
an iteration costs O(n p^2) after one O(n log n) sort, and the n x p x p second moments are never
formed: ``sum_k d_k S2_k / S0_k = X' diag(e C) X`` with ``C_i`` a cumulative sum over event times
(as in ``_coxfit``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._coxfit import _single_thread_blas
from epi_spineage.stats._survdata import require_columns, z_value

__all__ = ["FineGrayResult", "FineGrayWarning", "fine_gray", "fit_fine_gray"]


class FineGrayWarning(UserWarning):
    """The Fine-Gray fit did not converge, or its information matrix is singular."""


@dataclass
class FineGrayFit:
    """Raw fit on the design matrix (no names): coefficients, sandwich and naive variance."""

    beta: np.ndarray
    var: np.ndarray  # sandwich (crr's $var)
    var_naive: np.ndarray  # inverse information (crr's solve($inf))
    loglik: float  # crr's $loglik (log pseudo-likelihood at beta)
    loglik_null: float  # at beta = 0
    score: np.ndarray
    iterations: int
    converged: bool
    information_singular: bool


@dataclass
class FineGrayResult:
    """A fitted Fine-Gray model.

    ``summary``: one row per term, columns ``analysis, model, term, estimate`` (sHR), ``log_shr``,
    ``std_error`` (of log sHR, crr's sandwich), ``statistic`` (Wald z), ``p_value``, ``ci_low``,
    ``ci_high`` (sHR scale), ``ci_level``, ``scale`` ("per SD", "per unit" or "vs <reference>"),
    ``sd`` (exposure row only), ``n``, ``events`` (event of interest), ``n_competing``,
    ``n_censored``, ``n_excluded`` (rows missing time, event type, exposure or a covariate),
    ``method``.
    """

    summary: pd.DataFrame
    converged: bool
    n: int
    events: int
    n_competing: int
    n_excluded: int
    sd: float | None
    exposure: str | None
    loglik: float
    loglik_null: float
    iterations: int
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    var: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    var_naive: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    terms: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The summary with ``loglik`` and ``converged`` as columns."""
        out = self.summary.copy()
        out["loglik"] = self.loglik
        out["converged"] = self.converged
        return out


# ---------------------------------------------------------------------------------------------
# the fit on arrays
# ---------------------------------------------------------------------------------------------
def _blocks(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of the sorted ``t`` and the first row of each: ``np.unique(t, return_index=True)``
    without its O(n log n) re-sort and its n-sized work arrays."""
    new = np.empty(len(t), dtype=bool)
    new[:1] = True
    np.not_equal(t[1:], t[:-1], out=new[1:])
    first = np.flatnonzero(new)
    return t[first], first


class _Layout:
    """Sort order, censoring weights and event-time bookkeeping (fixed across iterations).

    Rows are sorted by time. ``g`` is G(t_i-) for each row; the distinct times of the event of
    interest are indexed k with multiplicity ``dk`` and weight ``gk = G(t_k-)``.
    """

    def __init__(self, time: np.ndarray, etype: np.ndarray):
        order = np.argsort(time, kind="stable")
        self.order = order
        t = time[order]
        e = etype[order]
        self.time = t
        self.fail = e == 1
        self.comp = e == 2
        cens = e == 0
        n = len(t)
        uniq, first = _blocks(t)
        at_risk = n - first  # rows with time >= u (failures at u still at risk of censoring)
        c = np.bincount(np.searchsorted(uniq, t[cens]), minlength=len(uniq))
        with np.errstate(divide="ignore", invalid="ignore"):
            surv = np.cumprod(1.0 - c / at_risk)  # G(u) after the censorings at u
        g_left = np.concatenate(([1.0], surv[:-1]))  # G(u-)
        # crr reads G just below each time (t * (1 - 100 eps)); at t = 0 that is G(0) itself
        g_left = np.where(uniq == 0.0, surv, g_left)
        pos = np.searchsorted(uniq, t)
        self.g = g_left[pos]
        # distinct failure times: k index, first row (start of the "time >= t_k" block), d_k
        frows = np.flatnonzero(self.fail)
        self.frows = frows
        ft = t[frows]
        fk_new = np.concatenate(([True], ft[1:] != ft[:-1])) if len(frows) else np.zeros(0, bool)
        self.k_of_fail = np.cumsum(fk_new) - 1
        tk = ft[fk_new]
        self.tk = tk
        self.dk = np.bincount(self.k_of_fail, minlength=len(tk)).astype(float)
        self.start_k = np.searchsorted(t, tk, side="left")  # first row with time >= t_k
        self.gk = self.g[self.start_k]
        # for each row: the number of failure times <= t_i (k < m_i), and for competing rows the
        # number of failure times <= t_i as well (failure times > t_i are the competing tail)
        self.m = np.searchsorted(tk, t, side="right")
        # competing rows with time < t_k: prefix over sorted rows up to start_k
        self.comp_idx = np.flatnonzero(self.comp)
        self.comp_before_k = np.searchsorted(self.comp_idx, self.start_k)  # competing rows before start_k


def _sums(lay: _Layout, X: np.ndarray, beta: np.ndarray):
    """Risk-set sums S0_k, S1_k at each distinct failure time and the per-row exp(x'beta)."""
    eta = X @ beta
    w = np.exp(eta)
    W = np.empty((len(w), X.shape[1] + 1))
    W[:, 0] = w
    np.multiply(X, w[:, None], out=W[:, 1:])
    # competing rows with time < t_k, weight G(t_k-)/G(t_i-): a prefix sum of W / G over the competing
    # rows alone (the other rows add zeros), read at the number of competing rows before start_k
    ci = lay.comp_idx
    Wc = W[ci] / np.where(lay.g[ci] > 0, lay.g[ci], 1.0)[:, None]
    prefix = np.vstack((np.zeros((1, W.shape[1])), np.cumsum(Wc, axis=0)))
    del Wc
    # rows with time >= t_k: suffix sum from start_k (always a row: a failure is at t_k), in place
    np.cumsum(W[::-1], axis=0, out=W[::-1])
    S = W[lay.start_k]
    del W
    S += lay.gk[:, None] * prefix[lay.comp_before_k]
    return eta, w, S


def _objective(lay: _Layout, X: np.ndarray, beta: np.ndarray) -> float:
    """Log pseudo-likelihood (crr's ``$loglik``; crr minimises its negative)."""
    eta, _, S = _sums(lay, X, beta)
    return float(eta[lay.frows].sum() - lay.dk @ np.log(S[:, 0]))


def _derivatives(lay: _Layout, X: np.ndarray, beta: np.ndarray):
    """Log pseudo-likelihood, score, information, and the per-row pieces for the variance."""
    eta, w, S = _sums(lay, X, beta)
    S0 = S[:, 0]
    xbar = S[:, 1:] / S0[:, None]
    dk = lay.dk
    loglik = float(eta[lay.frows].sum() - dk @ np.log(S0))
    score = X[lay.frows].sum(axis=0) - dk @ xbar
    # C_i = sum_{k: t_k <= t_i} d_k / S0_k  (+ for competing rows (1/G_i) sum_{t_k > t_i} d_k G_k / S0_k)
    # D_i = the same sums of d_k xbar_k / S0_k (p-vectors)
    a = dk / S0
    ag = a * lay.gk
    ca = np.concatenate(([0.0], np.cumsum(a)))
    cag = np.concatenate(([0.0], np.cumsum(ag)))
    B = a[:, None] * xbar
    BG = ag[:, None] * xbar
    cb = np.vstack((np.zeros((1, X.shape[1])), np.cumsum(B, axis=0)))
    cbg = np.vstack((np.zeros((1, X.shape[1])), np.cumsum(BG, axis=0)))
    m = lay.m
    C = ca[m].copy()
    D = cb[m].copy()
    ci = lay.comp_idx
    if len(ci):
        inv_g = 1.0 / lay.g[ci]
        C[ci] += (cag[-1] - cag[m[ci]]) * inv_g
        D[ci] += (cbg[-1] - cbg[m[ci]]) * inv_g[:, None]
    info = (X * (w * C)[:, None]).T @ X - (xbar * dk[:, None]).T @ xbar
    return loglik, score, info, (w, C, D, xbar, S0)


def _sandwich_middle(lay: _Layout, X: np.ndarray, pieces) -> np.ndarray:
    """sum_i (eta_i + psi_i)(eta_i + psi_i)' as crr's ``crrvv`` (one censoring group).

    Memory: the n x p matrix U and one n-vector besides X; the other sums run over the competing rows
    or the distinct censoring times only (adding the zeros of the other rows would change no value).
    """
    w, C, D, xbar, S0 = pieces
    n, p = X.shape
    # eta_i: dN part (failures) minus the d Lambda part, -(w_i (x_i C_i - D_i)), built in place
    U = X * C[:, None]
    U -= D
    U *= w[:, None]
    np.negative(U, out=U)
    fr = lay.frows
    U[fr] += X[fr] - xbar[lay.k_of_fail]
    # psi_i: q(t) = A1(t) R0(t) - A0(t) R1(t), where A are sums over competing rows with time < t
    # of e_j x_j / G_j (A0 without x), and R are suffix sums over failure times t_k >= t of
    # d_k G_k / S0_k (R1 with xbar_k). Then psi_i = -sum_{censored j, t_j <= t_i} q(t_j) / Y(t_j)^2
    # + [i censored] q(t_i) / Y(t_i), with Y(t) the number with time >= t.
    t = lay.time
    uniq, first = _blocks(t)
    censored = ~lay.fail & ~lay.comp
    ccount = np.bincount(np.searchsorted(uniq, t[censored]), minlength=len(uniq))
    uc = np.flatnonzero(ccount)  # the distinct times with a censoring: q is needed there only
    if not len(uc):
        return U.T @ U
    tc, first_c, cc = uniq[uc], first[uc], ccount[uc]
    Yc = (n - first_c).astype(float)
    del uniq, first, ccount, uc
    ci = lay.comp_idx
    Wc = w[ci] / np.where(lay.g[ci] > 0, lay.g[ci], 1.0)
    before = np.searchsorted(ci, first_c)  # competing rows before the block of u: time < u
    del first_c
    A0 = np.concatenate(([0.0], np.cumsum(Wc)))[before]
    A1 = np.vstack((np.zeros((1, p)), np.cumsum(X[ci] * Wc[:, None], axis=0)))[before]
    del before
    r = lay.dk * lay.gk / S0
    R0 = np.concatenate((np.cumsum(r[::-1])[::-1], [0.0]))
    R1 = np.vstack((np.cumsum((r[:, None] * xbar)[::-1], axis=0)[::-1], np.zeros((1, p))))
    kk = np.searchsorted(lay.tk, tc, side="left")  # first failure time >= u
    R0k = R0[kk]
    q = np.empty((len(tc), p))
    for col in range(p):
        q[:, col] = A1[:, col] * R0k - A0 * R1[kk, col]
    del A1, A0, R0k, kk
    # ss2 after the censorings at u, for every row with time u; row 0 (no censoring time <= t_i) is 0
    ss2 = np.zeros((len(tc) + 1, p))
    np.multiply(q, (cc / Yc**2)[:, None], out=ss2[1:])
    np.cumsum(ss2[1:], axis=0, out=ss2[1:])
    np.negative(ss2[1:], out=ss2[1:])
    j = np.searchsorted(tc, t, side="right")  # censoring times <= t_i, + 1 into ss2
    cr = np.flatnonzero(censored)
    own = j[cr] - 1  # a censored row's own time is a censoring time
    for col in range(p):  # a column at a time: one n-vector, not an n x p psi
        psi = ss2[j, col]
        psi[cr] += q[own, col] / Yc[own]
        U[:, col] += psi
    return U.T @ U


def fit_fine_gray(
    X: np.ndarray, time: np.ndarray, etype: np.ndarray, *, max_iter: int = 100, tol: float = 1e-10
) -> FineGrayFit:
    """Fit on arrays. ``etype``: 0 censored, 1 event of interest, 2 competing (already recoded).

    Newton-Raphson from 0 with crr's backtracking line search; stops when the Newton step is below
    ``tol * max(1, |beta|)`` in every coordinate (crr's ``gtol`` on the gradient is looser).
    """
    X = np.asarray(X, dtype=float)
    with _single_thread_blas():
        lay = _Layout(np.asarray(time, dtype=float), np.asarray(etype))
        # centring leaves the Breslow pseudo-likelihood unchanged and keeps exp() in range (in place: the
        # means are taken first, so the values are those of Xs - Xs.mean(axis=0))
        Xc = X[lay.order]
        if len(Xc):
            Xc -= Xc.mean(axis=0)
        p = X.shape[1]
        beta = np.zeros(p)
        loglik, score, info, pieces = _derivatives(lay, Xc, beta)
        loglik0 = loglik
        converged = p == 0
        singular = False
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007  (`it` is read after the loop: the iteration count)
            if p == 0:
                break
            try:
                step = np.linalg.solve(info, score)
            except np.linalg.LinAlgError:
                singular = True
                break
            # crr: halve while f(b + s) > f(b) + 1e-4 * s'grad(f) (f the negative log-likelihood)
            new = beta + step
            f_new = _objective(lay, Xc, new)
            halvings = 0
            while not np.isfinite(f_new) or -f_new > -loglik - 1e-4 * float(step @ score):
                halvings += 1
                if halvings > 20:
                    break
                step = step * 0.5
                new = beta + step
                f_new = _objective(lay, Xc, new)
            if halvings > 20:
                break
            beta = new
            loglik, score, info, pieces = _derivatives(lay, Xc, beta)
            if np.all(np.abs(step) <= tol * np.maximum(1.0, np.abs(beta))):
                converged = True
                break
        try:
            var_naive = np.linalg.inv(info) if p else np.zeros((0, 0))
            if p and (not np.all(np.isfinite(var_naive)) or np.any(np.diag(var_naive) <= 0)):
                singular = True
        except np.linalg.LinAlgError:
            singular = True
            var_naive = np.linalg.pinv(info)
        middle = _sandwich_middle(lay, Xc, pieces) if p else np.zeros((0, 0))
        var = var_naive @ middle @ var_naive.T if p else np.zeros((0, 0))
    return FineGrayFit(
        beta=beta,
        var=var,
        var_naive=var_naive,
        loglik=loglik,
        loglik_null=loglik0,
        score=score,
        iterations=it,
        converged=converged,
        information_singular=singular,
    )


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
@ci_level_keyword
def fine_gray(
    df: pd.DataFrame,
    time: str,
    event_type: str,
    exposure: str,
    covariates=(),
    *,
    failcode: int = 1,
    cencode: int = 0,
    per_sd: bool = True,
    sd: float | None = None,
    level: float = 0.95,
    model: str | None = None,
    analysis: str | None = None,
    reference_levels: dict | None = None,
) -> FineGrayResult:
    """Fine-Gray subdistribution hazard ratio of ``exposure`` (per SD by default), adjusted.

    Parameters
    ----------
    df : the analysed cohort.
    time : follow-up to the first event (years), e.g. ``cr_years`` from ``competing_event_type``.
    event_type : ``cencode`` (default 0) censored, ``failcode`` (default 1) the event of interest,
        any other value the competing event (``competing_event_type`` codes death as 2).
    exposure : the exposure (e.g. ``pad_years``). With ``per_sd`` it enters as ``exposure / SD``,
        the SD being the sample SD over every row of ``df`` with the exposure present (as
        ``cox_per_sd``) unless ``sd`` is given.
    covariates : further columns; numeric per unit, text dummy-coded against the first level in
        sort order or ``reference_levels[col]`` (as ``cox_per_sd``).
    level : confidence level of the Wald intervals.
    model, analysis : labels copied into the summary.

    Returns
    -------
    FineGrayResult. Its ``summary`` has one row per term: ``analysis``, ``model``, ``term``,
    ``estimate`` (subdistribution HR), ``log_shr``, ``std_error`` (robust sandwich SE of the log
    sHR, as ``crr``), ``statistic`` (Wald z), ``p_value``, ``ci_low``, ``ci_high``, ``ci_level``,
    ``scale``, ``sd``, ``n`` (complete rows), ``events`` (events of interest), ``n_competing``,
    ``n_censored``, ``n_excluded``, ``method``.

    Raises ``UserError`` for bad input (times < 0, no events of interest, constant exposure).
    Warns ``FineGrayWarning`` when the fit does not converge or the information is singular.

    References: Fine JP, Gray RJ. A proportional hazards model for the subdistribution of a
    competing risk. JASA 1999;94:496-509. R package ``cmprsk`` (Gray), function ``crr``.
    """
    z = z_value(level)
    covariates = [c for c in covariates if c != exposure]
    require_columns(df, [time, event_type, exposure, *covariates])
    if per_sd:
        if sd is None:
            from epi_spineage.stats.cox import exposure_sd

            sd = exposure_sd(df, exposure)
        elif not np.isfinite(sd) or sd <= 0:
            raise UserError(f"sd must be positive, got {sd!r}")
    cols = [time, event_type, exposure, *covariates]
    keep = df[cols].notna().all(axis=1).to_numpy()
    frame = df.loc[keep, cols]
    n_excluded = int((~keep).sum())
    t = pd.to_numeric(frame[time], errors="coerce").to_numpy(float)
    code = pd.to_numeric(frame[event_type], errors="coerce").to_numpy(float)
    if np.isnan(t).any() or (t < 0).any() or not np.isfinite(t).all():
        raise UserError(f"column {time!r} must hold non-negative finite follow-up times")
    if np.isnan(code).any():
        raise UserError(f"column {event_type!r} must hold numeric event codes")
    etype = np.where(code == failcode, 1, np.where(code == cencode, 0, 2))
    if len(frame) == 0:
        raise UserError(f"no complete rows for the Fine-Gray model ({n_excluded} excluded for missing data)")
    events = int((etype == 1).sum())
    if events == 0:
        raise UserError(f"no events with {event_type} == {failcode} among the {len(frame)} analysed rows")
    # the same coding of covariates as cox_per_sd
    from epi_spineage.stats.cox import _design

    X_cov, names, scales = _design(frame, covariates, reference_levels)
    x = pd.to_numeric(frame[exposure], errors="coerce").to_numpy(float)
    if np.isnan(x).any():
        raise UserError(f"column {exposure!r} has non-numeric values")
    if np.ptp(x) == 0:
        raise UserError(f"{exposure!r} is constant among the {len(frame)} analysed rows")
    X = np.hstack([(x / sd if per_sd else x)[:, None], X_cov])
    names = [exposure] + names
    scales = ["per SD" if per_sd else "per unit"] + scales
    const = [n_ for j, n_ in enumerate(names) if np.ptp(X[:, j]) == 0]
    if const:
        raise UserError(f"term(s) constant among the analysed rows: {', '.join(const)}")
    fit = fit_fine_gray(X, t, etype)
    notes = []
    if not fit.converged:
        notes.append(f"Fine-Gray fit did not converge in {fit.iterations} iterations")
    if fit.information_singular:
        notes.append("information matrix singular: collinear terms or an infinite coefficient")
    for msg in notes:
        warnings.warn(msg, FineGrayWarning, stacklevel=2)
    beta = fit.beta
    se = np.sqrt(np.maximum(np.diag(fit.var), 0.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        zstat = beta / se
        est, lo, hi = np.exp(beta), np.exp(beta - z * se), np.exp(beta + z * se)
    n_comp = int((etype == 2).sum())
    method = "Fine-Gray subdistribution hazards (crr: KM censoring weights, Breslow ties, sandwich SE, Wald CI)"
    summary = pd.DataFrame(
        {
            "analysis": analysis,
            "model": model,
            "term": names,
            "estimate": est,
            "log_shr": beta,
            "std_error": se,
            "statistic": zstat,
            "p_value": 2.0 * _sps.norm.sf(np.abs(zstat)),
            "ci_low": lo,
            "ci_high": hi,
            "ci_level": float(level),
            "scale": scales,
            "sd": [float(sd) if per_sd and sd is not None else np.nan] + [np.nan] * X_cov.shape[1],
            "n": len(frame),
            "events": events,
            "n_competing": n_comp,
            "n_censored": int((etype == 0).sum()),
            "n_excluded": n_excluded,
            "method": method,
        }
    )
    return FineGrayResult(
        summary=summary,
        converged=fit.converged,
        n=len(frame),
        events=events,
        n_competing=n_comp,
        n_excluded=n_excluded,
        sd=float(sd) if per_sd and sd is not None else None,
        exposure=exposure,
        loglik=fit.loglik,
        loglik_null=fit.loglik_null,
        iterations=fit.iterations,
        coef=beta,
        var=fit.var,
        var_naive=fit.var_naive,
        terms=names,
        warnings=notes,
    )
