"""Cox partial-likelihood fit (Efron or Breslow ties) by vectorised Newton-Raphson.

Follows R ``survival::coxph`` (``coxfit6.c``): start at 0, Newton steps on the centred design,
step-halving when the log-likelihood falls, stop when ``|1 - loglik_old / loglik_new| <= 1e-9``,
at most 20 iterations; the variance is the inverse information at the final coefficients.

Every iteration is O(n p^2) numpy work, no Python loop over subjects or event times:
risk-set sums are reverse cumulative sums over rows sorted by (stratum, time), and the
second-moment term ``sum_k c_k S2_k`` is ``X' diag(w C) X`` with ``C_j`` the running sum of
``c_k`` over the event times whose risk set holds row j (no n x p x p array).

Memory, O(n p): besides the caller's X, the fit holds the sorted, centred copy of X and, in each
iteration, one n x p product for the information matrix (its BLAS product is kept exactly as it was, so
the numbers do not change), plus a few n-long vectors; the risk-set sums go one column at a time through
one n-long buffer. At 1,000,000 rows and 10 covariates about 0.26 GB above X (tracemalloc; 0.29 GB before
issue 18's memory work, with the same numbers bit for bit: tests/stats/test_stats_coxfit_memory.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np


def _single_thread_blas():
    """One BLAS thread for the fit: its products are tall and thin (n x p with p ~ 10), where
    threads gain nothing and, on a busy machine, oversubscription made the fit 2-3x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@dataclass
class CoxFit:
    beta: np.ndarray
    var: np.ndarray
    loglik: float
    loglik_null: float
    score_test: float
    score: np.ndarray  # gradient at the final coefficients (R's infinite-coefficient check)
    iterations: int
    converged: bool
    information_singular: bool
    # event-level pieces for Schoenfeld residuals (original design scale)
    event_time: np.ndarray
    event_x: np.ndarray
    event_xbar: np.ndarray


class _Layout:
    """Sorting and index bookkeeping that does not change between iterations."""

    xe_sum: np.ndarray  # the event rows' covariate sums, set by the caller that has the design matrix

    def __init__(self, time, event, strata, ties, time_order=None):
        n = len(time)
        if time_order is None:
            order = np.lexsort((time, np.zeros(n, dtype=np.int64) if strata is None else strata))
        elif strata is None:
            order = np.asarray(time_order)
        else:
            # a stable sort by stratum of the stable time order is lexsort's (stratum, time) order
            order = time_order[np.argsort(np.asarray(strata)[time_order], kind="stable")]
        if strata is None:
            strata = np.zeros(n, dtype=np.int64)
        self.order = order
        t = time[order]
        s = strata[order]
        d = event[order].astype(bool)
        # stratum blocks [start, end)
        new_stratum = np.concatenate(([True], s[1:] != s[:-1]))
        del s
        sstart = np.flatnonzero(new_stratum)
        send = np.concatenate((sstart[1:], [n]))
        block = np.cumsum(new_stratum) - 1
        row_stratum_end = send[block]
        # (stratum, time) groups; risk set of a group = rows from its first index to stratum end
        new_group = new_stratum | np.concatenate(([True], t[1:] != t[:-1]))
        gid = np.cumsum(new_group) - 1
        gstart = np.flatnonzero(new_group)
        ev_rows = np.flatnonzero(d)
        del d
        self.ev_rows = ev_rows
        self.event_time = t[ev_rows]
        ev_gid = gid[ev_rows]
        del gid
        # event groups (distinct (stratum, time) with >= 1 event), in sorted order
        eg_new = np.concatenate(([True], ev_gid[1:] != ev_gid[:-1])) if len(ev_rows) else np.zeros(0, bool)
        self.eg_first_event = np.flatnonzero(eg_new)  # index into ev_rows
        eg_gid = ev_gid[eg_new]
        self.eg_start = gstart[eg_gid]  # first row of the risk set
        del gstart
        self.eg_stratum_end = row_stratum_end[self.eg_start]
        del row_stratum_end
        # the rows of the running sums that give each event group's risk-set sum (``_risk_set_sums``)
        self.eg_hi = self.eg_stratum_end - 1
        self.eg_lo = np.maximum(self.eg_start - 1, 0)
        self.eg_lo_none = self.eg_start == 0
        k_of_event = np.cumsum(eg_new) - 1
        self.k_of_event = k_of_event
        dk = np.bincount(k_of_event, minlength=len(eg_gid)) if len(ev_rows) else np.zeros(0, np.int64)
        self.dk = dk
        # Efron: the l-th of d tied events (l = 0..d-1) removes l/d of the tied events' weight
        rank_in_group = np.arange(len(ev_rows)) - self.eg_first_event[k_of_event] if len(ev_rows) else np.zeros(0)
        self.frac = rank_in_group / dk[k_of_event] if ties == "efron" else np.zeros(len(ev_rows))
        # Row j lies in the risk set of the event groups of its stratum with time <= t_j: a
        # contiguous run of the (stratum, time)-sorted event groups, from the stratum's first
        # group to last_eg[j]. Located per stratum (few) with one searchsorted each.
        eg_time = t[self.eg_start]
        # rows are sorted by stratum: the block index is each row's stratum key (no further sort)
        key_eg = block[self.eg_start]
        self.last_eg = np.full(n, -1, dtype=np.int64)
        self.first_eg_of_stratum = np.zeros(n, dtype=np.int64)
        for st in range(len(sstart)):
            rows = slice(sstart[st], send[st])
            egs = np.flatnonzero(key_eg == st)
            if len(egs):
                pos = np.searchsorted(eg_time[egs], t[rows], side="right") - 1
                self.last_eg[rows] = np.where(pos >= 0, egs[0] + pos, -1)
                self.first_eg_of_stratum[rows] = egs[0]
            else:
                self.first_eg_of_stratum[rows] = 0
        self.has_eg = self.last_eg >= self.first_eg_of_stratum


def _risk_set_sums(X: np.ndarray, w: np.ndarray, lay: _Layout) -> np.ndarray:
    """Each event group's risk-set sums of ``[w, w * x_1, ..., w * x_p]``: S0 and S1 (n_groups x (p + 1)).

    One column at a time through one n-long buffer (not an n x (p + 1) array: 88 MB at a million rows
    and 10 covariates): the running sum of ``w * x_j`` over the rows sorted by (stratum, time), then
    ``cs[end - 1] - cs[start - 1]`` per group, the row before 0 counting as 0 (``x - 0.0`` is ``x``).
    The products, running sums and differences are the very ones of the whole-array version.
    """
    out = np.empty((len(lay.eg_start), X.shape[1] + 1))
    buf = np.empty(len(w))
    for j in range(X.shape[1] + 1):
        if j == 0:
            buf[:] = w
        else:
            np.multiply(X[:, j - 1], w, out=buf)
        np.cumsum(buf, out=buf)
        lo = buf[lay.eg_lo]
        lo[lay.eg_lo_none] = 0.0
        np.subtract(buf[lay.eg_hi], lo, out=out[:, j])
    return out


def _loglik_parts(lay: _Layout, X: np.ndarray, Xe: np.ndarray, beta: np.ndarray):
    """Log partial likelihood, score, information and the per-event weighted means."""
    eta = X @ beta
    m = eta.max() if len(eta) else 0.0
    w = eta - m
    np.exp(w, out=w)
    ev = lay.ev_rows
    # the tied events' sums of [w, w * x] (A) and the risk-set sums (S): the event rows' products alone, and
    # the running sums column by column (no n x (p + 1) array)
    wev = w[ev]
    Wev = np.empty((len(ev), X.shape[1] + 1))
    Wev[:, 0] = wev
    np.multiply(Xe, wev[:, None], out=Wev[:, 1:])
    A = np.add.reduceat(Wev, lay.eg_first_event, axis=0)
    del Wev
    S = _risk_set_sums(X, w, lay)
    k = lay.k_of_event
    f = lay.frac
    SA = S[k] - f[:, None] * A[k]
    phi = SA[:, 0]
    loglik = float(np.sum(eta[ev] - m) - np.sum(np.log(phi)))
    xbar = SA[:, 1:] / phi[:, None]
    grad = lay.xe_sum - xbar.sum(axis=0)
    inv_phi = 1.0 / phi
    c = np.bincount(k, weights=inv_phi, minlength=len(S))
    e = np.bincount(k, weights=f * inv_phi, minlength=len(S))
    cc = np.concatenate(([0.0], np.cumsum(c)))
    # np.where(has_eg, cc[last_eg + 1] - cc[first_eg_of_stratum], 0.0), built in one n-long array
    C = cc[lay.last_eg + 1]
    C -= cc[lay.first_eg_of_stratum]
    C[~lay.has_eg] = 0.0
    C *= w  # w * C: the same products
    info = (X * C[:, None]).T @ X
    del C
    info -= (Xe * (wev * e[k])[:, None]).T @ Xe
    info -= xbar.T @ xbar
    return loglik, grad, info, xbar


def fit_cox(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    strata: np.ndarray | None = None,
    ties: str = "efron",
    max_iter: int = 20,
    eps: float = 1e-9,
    time_order: np.ndarray | None = None,
) -> CoxFit:
    """Fit the Cox model. ``X`` is n x p (already complete), ``event`` 0/1, ``strata`` codes.

    ``time_order``: the stable ascending argsort of ``time`` when the caller already has it (shared
    by the models of one outcome, ``_survdata.time_order``); the fit is then O(n) to lay out instead
    of O(n log n), with the same permutation and so the same numbers. Each Newton step is O(n p^2).
    """
    with _single_thread_blas():
        return _fit_cox(X, time, event, strata, ties, max_iter, eps, time_order)


def _fit_cox(X, time, event, strata, ties, max_iter, eps, time_order=None) -> CoxFit:
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    lay = _Layout(np.asarray(time, float), np.asarray(event), strata, ties, time_order)
    Xc = X[lay.order]
    means = Xc.mean(axis=0) if n else np.zeros(p)
    event_x = Xc[lay.ev_rows]  # the events' rows before centring (Schoenfeld residuals)
    Xc -= means  # in place: the values of Xs - means, without a second n x p copy
    Xe = Xc[lay.ev_rows]
    lay.xe_sum = Xe.sum(axis=0)
    beta = np.zeros(p)
    loglik, grad, info, xbar = _loglik_parts(lay, Xc, Xe, beta)
    loglik0 = loglik
    singular = False

    def _solve(a, b):
        nonlocal singular
        try:
            L = np.linalg.cholesky(a)
            return np.linalg.solve(L.T, np.linalg.solve(L, b))
        except np.linalg.LinAlgError:
            singular = True
            return np.linalg.lstsq(a, b, rcond=None)[0]

    step = _solve(info, grad)
    score_test = float(grad @ step)
    converged = p == 0
    it = 0
    halving = 0
    new_beta = beta + step
    for it in range(1, max_iter + 1):  # noqa: B007  (`it` is read after the loop: the iteration count)
        if p == 0:
            break
        new_ll, new_grad, new_info, new_xbar = _loglik_parts(lay, Xc, Xe, new_beta)
        finite = np.isfinite(new_ll)
        # R's test abs(1 - loglik/newlk) <= eps, written without the division: a log-likelihood of exactly 0
        # (every event alone in its risk set) made it a ZeroDivisionError here
        if finite and abs(new_ll - loglik) <= eps * abs(new_ll) and halving == 0:
            beta, loglik, grad, info, xbar = new_beta, new_ll, new_grad, new_info, new_xbar
            converged = True
            break
        if not finite or new_ll < loglik:
            halving += 1
            new_beta = (new_beta + beta) / 2.0
        else:
            halving = 0
            beta, loglik, grad, info, xbar = new_beta, new_ll, new_grad, new_info, new_xbar
            new_beta = beta + _solve(info, grad)
    if not converged and p:
        # report the last accepted point
        loglik, grad, info, xbar = _loglik_parts(lay, Xc, Xe, beta)
    try:
        var = np.linalg.inv(info) if p else np.zeros((0, 0))
        if p and (not np.all(np.isfinite(var)) or np.any(np.diag(var) <= 0)):
            singular = True
    except np.linalg.LinAlgError:
        singular = True
        var = np.linalg.pinv(info)
    ev = lay.ev_rows
    return CoxFit(
        beta=beta,
        var=var,
        loglik=loglik,
        loglik_null=loglik0,
        score_test=score_test,
        score=grad,
        iterations=it,
        converged=converged,
        information_singular=singular,
        event_time=lay.event_time,
        event_x=event_x,
        event_xbar=_efron_mean(lay, xbar) + means if p else np.zeros((len(ev), 0)),
    )


def _efron_mean(lay: _Layout, xbar: np.ndarray) -> np.ndarray:
    """Mean covariate at each event, averaged over tied events as R's Schoenfeld residuals do."""
    k = lay.k_of_event
    sums = np.zeros((len(lay.dk), xbar.shape[1]))
    np.add.at(sums, k, xbar)
    return (sums / lay.dk[:, None])[k]
