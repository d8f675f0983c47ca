"""Domain shift across scanners and modalities: agreement per group and an adjusted test of a PAD shift.

A model trained on one manufacturer's images may read another's with an offset (the study's VFA images
from other manufacturers "have different characteristics"). Two questions, two functions:

- ``agreement_by_group``: per manufacturer (and modality), how well spine age agrees with age: n, mean
  PAD with its t interval, SD, MAE with its t interval (MAE is the mean of |PAD|), and Pearson r of spine
  age with age with the Fisher-z interval (``stats.pearson``, as R ``cor.test``).
- ``pad_shift_test``: does mean PAD differ between groups once age and sex are held fixed? Groups
  differ in who is scanned on them (age, sex) and PAD depends on age (regression to the mean), so the
  raw group means confound case mix with the scanner. OLS of PAD on the covariates and group
  indicators; the F test compares it with the model without the group terms (same rows), and each
  group's coefficient is its adjusted mean PAD difference from the reference group, with t intervals.
  As R ``anova(lm(pad ~ age + sex), lm(pad ~ age + sex + group))`` and ``summary(lm(...))``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._survdata import require_columns

__all__ = ["agreement_by_group", "pad_shift_test"]

MISSING_LABEL = "(missing)"


def _pad(df: pd.DataFrame, pad: str | None, spine: str, age: str) -> np.ndarray:
    if pad is not None:
        require_columns(df, [pad])
        return pd.to_numeric(df[pad], errors="coerce").to_numpy(float)
    require_columns(df, [spine, age])
    return (pd.to_numeric(df[spine], errors="coerce") - pd.to_numeric(df[age], errors="coerce")).to_numpy(float)


def _groups(group) -> list[str]:
    cols = [group] if isinstance(group, str) else list(group)
    if not cols:
        raise UserError("group: name at least one column (e.g. 'manufacturer')")
    return cols


def _labels(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: df[c].map(lambda v: MISSING_LABEL if pd.isna(v) else str(v)) for c in cols}, index=df.index)


def _mean_ci(x: np.ndarray, level: float) -> tuple[float, float, float]:
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan
    half = float(_sps.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return m, m - half, m + half


@ci_level_keyword
def agreement_by_group(
    df: pd.DataFrame,
    group=("manufacturer", "modality"),
    *,
    spine: str = "spine_age_years",
    age: str = "age_years",
    pad: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Agreement of spine age with age within each group (e.g. manufacturer x modality).

    PAD is ``df[pad]`` when given, else ``df[spine] - df[age]``; Pearson r is that of ``age + PAD``
    with ``age`` (so it is spine age vs age when ``pad`` is None). A missing group value forms its
    own group, labelled ``"(missing)"``; rows missing PAD or age are counted in ``n_missing``.

    Returns
    -------
    DataFrame, one row per group in sort order: the group columns (as text), ``n`` (rows with PAD
    and age), ``n_missing``, ``pad_mean_years``, ``pad_mean_ci_low``, ``pad_mean_ci_high`` (t
    interval), ``pad_sd_years`` (ddof 1), ``mae_years`` (mean |PAD|), ``mae_ci_low``, ``mae_ci_high``
    (t interval of the mean of |PAD|), ``pearson_r``, ``r_ci_low``, ``r_ci_high`` (Fisher z),
    ``r_p_value`` (t test of r = 0), ``ci_level``, ``method``. Figures that need more rows than
    the group has (an SD needs 2, r needs 3 and its CI 4) are NaN.
    """
    from epi_spineage.stats.agreement import pearson

    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level!r}")
    cols = _groups(group)
    require_columns(df, cols + [age])
    d = _pad(df, pad, spine, age)
    a = pd.to_numeric(df[age], errors="coerce").to_numpy(float)
    labels = _labels(df, cols)
    rows = []
    for key, idx in labels.groupby(cols, sort=True).groups.items():
        key = key if isinstance(key, tuple) else (key,)
        pos = df.index.get_indexer(idx)
        dd, aa = d[pos], a[pos]
        ok = ~np.isnan(dd) & ~np.isnan(aa)
        dd, aa = dd[ok], aa[ok]
        n = int(ok.sum())
        mean, lo, hi = _mean_ci(dd, level)
        mae, mlo, mhi = _mean_ci(np.abs(dd), level)
        r = pearson(aa, aa + dd, ci_level=level)
        rows.append(
            {
                **dict(zip(cols, key)),
                "n": n,
                "n_missing": int(len(pos) - n),
                "pad_mean_years": mean,
                "pad_mean_ci_low": lo,
                "pad_mean_ci_high": hi,
                "pad_sd_years": float(dd.std(ddof=1)) if n > 1 else np.nan,
                "mae_years": mae,
                "mae_ci_low": mlo,
                "mae_ci_high": mhi,
                "pearson_r": r.estimate,
                "r_ci_low": r.ci_low,
                "r_ci_high": r.ci_high,
                "r_p_value": r.p_value,
                "ci_level": float(level),
                "method": "mean and MAE with t intervals; Pearson r with Fisher z interval",
            }
        )
    return pd.DataFrame(rows)


@ci_level_keyword
def pad_shift_test(
    df: pd.DataFrame,
    group: str = "manufacturer",
    covariates=("age_years", "sex"),
    *,
    spine: str = "spine_age_years",
    age: str = "age_years",
    pad: str | None = None,
    reference: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Test whether mean PAD differs between the levels of ``group`` after adjusting for ``covariates``.

    OLS of PAD on an intercept, ``covariates`` (numeric per unit; text such as ``sex`` F/M dummy-coded
    against its first level, as the Cox models) and indicators of every ``group`` level but the
    reference. Rows missing PAD, the group or a covariate are left out (``n_excluded``); both models of
    the F test use the same rows.

    Parameters
    ----------
    reference : the reference level (default: the largest group; ties broken by sort order).

    Returns
    -------
    DataFrame. First row: ``term`` = the group column, ``test`` = "F", ``statistic`` (F), ``df_num``
    (levels - 1), ``df_den`` (residual df), ``p_value``. Then one row per non-reference level:
    ``term`` ``"<group>[<level>]"``, ``test`` = "t", ``estimate`` (adjusted mean PAD difference from the
    reference, years), ``std_error``, ``statistic`` (t), ``df_den``, ``p_value``, ``ci_low``,
    ``ci_high``, ``ci_level``. Every row also has ``group``, ``reference``, ``level`` (the group
    level, None on the F row), ``n_level`` (rows in that level), ``n``, ``n_excluded``, ``method``.
    Fewer than two levels among the analysed rows is a ``UserError``.
    """
    from epi_spineage.stats.cox import _design

    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level!r}")
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    require_columns(df, [group, *covariates])
    d = _pad(df, pad, spine, age)
    frame = df[[group, *covariates]].assign(_pad=d)
    keep = frame.notna().all(axis=1).to_numpy()
    frame = frame.loc[keep]
    n, n_excluded = len(frame), int((~keep).sum())
    g = frame[group].astype(str)
    counts = g.value_counts()
    if len(counts) < 2:
        raise UserError(f"pad_shift_test: {group!r} has {len(counts)} level(s) among the {n} analysed rows; need 2")
    levels = sorted(counts.index)
    if reference is None:
        reference = min(levels, key=lambda lv: (-counts[lv], lv))
    reference = str(reference)
    if reference not in levels:
        raise UserError(f"reference {reference!r} is not a level of {group!r} among the analysed rows")
    others = [lv for lv in levels if lv != reference]
    X_cov, _, _ = _design(frame, covariates, None)
    G = np.column_stack([(g == lv).to_numpy(float) for lv in others])
    y = frame["_pad"].to_numpy(float)
    X0 = np.column_stack([np.ones(n), X_cov])
    X1 = np.column_stack([X0, G])
    df_den = n - np.linalg.matrix_rank(X1)
    df_num = np.linalg.matrix_rank(X1) - np.linalg.matrix_rank(X0)
    if df_den <= 0 or df_num <= 0:
        raise UserError(f"pad_shift_test: too few rows ({n}) or collinear terms for the model")
    b1, *_ = np.linalg.lstsq(X1, y, rcond=None)
    b0, *_ = np.linalg.lstsq(X0, y, rcond=None)
    rss1 = float(np.sum((y - X1 @ b1) ** 2))
    rss0 = float(np.sum((y - X0 @ b0) ** 2))
    sigma2 = rss1 / df_den
    F = ((rss0 - rss1) / df_num) / sigma2
    p_f = float(_sps.f.sf(F, df_num, df_den))
    cov = sigma2 * np.linalg.pinv(X1.T @ X1)
    k = X0.shape[1]
    est = b1[k:]
    se = np.sqrt(np.diag(cov)[k:])
    t = est / se
    q = float(_sps.t.ppf(0.5 + level / 2, df_den))
    adj = ", ".join(covariates) if covariates else "nothing"
    method = f"OLS of PAD on {adj} and {group}; F test of the {group} terms; t intervals"
    rows = [
        {
            "term": group,
            "test": "F",
            "level": None,
            "estimate": np.nan,
            "std_error": np.nan,
            "statistic": F,
            "df_num": int(df_num),
            "df_den": int(df_den),
            "p_value": p_f,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "n_level": n,
        }
    ]
    for j, lv in enumerate(others):
        rows.append(
            {
                "term": f"{group}[{lv}]",
                "test": "t",
                "level": lv,
                "estimate": float(est[j]),
                "std_error": float(se[j]),
                "statistic": float(t[j]),
                "df_num": 1,
                "df_den": int(df_den),
                "p_value": float(2 * _sps.t.sf(abs(t[j]), df_den)),
                "ci_low": float(est[j] - q * se[j]),
                "ci_high": float(est[j] + q * se[j]),
                "n_level": int(counts[lv]),
            }
        )
    out = pd.DataFrame(rows)
    out["ci_level"] = float(level)
    out.insert(0, "group", group)
    out["reference"] = reference
    out["n"] = n
    out["n_excluded"] = n_excluded
    out["method"] = method
    return out
