"""A small vectorised Cox fitter (Breslow ties) for the recovery tests: fast enough for 100 seeds.

Times here are continuous, so Breslow and Efron agree; a test compares it with lifelines once.
"""

from __future__ import annotations

import numpy as np


def cox_breslow(time, event, x, *, max_iter: int = 30, tol: float = 1e-9):
    """Return ``(beta, se)`` of a Cox model by Newton-Raphson on the Breslow partial likelihood."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    order = np.argsort(-time, kind="stable")  # descending: risk sets are prefixes
    t, d, X = time[order], event[order], x[order]
    X = X - X.mean(axis=0)
    # The last index of each block of tied times, so a risk set includes all its ties.
    last = np.r_[np.nonzero(t[1:] != t[:-1])[0], len(t) - 1]
    block_end = np.repeat(last, np.diff(np.r_[-1, last]))
    p = X.shape[1]
    beta = np.zeros(p)
    for _ in range(max_iter):
        eta = X @ beta
        w = np.exp(eta - eta.max())
        s0 = np.cumsum(w)[block_end]
        s1 = np.cumsum(w[:, None] * X, axis=0)[block_end]
        s2 = np.cumsum(w[:, None, None] * (X[:, :, None] * X[:, None, :]), axis=0)[block_end]
        xd, s0d, s1d, s2d = X[d], s0[d], s1[d], s2[d]
        mean = s1d / s0d[:, None]
        grad = (xd - mean).sum(axis=0)
        info = (s2d / s0d[:, None, None] - mean[:, :, None] * mean[:, None, :]).sum(axis=0)
        step = np.linalg.solve(info, grad)
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            break
    cov = np.linalg.inv(info)
    return beta, np.sqrt(np.diag(cov))


def design(df, covariates):
    """The generating covariates of an outcome as a matrix (``female`` means sex == 'F')."""
    cols = []
    for name in covariates:
        if name == "female":
            cols.append((df["sex"] == "F").to_numpy(float))
        elif name == "pad_years":
            cols.append((df["spine_age_years"] - df["age_years"]).to_numpy(float))
        else:
            cols.append(df[name].to_numpy(float))
    return np.column_stack(cols)
