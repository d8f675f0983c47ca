"""Input checks shared by the survival and Cox modules: columns to clean numpy arrays.

Rows missing the time or the event are excluded (never silently: callers report ``n_excluded``).
A time must be >= 0 and an event 0 or 1; anything else is the user's mistake (``UserError``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _sps

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


def time_event(df: pd.DataFrame, time: str, event: str, extra=()) -> tuple[pd.DataFrame, int]:
    """Rows with a usable time and event (and non-missing ``extra`` columns); count of rows dropped.

    Returns a frame with float ``_time`` and integer ``_event`` columns beside the requested ones.
    """
    require_columns(df, [time, event, *extra])
    cols = [time, event] + [c for c in extra if c not in (time, event)]
    sub = df[cols]
    keep = sub.notna().all(axis=1).to_numpy()
    out = sub.loc[keep].copy()
    t = pd.to_numeric(out[time], errors="coerce").to_numpy(dtype=float)
    e = pd.to_numeric(out[event], errors="coerce").to_numpy(dtype=float)
    if np.isnan(t).any():
        raise UserError(f"column {time!r} has non-numeric values")
    if np.isnan(e).any() or not np.isin(e, (0.0, 1.0)).all():
        raise UserError(f"column {event!r} must hold 0/1 event indicators")
    if (t < 0).any() or not np.isfinite(t).all():
        raise UserError(f"column {time!r} has negative or infinite follow-up times")
    out["_time"] = t
    out["_event"] = e.astype(np.int64)
    return out, int((~keep).sum())


def group_labels(frame: pd.DataFrame, group: str | None) -> list:
    """Sorted distinct group labels (``[None]`` when there is no grouping)."""
    if group is None:
        return [None]
    values = frame[group].unique()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)
