"""Multivariable linear regression of PAD on covariates (METHODS 9).

Ordinary least squares by a QR decomposition (no statsmodels dependency at import), with
t-based CIs and p values, R² and adjusted R² = 1 - (1 - R²)(n - 1)/(n - p - 1) as R's ``lm`` and
statsmodels' ``rsquared_adj`` give them. Complete cases only; ``n_excluded`` counts the rows left out.
Non-numeric covariates (e.g. ``sex`` F/M) are coded as indicators against their first level in sorted
order (``sex[M]``: M vs F), as R's treatment contrasts do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from epi_spineage.errors import UserError
from epi_spineage.schema import PAD_COLUMN
from epi_spineage.stats._compat import ci_level_keyword

__all__ = ["RegressionResult", "age_gap_regression", "DEFAULT_AGE_GAP_COVARIATES"]

#: METHODS 9: age, sex, height per 5 cm decrement, diabetes, VF, FN T-score per SD decrement, prosthesis.
DEFAULT_AGE_GAP_COVARIATES = ("age_years", "sex", "height_dec5_cm", "diabetes", "prevalent_vf",
                              "fn_tscore_dec", "prosthesis")


@dataclass(frozen=True)
class RegressionResult:
    """OLS fit. ``coefficients``: tidy DataFrame with columns term, estimate, std_error, statistic
    (t), p_value, ci_low, ci_high, ci_level (intercept first). ``r2``, ``adj_r2``, ``n`` (complete
    cases), ``n_excluded``, ``df_resid``, ``sigma`` (residual SD), ``outcome``."""

    coefficients: pd.DataFrame
    r2: float
    adj_r2: float
    n: int
    n_excluded: int
    df_resid: int
    sigma: float
    outcome: str

    def to_frame(self) -> pd.DataFrame:
        """The coefficient table plus analysis, model (the outcome), n, n_excluded, r2, adj_r2 and
        method columns."""
        out = self.coefficients.copy()
        out.insert(0, "model", self.outcome)
        out.insert(0, "analysis", "age_gap_regression")
        out["n"] = self.n
        out["n_excluded"] = self.n_excluded
        out["r2"] = self.r2
        out["adj_r2"] = self.adj_r2
        out["method"] = "OLS"
        return out


def _design(df: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    parts = {}
    for c in covariates:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            parts[c] = s.astype(float)
            continue
        levels = (list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                  else sorted(pd.unique(s.dropna()).tolist(), key=str))
        for lv in levels[1:]:
            parts[f"{c}[{lv}]"] = np.where(s.isna(), np.nan, (s == lv).astype(float))
    return pd.DataFrame(parts, index=df.index)


@ci_level_keyword
def age_gap_regression(df: pd.DataFrame, outcome: str = PAD_COLUMN,
                       covariates: Sequence[str] = DEFAULT_AGE_GAP_COVARIATES,
                       level: float = 0.95) -> RegressionResult:
    """OLS of ``outcome`` (default PAD) on ``covariates`` plus an intercept.

    Covariates are used as given: pass the per-unit scalings from ``tables.derive_variables``
    (``height_dec5_cm`` = -height/5, ``fn_tscore_dec`` = -z of the FN T-score) for per-5-cm-decrement
    and per-SD-decrement coefficients.
    """
    cols = [outcome, *covariates]
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise UserError(f"age_gap_regression: column(s) not found: {absent}")
    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level!r}")
    X = _design(df, covariates)
    y = pd.to_numeric(df[outcome], errors="coerce").astype(float)
    keep = y.notna() & X.notna().all(axis=1)
    n = int(keep.sum())
    n_excluded = int(len(df) - n)
    Xm = np.column_stack([np.ones(n), X[keep].to_numpy(float)])
    yv = y[keep].to_numpy(float)
    p = Xm.shape[1]
    if n <= p:
        raise UserError(f"age_gap_regression: {n} complete case(s) for {p} coefficients")
    q, r = np.linalg.qr(Xm)
    if np.min(np.abs(np.diag(r))) < 1e-10 * np.max(np.abs(np.diag(r))):
        raise UserError("age_gap_regression: the covariates are collinear (a column is constant or "
                        "a combination of others)")
    beta = np.linalg.solve(r, q.T @ yv)
    resid = yv - Xm @ beta
    rss = float(resid @ resid)
    tss = float(((yv - yv.mean()) ** 2).sum())
    df_resid = n - p
    sigma2 = rss / df_resid
    rinv = np.linalg.inv(r)
    se = np.sqrt(sigma2 * np.sum(rinv ** 2, axis=1))
    t = beta / se
    pval = 2.0 * stats.t.sf(np.abs(t), df_resid)
    tq = stats.t.ppf(0.5 + level / 2, df_resid)
    coef = pd.DataFrame({
        "term": ["(Intercept)", *X.columns], "estimate": beta, "std_error": se, "statistic": t,
        "p_value": pval, "ci_low": beta - tq * se, "ci_high": beta + tq * se, "ci_level": level,
    })
    r2 = 1.0 - rss / tss if tss > 0 else np.nan
    k = p - 1
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - k - 1)
    return RegressionResult(coef, float(r2), float(adj), n, n_excluded, df_resid, float(np.sqrt(sigma2)), outcome)
