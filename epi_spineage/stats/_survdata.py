"""Input checks shared by the survival and Cox modules: columns to clean numpy arrays.

Rows missing the time or the event are excluded (never silently: callers report ``n_excluded``).
A time must be >= 0 and an event 0 or 1; anything else is the user's mistake (``UserError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as _sps

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+, and the package supports 3.10

from epi_spineage.errors import UserError


def z_value(level: float) -> float:
    """Two-sided normal quantile for a confidence level in (0, 1)."""
    if not 0.0 < float(level) < 1.0:
        raise UserError(f"confidence level must be between 0 and 1, got {level!r}")
    return float(_sps.norm.ppf(1.0 - (1.0 - float(level)) / 2.0))


def require_columns(df: pd.DataFrame, columns) -> None:
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise UserError(f"column(s) not in the table: {', '.join(map(str, missing))}")


def notna_mask(s: pd.Series) -> np.ndarray:
    """``s.notna()`` as a numpy array, O(n); a numpy float column is tested with ``isnan`` (no pandas
    dispatch) and a numpy integer or boolean column, which cannot hold a missing value, not at all."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "fiub":
        return ~np.isnan(s.to_numpy()) if dt.kind == "f" else np.ones(len(s), dtype=bool)
    return s.notna().to_numpy(dtype=bool)


def numeric_values(s: pd.Series, rows: np.ndarray | None = None) -> np.ndarray:
    """``pd.to_numeric(s, errors="coerce")`` as float64 (NaN where missing) at the boolean ``rows``.

    A numpy-backed numeric column is indexed first and converted after (the same values, no copy of
    the whole column); anything else goes through ``pd.to_numeric``.
    """
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "fiub":
        v = s.to_numpy()
        return (v if rows is None else v[rows]).astype(float, copy=False)
    if rows is not None:
        s = s[rows]
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def checked_time_event(t: np.ndarray, e: np.ndarray, time: str, event: str) -> np.ndarray:
    """Check follow-up ``t`` and events ``e`` (float arrays of the kept rows) as ``time_event`` does;
    returns the events as int64. Raises ``UserError`` on non-numeric, negative or infinite times or
    events other than 0/1."""
    if np.isnan(t).any():
        raise UserError(f"column {time!r} has non-numeric values")
    if np.isnan(e).any() or not np.isin(e, (0.0, 1.0)).all():
        raise UserError(f"column {event!r} must hold 0/1 event indicators")
    if (t < 0).any() or not np.isfinite(t).all():
        raise UserError(f"column {time!r} has negative or infinite follow-up times")
    return e.astype(np.int64)


def time_event(df: pd.DataFrame, time: str, event: str, extra=(), *, with_mask: bool = False):
    """Rows with a usable time and event (and non-missing ``extra`` columns); count of rows dropped.

    Returns ``(frame, n_dropped)``, ``frame`` with float ``_time`` and integer ``_event`` columns
    beside the requested ones; with ``with_mask`` also the boolean mask of the kept rows of ``df``.
    O(n) in the rows times the columns.
    """
    require_columns(df, [time, event, *extra])
    cols = [time, event] + [c for c in extra if c not in (time, event)]
    sub = df[cols]
    keep = np.logical_and.reduce([notna_mask(sub.iloc[:, i]) for i in range(sub.shape[1])])
    out = sub.loc[keep].copy()
    t = pd.to_numeric(out[time], errors="coerce").to_numpy(dtype=float)
    e = pd.to_numeric(out[event], errors="coerce").to_numpy(dtype=float)
    ev = checked_time_event(t, e, time, event)
    out["_time"] = t
    out["_event"] = ev
    if with_mask:
        return out, int((~keep).sum()), keep
    return out, int((~keep).sum())


def group_labels(frame: pd.DataFrame, group: str | None) -> list:
    """Sorted distinct group labels (``[None]`` when there is no grouping)."""
    if group is None:
        return [None]
    return sorted_labels(frame[group].unique())


def sorted_labels(values) -> list:
    """Distinct group values in ``group_labels`` order: sorted, or sorted as text when they do not compare."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


# ---------------------------------------------------------------------------------------------
# Shared sort order of follow-up times (docs/guides/stats.md#speed-at-registry-scale)
# ---------------------------------------------------------------------------------------------
class SurvivalData:
    """A follow-up column sorted once: ``time`` (float, NaN where missing), ``event`` and ``order``,
    the stable ascending argsort of ``time`` (missing times last).

    Every Cox fit, Harrell's C and PH test of an outcome starts from this order; a model's complete
    cases take their own order from it in O(n) (``subset_order``) instead of sorting again. Made by
    ``prepare_survival`` or found by content in a small cache (``time_order``).
    """

    __slots__ = ("event", "order", "time")

    def __init__(self, time: np.ndarray, event: np.ndarray | None, order: np.ndarray):
        self.time, self.event, self.order = time, event, order

    def __len__(self) -> int:
        return len(self.time)


_CACHE_SIZE = 4
_cache: list[tuple[tuple, np.ndarray, np.ndarray]] = []  # (key, time copy, order), most recent last
_sharing = True


def _key(t: np.ndarray) -> tuple:
    return (t.shape, t.dtype.str, hash(t.tobytes()))


def time_order(t: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of ``t`` (NaN last), shared between calls on equal arrays.

    O(n) to find a cached order (a hash and an exact comparison of the values, so a changed column
    never reuses a stale order), O(n log n) to sort on a miss. With sharing off
    (``survival_sharing(False)``) it always sorts.
    """
    t = np.ascontiguousarray(t, dtype=float)
    if not _sharing:
        return np.argsort(t, kind="stable")
    key = _key(t)
    for i, (k, saved, order) in enumerate(_cache):
        if k == key and np.array_equal(saved, t, equal_nan=True):
            _cache.append(_cache.pop(i))
            return order
    order = np.argsort(t, kind="stable")
    order.flags.writeable = False
    _cache.append((key, t.copy(), order))
    del _cache[:-_CACHE_SIZE]
    return order


def subset_order(order: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The stable argsort of ``t[keep]`` from the stable argsort ``order`` of ``t``, in O(n).

    A stable sort keeps tied rows in their original order, and so does selecting rows, so the
    result is the very permutation ``np.argsort(t[keep], kind="stable")`` would give.
    """
    keep = np.asarray(keep, dtype=bool)
    position = np.cumsum(keep) - 1
    return position[order[keep[order]]]


def prepare_survival(df: pd.DataFrame, time: str, event: str) -> SurvivalData:
    """Sort an outcome's follow-up once, for every model, subgroup, PH test and C-index that uses it.

    The order is kept (by the column's content) in a small cache that the Cox functions consult, so
    calling this first is optional: the first model of an outcome does the same. O(n log n) once.
    """
    require_columns(df, [time, event])
    t = pd.to_numeric(df[time], errors="coerce").to_numpy(dtype=float)
    e = pd.to_numeric(df[event], errors="coerce").to_numpy(dtype=float)
    return SurvivalData(t, e, time_order(t))


class survival_sharing:  # lower case: used as a context manager, like numpy.errstate
    """``with survival_sharing(False):`` sorts afresh on every call (the unshared path, for checks
    and benchmarks); ``survival_sharing(True)`` restores the default. Also clears the cache."""

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)

    def __enter__(self) -> Self:
        global _sharing
        self._previous = _sharing
        _sharing = self.enabled
        _cache.clear()
        return self

    def __exit__(self, *exc) -> None:
        global _sharing
        _sharing = self._previous
        _cache.clear()
