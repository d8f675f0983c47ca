"""The Cox fit's leaner memory layout (issue 18) gives the very numbers of the previous code, bit for bit.

``_reference_loglik_parts`` is the previous ``_coxfit._loglik_parts`` (one n x (p + 1) array for the
running sums, ``np.where`` for the risk-set weights): the fit run with it and with the current one must agree
exactly, on random data with ties, strata, both tie methods.
"""

from __future__ import annotations

import numpy as np
import pytest

from epi_spineage.stats import _coxfit
from epi_spineage.stats._coxfit import _Layout, fit_cox


def _reference_revcumsum_within(a, start, end):
    cs = a
    for j in range(a.shape[1]):
        np.cumsum(a[:, j], out=a[:, j])
    hi = cs[end - 1]
    lo = cs[np.maximum(start - 1, 0)]
    lo[start == 0] = 0.0
    return hi - lo


def _reference_loglik_parts(lay, X, Xe, beta):
    eta = X @ beta
    m = eta.max() if len(eta) else 0.0
    w = np.exp(eta - m)
    ev = lay.ev_rows
    W = np.empty((len(w), X.shape[1] + 1), order="F")
    W[:, 0] = w
    np.multiply(X, w[:, None], out=W[:, 1:])
    A = np.add.reduceat(W[ev], lay.eg_first_event, axis=0)
    S = _reference_revcumsum_within(W, lay.eg_start, lay.eg_stratum_end)
    del W
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
    C = np.where(lay.has_eg, cc[lay.last_eg + 1] - cc[lay.first_eg_of_stratum], 0.0)
    info = (X * (w * C)[:, None]).T @ X
    info -= (Xe * (w[ev] * e[k])[:, None]).T @ Xe
    info -= xbar.T @ xbar
    return loglik, grad, info, xbar


def _data(seed: int, n: int, p: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 0] = rng.integers(0, 2, n)  # a binary covariate, as sex
    time = np.round(rng.exponential(5.0, n), 1)  # heavy ties, up to dozens of events at one time
    event = (rng.random(n) < 0.3).astype(int)
    strata = rng.integers(0, 3, n)
    return X, time, event, strata


_FIELDS = ("beta", "var", "loglik", "loglik_null", "score_test", "score", "iterations", "converged")
_EVENT_FIELDS = ("event_time", "event_x", "event_xbar")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("stratified", [False, True])
def test_fit_is_bit_for_bit_the_previous_one(monkeypatch, seed, ties, stratified):
    X, time, event, strata = _data(seed, 4000, 1 + seed * 3)
    s = strata if stratified else None
    got = fit_cox(X, time, event, strata=s, ties=ties)
    monkeypatch.setattr(_coxfit, "_loglik_parts", _reference_loglik_parts)
    want = fit_cox(X, time, event, strata=s, ties=ties)
    for name in _FIELDS + _EVENT_FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_loglik_parts_equal_the_previous_ones_away_from_zero():
    X, time, event, strata = _data(7, 3000, 5)
    lay = _Layout(time, event, strata, "efron")
    Xc = X[lay.order]
    Xc -= Xc.mean(axis=0)
    Xe = Xc[lay.ev_rows]
    lay.xe_sum = Xe.sum(axis=0)
    beta = np.random.default_rng(8).normal(scale=0.3, size=5)
    for got, want in zip(_coxfit._loglik_parts(lay, Xc, Xe, beta), _reference_loglik_parts(lay, Xc, Xe, beta)):
        np.testing.assert_array_equal(got, want)
