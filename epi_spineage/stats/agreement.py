"""Agreement between spine age and chronological age: Pearson r and PAD summaries (docs/methods.md#pearson).

Pearson's CI is Fisher's z, ``tanh(atanh r +/- z_level / sqrt(n - 3))``, and the p value is the
t-test with n - 2 degrees of freedom, as R's ``cor.test`` computes them. Pairs with a missing value
are dropped (``n_dropped``). Fewer than 3 pairs or a constant variable gives NaN; the CI also needs
n >= 4 (R leaves it out below that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword

__all__ = ["PearsonResult", "pearson", "pad_summary"]


@dataclass(frozen=True)
class PearsonResult:
    """Pearson correlation. ``statistic`` is the t statistic (df = n - 2)."""

    estimate: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    ci_level: float
    n: int
    n_dropped: int
    term: str = "x ~ y"
    method: str = "Pearson r, Fisher z CI, t-test"

    def to_frame(self) -> pd.DataFrame:
        """One row: analysis, term, estimate, statistic, p_value, ci_low, ci_high, ci_level, n,
        n_dropped, method."""
        return pd.DataFrame(
            [
                {
                    "analysis": "pearson",
                    "term": self.term,
                    "estimate": self.estimate,
                    "statistic": self.statistic,
                    "p_value": self.p_value,
                    "ci_low": self.ci_low,
                    "ci_high": self.ci_high,
                    "ci_level": self.ci_level,
                    "n": self.n,
                    "n_dropped": self.n_dropped,
                    "method": self.method,
                }
            ]
        )


@ci_level_keyword
def pearson(x, y, ci_level: float = 0.95, *, term: str = "x ~ y") -> PearsonResult:
    """Pearson r between ``x`` and ``y`` with the Fisher-z CI and the t-test p value."""
    if not 0 < ci_level < 1:
        raise UserError(f"ci_level must be between 0 and 1, got {ci_level!r}")
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise UserError(f"x and y differ in length ({xa.size} vs {ya.size})")
    keep = ~np.isnan(xa) & ~np.isnan(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)
    n_dropped = int(keep.size - n)
    nan = float("nan")
    if n < 3:
        return PearsonResult(nan, nan, nan, nan, nan, ci_level, n, n_dropped, term)
    xc = xa - xa.mean()
    yc = ya - ya.mean()
    sxx, syy = float(xc @ xc), float(yc @ yc)
    if sxx == 0 or syy == 0:
        return PearsonResult(nan, nan, nan, nan, nan, ci_level, n, n_dropped, term)
    r = float(np.clip((xc @ yc) / np.sqrt(sxx * syy), -1.0, 1.0))
    df = n - 2
    if abs(r) == 1.0:
        t, p = float(np.sign(r) * np.inf), 0.0
    else:
        t = r * np.sqrt(df / (1.0 - r * r))
        p = float(2.0 * stats.t.sf(abs(t), df))
    if n > 3:
        zq = float(special.ndtri(0.5 + ci_level / 2))
        z = np.arctanh(r)
        half = zq / np.sqrt(n - 3)
        lo, hi = float(np.tanh(z - half)), float(np.tanh(z + half))
    else:
        lo = hi = nan
    return PearsonResult(r, float(t), p, lo, hi, ci_level, n, n_dropped, term)


@ci_level_keyword
def pad_summary(
    df: pd.DataFrame,
    *,
    spine: str = "spine_age_years",
    age: str = "age_years",
    pad: str | None = None,
    by: str | None = None,
    ci_level: float = 0.95,
) -> pd.DataFrame:
    """Mean and SD of PAD, MAE and Pearson r of spine age vs age, overall or by a group.

    PAD = ``df[pad]`` when ``pad`` is given (e.g. ``"pad_years"`` from ``derive_variables``), else
    ``df[spine] - df[age]``. Rows missing PAD are left out and counted.

    Returns one row per group with columns: ``group`` (``"all"`` without ``by``), ``n``,
    ``n_missing``, ``pad_mean_years``, ``pad_sd_years`` (ddof=1), ``mae_years`` (mean |PAD|),
    ``rmse_years``, ``pearson_r``, ``ci_low``, ``ci_high`` (Fisher z CI of r), ``ci_level``,
    ``p_value`` (of r), and ``spine``/``pad_column`` naming what was used. MAE and r come from
    ``spine`` and ``age`` only when ``pad`` is None; otherwise r is that of ``age + PAD`` with age.
    """
    need = [age] + ([pad] if pad else [spine]) + ([by] if by else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(f"pad_summary: missing column(s) {missing}")
    groups = [("all", df)] if by is None else [(str(k), g) for k, g in df.groupby(by, sort=True, dropna=True)]
    rows = []
    for name, g in groups:
        a = g[age].to_numpy(dtype=float)
        d = g[pad].to_numpy(dtype=float) if pad else g[spine].to_numpy(dtype=float) - a
        ok = ~np.isnan(d) & ~np.isnan(a)
        dd = d[ok]
        n = int(ok.sum())
        r = pearson(a, a + d, ci_level=ci_level)
        rows.append(
            {
                "group": name,
                "n": n,
                "n_missing": int(ok.size - n),
                "pad_mean_years": float(dd.mean()) if n else np.nan,
                "pad_sd_years": float(dd.std(ddof=1)) if n > 1 else np.nan,
                "mae_years": float(np.abs(dd).mean()) if n else np.nan,
                "rmse_years": float(np.sqrt((dd**2).mean())) if n else np.nan,
                "pearson_r": r.estimate,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "ci_level": ci_level,
                "p_value": r.p_value,
                "pad_column": pad or f"{spine} - {age}",
            }
        )
    return pd.DataFrame(rows)
