"""Drift watch: does a manufacturer's or a month's mean prediction move away from the reference?

``v_drift`` (``sql/v_drift.sql``) summarises scores per model, run, manufacturer and study month;
``drift_summary`` reads those groups and flags the ones whose mean moved more than ``bound_years``
from the reference period. PAD is compared when the cohort gives chronological age (it removes the
age mix of the month), else the mean predicted age.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

#: Default minimum images in a cell before it may be flagged (the ``settings`` row ``drift_min_count``
#: overrides it per database; docs/conventions.md#drift-min-count).
DEFAULT_DRIFT_MIN_COUNT = 30
#: A run whose predictions spread less than this (SD, years) over at least FLAT_MIN_N scores is "flat":
#: the model is degenerate (docs/guides/score.md#flat-runs). Same numbers as ``sql/v_drift.sql``.
FLAT_SD_YEARS = 0.5
FLAT_MIN_N = 10


def drift_min_count(con) -> int:
    """The database's ``drift_min_count`` setting (schema version 2), else the default 30."""
    import duckdb

    try:
        rows = con.execute("SELECT value FROM settings WHERE name = 'drift_min_count'").fetchall()
    except duckdb.Error:  # a database without the settings table (read through an old attach)
        return DEFAULT_DRIFT_MIN_COUNT
    try:
        value = int(rows[0][0]) if rows else DEFAULT_DRIFT_MIN_COUNT
    except (TypeError, ValueError):
        return DEFAULT_DRIFT_MIN_COUNT
    return value if value >= 1 else DEFAULT_DRIFT_MIN_COUNT


def flat_runs(con, *, sd_bound_years: float = FLAT_SD_YEARS, min_n: int = FLAT_MIN_N) -> pd.DataFrame:
    """Runs whose predictions have near-zero spread: columns run_id, model_id, n, sd_years.

    A run of at least ``min_n`` scores with a between-image SD of spine age under ``sd_bound_years``
    comes from a degenerate (flat) model: every image gets about the same age.
    """
    return con.execute(
        """
        SELECT run_id, model_id, count(*) AS n, stddev_samp(spine_age_years) AS sd_years
        FROM scores GROUP BY run_id, model_id
        HAVING count(*) >= ? AND stddev_samp(spine_age_years) < ?
        ORDER BY run_id, model_id""",
        [int(min_n), float(sd_bound_years)],
    ).df()


GROUP_COLUMNS = [
    "model_id",
    "run_id",
    "manufacturer",
    "study_month",
    "n_images",
    "mean_spine_age_years",
    "sd_spine_age_years",
    "mean_spine_age_sd_years",
    "n_with_age",
    "mean_pad_years",
]


def drift_summary(
    con,
    bound_years: float = 2.0,
    *,
    reference_months: int = 12,
    reference: tuple[_dt.date | str, _dt.date | str] | None = None,
    min_count: int | None = None,
) -> pd.DataFrame:
    """One row per (model, run, manufacturer, study month) with a drift flag.

    Parameters: ``con`` a DuckDB connection to a scored database; ``bound_years`` the largest
    allowed move of a group mean; ``reference`` an explicit [start, end) date range, else the first
    ``reference_months`` study months of each model's scores (all manufacturers pooled);
    ``min_count`` the fewest images a group needs before it may be flagged (None: the database's
    ``drift_min_count`` setting, default 30; docs/conventions.md#drift-min-count).

    Returns columns: model_id, run_id, manufacturer, study_month (first day; NaT when the image
    had no study date), n_images, mean_spine_age_years, sd_spine_age_years (between images),
    mean_spine_age_sd_years (mean predictive SD), n_with_age (images with cohort age), mean_pad_years,
    reference_start, reference_end, reference_spine_age_years, reference_pad_years, drift_metric
    ("pad_years" or "spine_age_years"), delta_years (group mean minus reference mean), bound_years,
    drift_min_count, drift_flag (n_images >= drift_min_count and |delta_years| > bound_years).
    """
    if bound_years <= 0 or not np.isfinite(bound_years):
        raise ValueError("bound_years must be a positive number")
    if min_count is None:
        min_count = drift_min_count(con)
    elif int(min_count) != min_count or min_count < 1:
        raise ValueError("min_count must be a whole number >= 1")
    min_count = int(min_count)
    groups = con.execute(
        f"SELECT {', '.join(GROUP_COLUMNS)} FROM v_drift ORDER BY model_id, study_month, manufacturer, run_id"
    ).df()
    if groups.empty:
        return groups.assign(
            reference_start=pd.Series(dtype="datetime64[ns]"),
            reference_end=pd.Series(dtype="datetime64[ns]"),
            reference_spine_age_years=pd.Series(dtype=float),
            reference_pad_years=pd.Series(dtype=float),
            drift_metric=pd.Series(dtype=str),
            delta_years=pd.Series(dtype=float),
            bound_years=pd.Series(dtype=float),
            drift_min_count=pd.Series(dtype="int64"),
            drift_flag=pd.Series(dtype=bool),
        )
    groups["study_month"] = pd.to_datetime(groups["study_month"])
    parts = []
    for _model, g in groups.groupby("model_id", sort=False):
        g = g.copy()
        if reference is not None:
            start, end = pd.Timestamp(reference[0]), pd.Timestamp(reference[1])
        else:
            start = g["study_month"].min()
            end = start + pd.DateOffset(months=reference_months) if pd.notna(start) else start
        in_ref = (g["study_month"] >= start) & (g["study_month"] < end)
        ref = g[in_ref]
        n = ref["n_images"].to_numpy(float)
        ref_age = float(np.average(ref["mean_spine_age_years"], weights=n)) if n.sum() > 0 else np.nan
        with_age = ref["n_with_age"].to_numpy(float)
        ref_pad = (
            float(np.average(ref["mean_pad_years"].fillna(0.0), weights=with_age)) if with_age.sum() > 0 else np.nan
        )
        g["reference_start"], g["reference_end"] = start, end
        g["reference_spine_age_years"], g["reference_pad_years"] = ref_age, ref_pad
        use_pad = g["mean_pad_years"].notna() & np.isfinite(ref_pad)
        g["drift_metric"] = np.where(use_pad, "pad_years", "spine_age_years")
        g["delta_years"] = np.where(use_pad, g["mean_pad_years"] - ref_pad, g["mean_spine_age_years"] - ref_age)
        parts.append(g)
    out = pd.concat(parts, ignore_index=True)
    out["bound_years"] = float(bound_years)
    out["drift_min_count"] = min_count
    # A cell of a handful of images moves by more than the bound by chance alone: flag only cells that
    # hold at least min_count images.
    big_enough = out["n_images"].to_numpy() >= min_count
    out["drift_flag"] = big_enough & (out["delta_years"].abs() > bound_years).fillna(False).to_numpy(bool)
    return out


class PredictionSpread:
    """Running count, mean and SD (Welford) of one run's spine ages, to notice a flat model at the end."""

    def __init__(self) -> None:
        self.n, self._mean, self._m2 = 0, 0.0, 0.0

    def add(self, value: float | None) -> None:
        if value is None or not np.isfinite(value):
            return
        self.n += 1
        delta = float(value) - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (float(value) - self._mean)

    @property
    def mean(self) -> float:
        return self._mean if self.n else float("nan")

    @property
    def sd(self) -> float:
        return float(np.sqrt(self._m2 / (self.n - 1))) if self.n > 1 else float("nan")

    def is_flat(self, *, sd_bound_years: float = FLAT_SD_YEARS, min_n: int = FLAT_MIN_N) -> bool:
        return self.n >= min_n and self.sd < sd_bound_years


def end_of_run_warnings(run_id: str, model_id: str, meta: dict | None, spread: PredictionSpread) -> list[str]:
    """The scorer's closing warnings: a weak model (its checkpoint's quality verdict) and a flat run."""
    lines = []
    quality = (meta or {}).get("quality") or {}
    if quality.get("verdict") == "weak":
        reasons = "; ".join(quality.get("reasons") or []) or "see its meta.json"
        lines.append(f"model {model_id} is a WEAK MODEL (saved with --allow-weak-model): {reasons}")
    if spread.is_flat():
        lines.append(
            f"run {run_id}: predictions have near-zero spread (SD {spread.sd:.2f} years over {spread.n} "
            f"images, all about {spread.mean:.2f} years): the model is degenerate; do not analyse "
            "these scores (docs/guides/score.md#flat-runs)"
        )
    return lines
