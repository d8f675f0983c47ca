"""Calibrated uncertainty: central predictive intervals and temperature scaling. Torch-free.

The network's softmax is a distribution over completed years: class ``j`` covers ``[a_j, a_j + 1)``
with ``a_j = min_age + j``. Treating each class as uniform over its year gives a continuous CDF,
so the central ``level`` interval ``[Q((1-level)/2), Q((1+level)/2)]`` can be compared with a
continuous chronological age. Temperature ``T`` divides the logits; ``T > 1`` widens the interval.
``fit_temperature`` picks ``T`` on validation so the share of true ages inside the 90% interval is
closest to 0.90 (a grid over log T; ties resolved to the middle of the tied range).
"""

from __future__ import annotations

import numpy as np

DEFAULT_GRID = np.exp(np.linspace(np.log(0.03), np.log(30.0), 241))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype="float64") / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _quantile(p: np.ndarray, q: float, min_age: float) -> np.ndarray:
    """Quantile ``q`` of the piecewise-uniform distribution with bin masses ``p`` (rows)."""
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    j = np.argmax(cdf >= q, axis=1)  # first bin whose upper CDF reaches q
    rows = np.arange(p.shape[0])
    below = np.where(j > 0, cdf[rows, np.maximum(j - 1, 0)], 0.0)
    mass = np.maximum(p[rows, j], 1e-300)
    return min_age + j + np.clip((q - below) / mass, 0.0, 1.0)


def predictive_interval(
    logits: np.ndarray, temperature: float = 1.0, level: float = 0.9, min_age: float = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends (years) of the central ``level`` predictive interval per row."""
    p = softmax(logits, temperature)
    a = (1.0 - level) / 2.0
    return _quantile(p, a, min_age), _quantile(p, 1.0 - a, min_age)


def interval_coverage(
    logits: np.ndarray, ages, temperature: float = 1.0, level: float = 0.9, min_age: float = 40
) -> float:
    """Share of ``ages`` inside their central ``level`` predictive interval."""
    lo, hi = predictive_interval(logits, temperature, level, min_age)
    y = np.asarray(ages, dtype="float64")
    return float(np.mean((y >= lo) & (y <= hi)))


def fit_temperature(
    logits: np.ndarray, ages, level: float = 0.9, min_age: float = 40, grid: np.ndarray | None = None
) -> float:
    """Temperature whose ``level`` interval coverage on (``logits``, ``ages``) is closest to ``level``."""
    logits = np.asarray(logits, dtype="float64")
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError("fit_temperature needs a non-empty (N, C) array of logits")
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype="float64")
    cov = np.array([interval_coverage(logits, ages, t, level, min_age) for t in grid])
    gap = np.abs(cov - level)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    # Coverage is a step function of T: take the geometric middle of the best run.
    return float(np.exp(np.log(grid[best]).mean()))
