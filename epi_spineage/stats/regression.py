"""Multivariable linear regression of PAD on covariates (docs/methods.md#age-gap-regression).

Ordinary least squares by a QR decomposition (no statsmodels dependency at import), with
t-based CIs and p values, R² and adjusted R² = 1 - (1 - R²)(n - 1)/(n - p - 1) as R's ``lm`` and
statsmodels' ``rsquared_adj`` give them. Complete cases only; ``n_excluded`` counts the rows left out.
Non-numeric covariates (e.g. ``sex`` F/M) are coded as indicators against their first level in sorted
order (``sex[M]``: M vs F), as R's treatment contrasts do.

Aliased terms are dropped as R's ``lm`` drops them (docs/methods.md#age-gap-regression): columns are
taken in order and one whose part not explained by the intercept and the columns kept before it has a
norm below 1e-7 of its own (R's ``dqrdc2`` tolerance) is left out; the rest is fitted, the dropped term
keeps a row with NaN figures (R's NA) and is listed in ``dropped_terms`` and the ``note``. A constant
covariate (e.g. prosthesis 0 wherever the femoral-neck T-score is measured) and a text covariate with a
single level (a one-sex cohort) are the common cases.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from epi_spineage.errors import UserError
from epi_spineage.schema import PAD_COLUMN
from epi_spineage.stats._compat import ci_level_keyword

__all__ = ["RegressionResult", "age_gap_regression", "DEFAULT_AGE_GAP_COVARIATES"]

#: docs/methods.md#age-gap-regression:
#: age, sex, height per 5 cm decrement, diabetes, VF, FN T-score per SD decrement, prosthesis.
DEFAULT_AGE_GAP_COVARIATES = (
    "age_years",
    "sex",
    "height_dec5_cm",
    "diabetes",
    "prevalent_vf",
    "fn_tscore_dec",
    "prosthesis",
)


@dataclass(frozen=True)
class RegressionResult:
    """OLS fit. ``coefficients``: tidy DataFrame with columns term, estimate, std_error, statistic
    (t), p_value, ci_low, ci_high, ci_level, note (intercept first; a dropped term's row is NaN with a
    note). ``r2``, ``adj_r2``, ``n`` (complete cases), ``n_excluded``, ``df_resid``, ``sigma``
    (residual SD), ``outcome``; ``dropped_terms`` (covariates left out, as R's NA coefficients) and
    ``note`` (None when nothing was dropped)."""

    coefficients: pd.DataFrame
    r2: float
    adj_r2: float
    n: int
    n_excluded: int
    df_resid: int
    sigma: float
    outcome: str
    dropped_terms: tuple[str, ...] = ()
    note: str | None = None

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


#: R's ``lm`` (``dqrdc2``) tolerance for an aliased column
_ALIAS_TOL = 1e-7
_CONSTANT = "dropped (constant in the complete cases)"
_ALIASED = "dropped (aliased with earlier terms in the complete cases)"


def _aliased(X: np.ndarray) -> np.ndarray:
    """Columns (after the intercept, column 0) that R's pivoting QR would alias, taken in order."""
    p = X.shape[1]
    out = np.zeros(p, dtype=bool)
    kept = [0]
    for j in range(1, p):
        x = X[:, j]
        # the first columns (nothing aliased yet) as a view: qr copies its input anyway, to the same values
        q, _ = np.linalg.qr(X[:, :j] if len(kept) == j else X[:, kept])
        resid = x - q @ (q.T @ x)
        del q  # not alive beside the next decomposition's copies
        if np.linalg.norm(resid) <= _ALIAS_TOL * np.linalg.norm(x):
            out[j] = True
        else:
            kept.append(j)
    return out


def _design(df: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    parts = {}
    for c in covariates:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            parts[c] = s.astype(float)
            continue
        levels = (
            list(s.cat.categories)
            if isinstance(s.dtype, pd.CategoricalDtype)
            else sorted(pd.unique(s.dropna()).tolist(), key=str)
        )
        for lv in levels[1:]:
            parts[f"{c}[{lv}]"] = np.where(s.isna(), np.nan, (s == lv).astype(float))
    return pd.DataFrame(parts, index=df.index)


@ci_level_keyword
def age_gap_regression(
    df: pd.DataFrame,
    outcome: str = PAD_COLUMN,
    covariates: Sequence[str] = DEFAULT_AGE_GAP_COVARIATES,
    level: float = 0.95,
) -> RegressionResult:
    """OLS of ``outcome`` (default PAD) on ``covariates`` plus an intercept.

    Covariates are used as given: pass the per-unit scalings from ``tables.derive_variables``
    (``height_dec5_cm`` = -height/5, ``fn_tscore_dec`` = -z of the FN T-score) for per-5-cm-decrement
    and per-SD-decrement coefficients.

    Complexity: O(n p^3) for the alias check (one QR per term, as R's pivoting) and O(n p^2) for the fit.
    Memory: O(n p); the peak is a QR decomposition's copies of the n x p design (numpy's ``qr`` copies
    its input and returns Q), about 0.26 GB above the frame at 1,000,000 rows and 8 terms (memray).
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
    terms = list(X.columns)
    # the design frame and the outcome column are not needed past here: freed before the QR
    # decompositions, whose copies are the peak (a few n x p arrays)
    del X, y, keep
    names = ["(Intercept)", *terms]
    # a text covariate with one level in the complete cases has no indicator at all
    single = [c for c in covariates if not any(n_ == c or n_.startswith(f"{c}[") for n_ in terms)]
    alias = _aliased(Xm) if n else np.zeros(Xm.shape[1], dtype=bool)
    row_note = {nm: (_CONSTANT if np.ptp(Xm[:, j]) == 0 else _ALIASED) for j, nm in enumerate(names) if alias[j]}
    row_note.update({c: _CONSTANT for c in single})
    dropped = tuple(
        dict.fromkeys(
            [c for c in covariates if c in single or any(nm == c or nm.startswith(f"{c}[") for nm in row_note)]
        )
    )
    Xf = Xm[:, ~alias] if alias.any() else Xm  # the same C-ordered values (the QR copies its input)
    del Xm
    p = Xf.shape[1]
    if n <= p:
        raise UserError(f"age_gap_regression: {n} complete case(s) for {p} coefficients")
    q, r = np.linalg.qr(Xf)
    beta = np.linalg.solve(r, q.T @ yv)
    resid = yv - Xf @ beta
    rss = float(resid @ resid)
    tss = float(((yv - yv.mean()) ** 2).sum())
    df_resid = n - p
    sigma2 = rss / df_resid
    rinv = np.linalg.inv(r)
    se = np.sqrt(sigma2 * np.sum(rinv**2, axis=1))
    t = beta / se
    pval = 2.0 * stats.t.sf(np.abs(t), df_resid)
    tq = stats.t.ppf(0.5 + level / 2, df_resid)
    fitted = pd.DataFrame(
        {
            "term": [nm for nm, a_ in zip(names, alias) if not a_],
            "estimate": beta,
            "std_error": se,
            "statistic": t,
            "p_value": pval,
            "ci_low": beta - tq * se,
            "ci_high": beta + tq * se,
        }
    )
    rows = names + [c for c in single if c not in names]
    coef = fitted.set_index("term").reindex(rows).rename_axis("term").reset_index()
    coef["ci_level"] = level
    coef["note"] = [row_note.get(nm) for nm in rows]
    note_parts = []
    for label in (_CONSTANT, _ALIASED):
        terms = [nm for nm in rows if row_note.get(nm) == label]
        if terms:
            note_parts.append(f"{label}: {', '.join(terms)}")
    note = "; ".join(note_parts) or None
    if note:
        warnings.warn(f"age_gap_regression: {note}", UserWarning, stacklevel=2)
    r2 = 1.0 - rss / tss if tss > 0 else np.nan
    k = p - 1
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - k - 1)
    return RegressionResult(
        coef, float(r2), float(adj), n, n_excluded, df_resid, float(np.sqrt(sigma2)), outcome, dropped, note
    )
