"""Accelerated spine ageing: PAD tertile cut points and the four age x acceleration groups
(docs/methods.md#accelerated).

The cut point is learned on one cohort (the derivation test set) and *applied* to others, so it is a
small frozen object (``TertileCuts``) rather than a recomputed quantile. Defaults:

- quantile type 7 (R's default, numpy ``"linear"``); type 2 (Stata ``xtile``/``pctile``, numpy
  ``"averaged_inverted_cdf"``) on request;
- accelerated = PAD >= upper cut; ``cut_rule=">"`` gives PAD > cut (Stata's ``xtile`` bins);
- PAD and the cut are rounded to 1e-9 years first (``schema.PAD_ROUNDING_YEARS``) so that float
  subtraction does not split values that are tied in the data (integer ages and predictions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.schema import PAD_COLUMN, PAD_ROUNDING_YEARS
from epi_spineage.stats._compat import resolve_cut_rule

__all__ = [
    "TertileCuts",
    "tertile_cuts",
    "accelerated",
    "four_groups",
    "FOUR_GROUP_LABELS",
    "REFERENCE_GROUP",
    "round_pad",
]

_NUMPY_METHOD: dict[str, Literal["linear", "averaged_inverted_cdf"]] = {
    "type7": "linear",
    "type2": "averaged_inverted_cdf",
}

#: Labels of ``four_groups`` in display order; the first is the reference group.
FOUR_GROUP_LABELS = (
    "younger, not accelerated",
    "younger, accelerated",
    "older, not accelerated",
    "older, accelerated",
)
REFERENCE_GROUP = FOUR_GROUP_LABELS[0]


def round_pad(values) -> np.ndarray:
    """PAD rounded to ``PAD_ROUNDING_YEARS`` (1e-9 years), NaN kept."""
    decimals = int(round(-np.log10(PAD_ROUNDING_YEARS)))
    return np.round(np.asarray(values, dtype=float), decimals)


@dataclass(frozen=True)
class TertileCuts:
    """Tertile cut points of PAD: ``lower`` (1/3 quantile) and ``upper`` (2/3 quantile; the top
    tertile starts here). ``method`` is ``"type7"`` or ``"type2"``, ``n`` the non-missing values
    used, ``source`` a free label (e.g. ``"derivation test"``)."""

    lower: float
    upper: float
    method: str = "type7"
    n: int = 0
    source: str = ""

    def to_frame(self) -> pd.DataFrame:
        """Two rows (``term`` = ``"tertile_1/3"``, ``"tertile_2/3"``): analysis, term, estimate,
        method, n, source; ``estimate`` is the cut in years. Matches the ``cutpoints`` table."""
        return pd.DataFrame(
            [
                {
                    "analysis": "pad_tertiles",
                    "term": "tertile_1/3",
                    "estimate": self.lower,
                    "method": self.method,
                    "n": self.n,
                    "source": self.source,
                },
                {
                    "analysis": "pad_tertiles",
                    "term": "tertile_2/3",
                    "estimate": self.upper,
                    "method": self.method,
                    "n": self.n,
                    "source": self.source,
                },
            ]
        )

    def to_dict(self) -> dict:
        return asdict(self)


def tertile_cuts(values, method: str = "type7", *, source: str = "") -> TertileCuts:
    """Tertile cut points (1/3 and 2/3 quantiles) of ``values`` (NaN ignored). O(n log n).

    ``method="type7"`` matches R ``quantile(type=7)``; ``"type2"`` matches ``quantile(type=2)`` and
    Stata's ``pctile``. PAD is rounded to 1e-9 first.
    """
    if method not in _NUMPY_METHOD:
        raise UserError(f"method must be 'type7' or 'type2', got {method!r}")
    v = round_pad(values).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise UserError("tertile_cuts: no non-missing values")
    lo, hi = np.quantile(v, [1 / 3, 2 / 3], method=_NUMPY_METHOD[method])
    return TertileCuts(float(lo), float(hi), method, int(v.size), source)


def _cut_value(cut) -> float:
    if isinstance(cut, TertileCuts):
        return cut.upper
    try:
        return float(cut)
    except (TypeError, ValueError):
        raise UserError(f"cut must be a number or TertileCuts, got {cut!r}") from None


def accelerated(pad, cut, cut_rule: str = ">=", *, strict: bool | None = None) -> pd.Series:
    """True where PAD is in the top tertile: PAD >= cut (``cut_rule=">"``: PAD > cut); NA where PAD is missing.

    Complexity: O(n).

    ``cut`` is a number or a ``TertileCuts`` (its ``upper``). Both sides are rounded to 1e-9 years.
    ``strict`` is the old spelling of ``cut_rule`` (True = ``">"``), deprecated.
    Returns a pandas nullable boolean Series (index kept when ``pad`` is a Series).
    """
    cut_rule = resolve_cut_rule(cut_rule, strict, "accelerated")
    c = float(round_pad(_cut_value(cut)))
    index = pad.index if isinstance(pad, pd.Series) else None
    p = round_pad(pad).ravel()
    flag = p > c if cut_rule == ">" else p >= c
    out = pd.Series(pd.array(flag, dtype="boolean"), index=index, name="accelerated")
    out[np.isnan(p)] = pd.NA
    return out


def four_groups(
    df: pd.DataFrame,
    age: str = "age_years",
    pad: str = PAD_COLUMN,
    age_median: float | None = None,
    cut=None,
    *,
    cut_rule: str = ">=",
    strict: bool | None = None,
    method: str = "type7",
) -> pd.Series:
    """The four groups: chronological age < / >= median x accelerated no / yes.

    Complexity: O(n) (O(n log n) when the median or the cut is computed here). Memory: a few n-long
    float vectors and the categorical's one-byte codes.

    ``age_median`` defaults to the median of ``df[age]`` (the cohort analysed). ``cut`` is a number
    or ``TertileCuts`` learned elsewhere; when None it is learned from ``df[pad]`` itself (with
    ``method``), which is only right for the cohort that defines the cut. Returns an ordered
    categorical Series named ``group`` with ``FOUR_GROUP_LABELS`` as categories (reference first);
    missing age or PAD gives NaN.
    """
    for col in (age, pad):
        if col not in df.columns:
            raise UserError(f"four_groups: missing column {col!r}")
    a = df[age].to_numpy(dtype=float)
    if age_median is None:
        age_median = float(np.nanmedian(a))
    if cut is None:
        cut = tertile_cuts(df[pad], method=method)
    cut_rule = resolve_cut_rule(cut_rule, strict, "four_groups")
    acc = accelerated(df[pad], cut, cut_rule).to_numpy(dtype=float, na_value=np.nan)
    older = np.where(np.isnan(a), np.nan, (a >= age_median).astype(float))
    code = older * 2 + acc
    # the category codes directly (-1 for missing): no n-long array of label strings to hash
    codes = np.where(np.isnan(code), -1, code).astype(np.int8)
    cat = pd.Categorical.from_codes(codes, categories=list(FOUR_GROUP_LABELS), ordered=True)
    return pd.Series(cat, index=df.index, name="group")
