"""Gray's (1988) K-sample test of equal cumulative incidence of one cause, vectorised over time.

Gray RJ. A class of K-sample tests for comparing the cumulative incidence of a competing risk.
Ann Stat 1988;16:1141-54. The score compares each group's cause-specific failures with those
expected under a common subdistribution hazard (weight (1 - F(t-))^rho); the variance is the
paper's martingale-based estimator as in R ``cmprsk::cuminc`` (checked against its published test
output). Scores and variances add over strata; the statistic is ``s' V^-1 s`` on K - 1 groups.

Every quantity below is an array over distinct event times (rows) and groups (columns); the
running sums of the paper's ``c`` matrices are cumulative sums over time, so there is no Python loop
over subjects or times.
"""

from __future__ import annotations

import numpy as np


def gray_score_variance(
    time: np.ndarray, code: np.ndarray, group: np.ndarray, n_groups: int, rho: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Score (K-1) and its covariance (K-1 x K-1) for one stratum.

    ``code``: 0 censored, 1 the cause of interest, 2 a competing cause. ``group``: 0..K-1.
    """
    K = n_groups
    uniq, tinv = np.unique(time, return_inverse=True)
    T = len(uniq)
    flat = tinv * K + group
    size = T * K
    n_all = np.bincount(flat, minlength=size).reshape(T, K)
    d1 = np.bincount(flat, weights=(code == 1), minlength=size).reshape(T, K)
    d2 = np.bincount(flat, weights=(code == 2), minlength=size).reshape(T, K)
    rs = n_all[::-1].cumsum(axis=0)[::-1].astype(float)  # at risk at each time, by group
    keep = (d1.sum(axis=1) + d2.sum(axis=1)) > 0
    rs, d1, d2 = rs[keep], d1[keep], d2[keep]
    if len(rs) == 0:
        return np.zeros(K - 1), np.zeros((K - 1, K - 1))
    at_risk = rs > 0
    safe_rs = np.where(at_risk, rs, 1.0)
    # group Kaplan-Meier (all causes) and cause-1 cumulative incidence, left and right limits
    step = np.where(at_risk, (rs - d1 - d2) / safe_rs, 1.0)
    skm = np.cumprod(step, axis=0)
    skmm = np.vstack([np.ones((1, K)), skm[:-1]])
    f1 = np.cumsum(np.where(at_risk, skmm * d1 / safe_rs, 0.0), axis=0)
    f1m = np.vstack([np.zeros((1, K)), f1[:-1]])
    nd1 = d1.sum(axis=1)
    t1 = np.where(at_risk, rs / np.where(skmm > 0, skmm, 1.0), 0.0)  # R_k in the paper
    tr = t1.sum(axis=1)
    tq = (t1 * (1.0 - f1m)).sum(axis=1)
    f = np.cumsum(nd1 / tr)  # pooled subdistribution estimate, right limit
    fm = np.concatenate(([0.0], f[:-1]))
    fb = (1.0 - fm) ** rho
    # A_t = fb (diag(t1) - t1 t1' / tr); C_t = running sum of A_t nd1 / (tr (1 - fm))
    A = fb[:, None, None] * (t1[:, :, None] * np.eye(K)[None] - t1[:, :, None] * t1[:, None, :] / tr[:, None, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = np.where((1.0 - fm) > 0, nd1 / (tr * (1.0 - fm)), 0.0)
    C = np.cumsum(A * inc[:, None, None], axis=0)
    score = (fb[:, None] * (d1 - nd1[:, None] * t1 * (1.0 - f1m) / tq[:, None])).sum(axis=0)

    # cause-1 failures
    with np.errstate(divide="ignore", invalid="ignore"):
        t4 = np.where(skm > 0, 1.0 - (1.0 - f[:, None]) / np.where(skm > 0, skm, 1.0), 1.0)
        t5 = np.where(nd1[:, None] > 1, 1.0 - (nd1[:, None] - 1.0) / (tr[:, None] * skmm - 1.0), 1.0)
        t3 = np.where(at_risk & (nd1[:, None] > 0), t5 * skmm * nd1[:, None] / (tr[:, None] * safe_rs), 0.0)
    M = A - C * t4[:, None, :]  # (time, i, k)
    V = np.einsum("tik,tjk,tk->ij", M, M, t3)
    v2 = np.einsum("tik,tk->ik", M, t4 * t3)
    v3 = (t4 * t4 * t3).sum(axis=0)
    # competing-cause failures
    ok2 = (skm > 0) & (d2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u4 = np.where(ok2, (1.0 - f[:, None]) / np.where(skm > 0, skm, 1.0), 0.0)
        u5 = np.where(d2 > 1, 1.0 - (d2 - 1.0) / (rs - 1.0), 1.0)
        u3 = np.where(ok2, u5 * skmm**2 * d2 / safe_rs**2, 0.0)
    N = C * u4[:, None, :]
    V += np.einsum("tik,tjk,tk->ij", N, N, u3)
    v2 -= np.einsum("tik,tk->ik", N, u4 * u3)
    v3 += (u4 * u4 * u3).sum(axis=0)
    Cend = C[-1]
    V += Cend @ np.diag(v3) @ Cend.T + Cend @ v2.T + v2 @ Cend.T
    return score[: K - 1], V[: K - 1, : K - 1]
