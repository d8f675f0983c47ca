"""Plot data whose size does not grow with the cohort: binned scatter, thinned step curves.

The report's figures and their CSV files (``figures/data/*.csv``) are drawn from these summaries,
never from one row per participant, so writing the report takes about the same time at 2,000 and at
5,000,000 participants (docs/guides/registry-scale.md).

- ``age_histogram``: chronological vs spine age as counts in 1-year cells (O(n) to build; at most
  ``max_bins``\u00b2 rows, only the non-empty cells kept).
- ``thin_steps``: a monotone step curve (Kaplan-Meier or Aalen-Johansen cumulative incidence, ROC)
  kept at the points where it moves by at least ``resolution`` of its range in either coordinate
  (O(m) for m points; at most about ``2 / resolution`` points per curve). Drawn as a step function,
  the thinned curve is within ``resolution`` of the full one everywhere: about a pixel.
- ``event_times_only``: the rows of a Kaplan-Meier/Aalen-Johansen curve where an event happened
  (the estimate and its Greenwood/delta-method interval change only there), plus the first and last row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: a curve is kept where it moves by this fraction of its range (1/1000: about a pixel of the figures)
RESOLUTION = 1 / 1000
#: the label columns a plot frame may be split by (one curve per combination)
CURVE_KEYS = ("cohort", "outcome", "predictor", "method", "group")


def age_histogram(age: pd.Series, spine_age: pd.Series, *, width: float = 1.0, max_bins: int = 150) -> pd.DataFrame:
    """Counts of participants in ``width``-year cells of (chronological age, spine age), non-empty cells only.

    Returns columns ``age_low``, ``age_high``, ``spine_low``, ``spine_high``, ``n``; the cells cover
    the data's range, widened when more than ``max_bins`` cells of ``width`` would be needed. O(n).
    """
    x = pd.to_numeric(age, errors="coerce").to_numpy(float)
    y = pd.to_numeric(spine_age, errors="coerce").to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    cols = ["age_low", "age_high", "spine_low", "spine_high", "n"]
    if not len(x):
        return pd.DataFrame(columns=cols)

    def edges(v: np.ndarray) -> np.ndarray:
        lo, hi = np.floor(v.min() / width) * width, np.floor(v.max() / width) * width + width
        w = max(width, (hi - lo) / max_bins)
        return lo + w * np.arange(int(np.ceil((hi - lo) / w - 1e-9)) + 1)

    ex, ey = edges(x), edges(y)
    counts, _, _ = np.histogram2d(x, y, bins=[ex, ey])
    i, j = np.nonzero(counts)
    return pd.DataFrame(
        {
            "age_low": ex[i],
            "age_high": ex[i + 1],
            "spine_low": ey[j],
            "spine_high": ey[j + 1],
            "n": counts[i, j].astype(np.int64),
        }
    )


def least_squares_line(age: pd.Series, spine_age: pd.Series) -> tuple[float, float]:
    """Intercept and slope of spine age on chronological age over all complete rows, O(n)."""
    x = pd.to_numeric(age, errors="coerce").to_numpy(float)
    y = pd.to_numeric(spine_age, errors="coerce").to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    slope, icept = np.polyfit(x, y, 1)
    return float(icept), float(slope)


def _keep_moves(x: np.ndarray, y: np.ndarray, resolution: float) -> np.ndarray:
    """Boolean mask: the first point of each run of points in the same (x, y) cell, and the last point."""
    n = len(x)
    keep = np.zeros(n, bool)
    if n == 0:
        return keep

    def cell(v: np.ndarray) -> np.ndarray:
        finite = v[np.isfinite(v)]
        span = float(np.ptp(finite)) if len(finite) else 0.0
        if span <= 0:
            return np.zeros(n, np.int64)
        return np.floor(np.nan_to_num(v - finite.min(), nan=-1.0) / (span * resolution)).astype(np.int64)

    cx, cy = cell(x), cell(y)
    keep[0] = keep[-1] = True
    keep[1:] |= (cx[1:] != cx[:-1]) | (cy[1:] != cy[:-1])
    return keep


def thin_steps(
    frame: pd.DataFrame, x: str, y: str, *, keys: tuple[str, ...] = CURVE_KEYS, resolution: float | None = None
) -> pd.DataFrame:
    """Each curve of ``frame`` (one per combination of the ``keys`` columns present) thinned in O(m).

    A point is kept when the curve enters a new cell of ``resolution`` (default ``RESOLUTION``) x its
    range in ``x`` or in ``y``, and the last point of every curve is kept. Rows keep their order;
    columns are unchanged.
    """
    resolution = RESOLUTION if resolution is None else resolution
    if frame is None or not len(frame) or x not in frame.columns or y not in frame.columns:
        return frame
    by = [k for k in keys if k in frame.columns]
    xs = frame[x].to_numpy(float)
    ys = frame[y].to_numpy(float)
    keep = np.zeros(len(frame), bool)
    if by:
        codes = frame.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
        for g in np.unique(codes):
            idx = np.flatnonzero(codes == g)
            keep[idx[_keep_moves(xs[idx], ys[idx], resolution)]] = True
    else:
        keep = _keep_moves(xs, ys, resolution)
    return frame.loc[keep].reset_index(drop=True)


def event_times_only(frame: pd.DataFrame, *, keys: tuple[str, ...] = CURVE_KEYS) -> pd.DataFrame:
    """The rows of a step curve with ``events`` > 0, plus each curve's first and last row.

    Censoring-only times do not change a Kaplan-Meier or Aalen-Johansen estimate or its interval, so
    the step function drawn from these rows is the same as from all of them. O(m).
    """
    if frame is None or not len(frame) or "events" not in frame.columns:
        return frame
    by = [k for k in keys if k in frame.columns]
    ev = pd.to_numeric(frame["events"], errors="coerce").fillna(0).to_numpy() > 0
    codes = frame.groupby(by, sort=False, dropna=False).ngroup().to_numpy() if by else np.zeros(len(frame), int)
    first = np.r_[True, codes[1:] != codes[:-1]]
    last = np.r_[codes[1:] != codes[:-1], True]
    return frame.loc[ev | first | last].reset_index(drop=True)


def compact_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """Plot data of any of the report's curves, bounded in size: step curves (``time``/``estimate``)
    at event times and thinned, ROC curves (``fpr``/``tpr``) thinned; anything else unchanged. O(m)."""
    if frame is None or not len(frame):
        return frame
    if {"time", "estimate"} <= set(frame.columns):
        return thin_steps(event_times_only(frame), "time", "estimate")
    if {"fpr", "tpr"} <= set(frame.columns):
        return thin_steps(frame, "fpr", "tpr")
    return frame
