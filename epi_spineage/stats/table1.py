"""Table 1: baseline characteristics by a grouping variable (docs/methods.md#table-1).

Conventions (stated in the report):

- continuous: mean ± SD (ddof=1) of the non-missing values; two groups: Student's t-test (equal
  variances, as scipy and Stata; R's ``t.test`` defaults to Welch); more groups: one-way ANOVA;
- categorical: n (%) of the non-missing values; Pearson's chi-square *without* Yates' correction
  (R ``chisq.test(correct=FALSE)``), or Fisher's exact test when any expected count is below 5;
- numbers are never rounded here: ``format_table_one`` rounds for display only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from epi_spineage.errors import UserError

__all__ = ["table_one", "format_table_one", "TABLE_ONE_COLUMNS"]

TABLE_ONE_COLUMNS = [
    "variable",
    "level",
    "group",
    "n",
    "mean",
    "sd",
    "count",
    "percent",
    "statistic",
    "p_value",
    "test",
    "n_missing",
]

STUDENT_T = "Student t-test"
ANOVA = "one-way ANOVA"
CHI2 = "Pearson chi-square"
FISHER = "Fisher exact"


def _is_categorical(s: pd.Series) -> bool:
    """Categorical, boolean, text, or numbers that are all 0 or 1 (at least one present). O(n)."""
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool or str(s.dtype) == "boolean":
        return True
    if not pd.api.types.is_numeric_dtype(s):
        return True
    x = s.to_numpy(dtype=float, na_value=np.nan)
    x = x[~np.isnan(x)]
    return len(x) > 0 and bool(((x == 0.0) | (x == 1.0)).all())


def _continuous_test(samples: list[np.ndarray]):
    samples = [x for x in samples if x.size > 0]
    if len(samples) < 2 or sum(x.size for x in samples) - len(samples) < 1:
        return np.nan, np.nan, STUDENT_T if len(samples) <= 2 else ANOVA
    if len(samples) == 2:
        res = stats.ttest_ind(samples[0], samples[1], equal_var=True)
        return float(res.statistic), float(res.pvalue), STUDENT_T
    res = stats.f_oneway(*samples)
    return float(res.statistic), float(res.pvalue), ANOVA


FISHER_MC = "Fisher exact (Monte Carlo p, 100000 tables, seed 0)"
_MC_RESAMPLES = 100_000
_MAX_TABLES = 5_000_000
_REL_ERR = 1 + 1e-7  # R fisher.test: tables this close to the observed probability count as "as extreme"


def fisher_2xk(table: np.ndarray) -> float | None:
    """Exact Fisher p value of a 2 x k (or k x 2) table by full enumeration, as R's ``fisher.test``.

    Enumerates the cells of every column but the largest (whose cell follows from the margin), so
    a rare category in a large cohort stays cheap. Returns None for other shapes or when more than
    5 million tables would be needed (the caller then uses a seeded Monte Carlo p value).
    """
    t = np.asarray(table, dtype=np.int64)
    if t.shape[0] != 2:
        t = t.T
    if t.shape[0] != 2:
        return None
    cols = t.sum(axis=0)
    r1, n = int(t[0].sum()), int(t.sum())
    big = int(np.argmax(cols))
    others = [j for j in range(cols.size) if j != big]
    if np.prod([min(int(cols[j]), r1) + 1.0 for j in others]) > _MAX_TABLES:
        return None
    lc = special.gammaln
    log_comb = lambda c, a: lc(c + 1) - lc(a + 1) - lc(c - a + 1)  # noqa: E731
    sums = np.zeros(1, dtype=np.int64)
    logp = np.zeros(1)
    for j in others:
        a = np.arange(min(int(cols[j]), r1) + 1)
        sums = (sums[:, None] + a[None, :]).ravel()
        logp = (logp[:, None] + log_comb(cols[j], a)[None, :]).ravel()
        ok = sums <= r1
        sums, logp = sums[ok], logp[ok]
    a_big = r1 - sums
    ok = (a_big >= 0) & (a_big <= cols[big])
    logp = logp[ok] + log_comb(cols[big], a_big[ok]) - log_comb(n, r1)
    obs = float(sum(log_comb(cols[j], t[0, j]) for j in range(cols.size)) - log_comb(n, r1))
    p = float(np.exp(logp[logp <= obs + np.log(_REL_ERR)]).sum())
    return min(p, 1.0)


def _categorical_test(table: np.ndarray):
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return np.nan, np.nan, CHI2
    expected = stats.contingency.expected_freq(table)
    if (expected < 5).any():
        if table.shape == (2, 2):
            res = stats.fisher_exact(table)
            return float(res.statistic), float(res.pvalue), FISHER  # statistic: the sample OR
        p = fisher_2xk(table)
        if p is not None:
            return np.nan, p, FISHER
        res = stats.fisher_exact(
            table, method=stats.MonteCarloMethod(n_resamples=_MC_RESAMPLES, rng=np.random.default_rng(0))
        )
        return np.nan, float(res.pvalue), FISHER_MC
    res = stats.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue), CHI2


def table_one(
    df: pd.DataFrame,
    by: str,
    variables: Sequence[str],
    *,
    categorical: Sequence[str] = (),
    continuous: Sequence[str] = (),
    overall: bool = False,
) -> pd.DataFrame:
    """Baseline table by ``by``, as a tidy long DataFrame.

    A variable is categorical when listed in ``categorical``, or (unless listed in ``continuous``)
    when it is non-numeric, categorical, boolean or holds only 0/1.

    Returns columns ``TABLE_ONE_COLUMNS``:

    - ``variable``; ``level`` (the category as a string; NaN for continuous variables);
    - ``group`` (the value of ``by`` as a string, or ``"overall"``);
    - ``n``: non-missing values of the variable in the group;
    - ``mean``, ``sd`` (ddof=1): continuous rows; ``count`` and ``percent`` (of ``n``): categorical rows;
    - ``statistic``, ``p_value``, ``test``: the test across groups (the same on every row of a
      variable; the overall column takes part in no test). ``statistic`` is t, F, chi-square, or for
      a 2x2 Fisher test the sample odds ratio;
    - ``n_missing``: missing values of the variable in the group.

    Rows whose ``by`` is missing are left out of the groups, with a warning giving their number.
    """
    if by not in df.columns:
        raise UserError(f"table_one: grouping column {by!r} not found")
    absent = [v for v in variables if v not in df.columns]
    if absent:
        raise UserError(f"table_one: column(s) not found: {absent}")
    n_no_group = int(df[by].isna().sum())
    if n_no_group:
        warnings.warn(f"table_one: {n_no_group} row(s) with missing {by!r} are in no group", stacklevel=2)
    has_group = df[by].notna().to_numpy()
    keys = sorted(pd.unique(df.loc[has_group, by]), key=lambda k: (str(type(k)), k))
    by_values = df[by].to_numpy()
    groups = [(_level_str(k), has_group & (by_values == k)) for k in keys]
    shown = groups + ([("overall", np.ones(len(df), dtype=bool))] if overall else [])
    rows: list[dict] = []
    for var in variables:
        col = df[var]
        is_cat = var in categorical or (var not in continuous and _is_categorical(col))
        if not is_cat:
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            ok = ~np.isnan(x)
            stat, p, test = _continuous_test([x[mask & ok] for _, mask in groups])
            for name, mask in shown:
                xv = x[mask & ok]
                rows.append(
                    {
                        "variable": var,
                        "level": np.nan,
                        "group": name,
                        "n": int(xv.size),
                        "mean": float(xv.mean()) if xv.size else np.nan,
                        "sd": float(xv.std(ddof=1)) if xv.size > 1 else np.nan,
                        "count": np.nan,
                        "percent": np.nan,
                        "statistic": stat,
                        "p_value": p,
                        "test": test,
                        "n_missing": int((mask & ~ok).sum()),
                    }
                )
            continue
        code, levels = _level_codes(col)
        present = code >= 0
        # counts of every (level, shown column) pair by one bincount per column: O(n) per column
        counts = [np.bincount(code[mask & present], minlength=len(levels)) for _, mask in shown]
        table = np.array(counts[: len(groups)], dtype=np.int64).reshape(len(groups), len(levels)).T
        stat, p, test = _categorical_test(table) if len(levels) else (np.nan, np.nan, CHI2)
        for j, (name, mask) in enumerate(shown):
            n = int((mask & present).sum())
            for i, lv in enumerate(levels):
                c = int(counts[j][i])
                rows.append(
                    {
                        "variable": var,
                        "level": lv,
                        "group": name,
                        "n": n,
                        "mean": np.nan,
                        "sd": np.nan,
                        "count": c,
                        "percent": 100.0 * c / n if n else np.nan,
                        "statistic": stat,
                        "p_value": p,
                        "test": test,
                        "n_missing": int((mask & ~present).sum()),
                    }
                )
    out = pd.DataFrame(rows, columns=TABLE_ONE_COLUMNS)
    out["count"] = out["count"].astype("Int64")
    return out


def _level_str(v):
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _as_level_text(col: pd.Series) -> np.ndarray:
    """Each value as its level text (None when missing); whole numbers print as integers."""
    if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out = np.full(x.shape, None, dtype=object)
        ok = ~np.isnan(x)
        whole = ok & (x == np.round(x))
        out[whole] = x[whole].astype(np.int64).astype(str)
        frac = ok & ~whole
        out[frac] = [str(v) for v in x[frac]]
        return out
    return np.array([_level_str(v) for v in col.tolist()], dtype=object)


def _level_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """``(code, levels)``: each row's index into ``levels`` (-1 when missing), where ``levels`` and the
    texts are those of ``_levels(col, _as_level_text(col))``, without making text of every row.

    O(n): the distinct values are found by ``pd.factorize`` (in order of first appearance; a categorical
    by its codes) and only they are made text; values with the same text share a level, as they do in
    ``_as_level_text``.
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        raw = col.cat.codes.to_numpy()
        uniq_text = [_level_str(c) for c in col.cat.categories]
    elif pd.api.types.is_numeric_dtype(col):
        raw, uniq = pd.factorize(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan))
        uniq_text = _as_level_text(pd.Series(np.asarray(uniq, dtype=float))).tolist()
    else:
        raw, uniq = pd.factorize(col.to_numpy(dtype=object))
        uniq_text = [_level_str(v) for v in uniq]
    raw = np.asarray(raw, dtype=np.intp)
    counts = np.bincount(raw[raw >= 0], minlength=len(uniq_text))
    seen = np.array([t for t, k in zip(uniq_text, counts > 0) if k and t is not None], dtype=object)
    levels = _levels(col, seen)
    index = {lv: i for i, lv in enumerate(levels)}
    # code -1 (missing) reads the last entry, -1
    remap = np.array([-1 if t is None else index.get(t, -1) for t in uniq_text] + [-1], dtype=np.intp)
    return remap[raw], levels


def _levels(col: pd.Series, text: np.ndarray) -> list[str]:
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(text[pd.notna(text)].tolist())
        return [lv for lv in (_level_str(c) for c in col.cat.categories) if lv in present]
    vals = list(dict.fromkeys(v for v in text.tolist() if v is not None))
    try:
        return sorted(vals, key=float)
    except ValueError:
        return sorted(vals)


def _fmt_p(p: float, digits: int) -> str:
    if p is None or not np.isfinite(p):
        return ""
    if p < 10**-digits:
        return f"<{10**-digits:.{digits}f}"
    return f"{p:.{digits}f}"


def format_table_one(
    tidy: pd.DataFrame,
    *,
    digits: int = 1,
    p_digits: int = 3,
    labels: dict[str, str] | None = None,
    binary_level: str = "1",
    missing: bool = False,
) -> pd.DataFrame:
    """The published layout of a ``table_one`` result (strings; rounding happens only here).

    One row per continuous variable ("mean ± SD"), one per binary 0/1 variable (the count and
    percentage of ``binary_level``, "n (%)"), and a header row plus one row per level for other
    categorical variables. Columns: ``characteristic``, one per group (headed ``"<group> (n=N)"``
    with N the largest ``n`` of that group), and ``p value``. ``labels`` renames variables.
    ``missing``: also an ``n missing`` column (before ``p value``): the variable's missing values over
    all groups (the overall column's count where ``tidy`` has one), on the variable's first row.
    """
    labels = labels or {}
    groups = list(dict.fromkeys(tidy["group"]))
    group_n = {g: int(tidy.loc[tidy["group"] == g, "n"].max()) for g in groups}
    heads = {g: f"{g} (n={group_n[g]})" for g in groups}
    out: list[dict[str, str]] = []
    for var, block in tidy.groupby("variable", sort=False):
        name = labels.get(var, var)
        p = _fmt_p(block["p_value"].iloc[0], p_digits)
        first = len(out)  # this variable's first row gets its missing count
        if block["level"].isna().all():
            row = {"characteristic": f"{name}, mean ± SD"}
            for g in groups:
                r = block[block["group"] == g].iloc[0]
                row[heads[g]] = f"{r['mean']:.{digits}f} ± {r['sd']:.{digits}f}" if r["n"] else ""
            row["p value"] = p
            out.append(row)
        else:
            levels = list(dict.fromkeys(block["level"]))
            if set(levels) <= {"0", "1"}:
                row = {"characteristic": f"{name}, n (%)"}
                for g in groups:
                    r = block[(block["group"] == g) & (block["level"] == binary_level)]
                    row[heads[g]] = (
                        f"{int(r['count'].iloc[0])} ({r['percent'].iloc[0]:.{digits}f})"
                        if len(r)
                        else f"0 ({0:.{digits}f})"
                    )
                row["p value"] = p
                out.append(row)
            else:
                out.append({"characteristic": f"{name}, n (%)", **{heads[g]: "" for g in groups}, "p value": p})
                for lv in levels:
                    row = {"characteristic": f"  {lv}"}
                    for g in groups:
                        r = block[(block["group"] == g) & (block["level"] == lv)].iloc[0]
                        row[heads[g]] = f"{int(r['count'])} ({r['percent']:.{digits}f})"
                    row["p value"] = ""
                    out.append(row)
        if missing:
            per_group = block.groupby("group", sort=False)["n_missing"].first()
            n_miss = int(per_group["overall"]) if "overall" in per_group.index else int(per_group.sum())
            for i, row in enumerate(out[first:]):
                row["n missing"] = f"{n_miss:,}" if i == 0 else ""
    columns = ["characteristic", *heads.values(), *(["n missing"] if missing else []), "p value"]
    return pd.DataFrame(out, columns=columns)
