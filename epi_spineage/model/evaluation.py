"""Accuracy of predicted age per split and modality: MAE, RMSE, Pearson r, mean PAD and its SD.

``age_metrics`` returns a tidy DataFrame (one row per group and metric set), never rounded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_COLUMNS = ("split", "modality", "prediction", "n", "mae_years", "rmse_years", "pearson_r",
                  "pad_mean_years", "pad_sd_years", "coverage90")


def _row(age: np.ndarray, pred: np.ndarray) -> dict:
    pad = pred - age
    n = int(age.size)
    r = float(np.corrcoef(age, pred)[0, 1]) if n > 2 and np.std(age) > 0 and np.std(pred) > 0 else float("nan")
    return {
        "n": n,
        "mae_years": float(np.mean(np.abs(pad))) if n else float("nan"),
        "rmse_years": float(np.sqrt(np.mean(pad ** 2))) if n else float("nan"),
        "pearson_r": r,
        "pad_mean_years": float(np.mean(pad)) if n else float("nan"),
        "pad_sd_years": float(np.std(pad, ddof=1)) if n > 1 else float("nan"),
    }


def age_metrics(frame: pd.DataFrame, pred_col: str = "spine_age_years", label: str = "uncorrected",
                coverage_col: str | None = "in_interval90") -> pd.DataFrame:
    """Metrics per (split, modality), plus ``modality == "all"`` per split.

    Columns: split, modality, prediction (``label``, e.g. uncorrected / corrected), n, mae_years,
    rmse_years, pearson_r (predicted vs chronological age), pad_mean_years, pad_sd_years (ddof=1),
    coverage90 (share of ages inside the central 90% predictive interval; NaN when not computed).
    """
    rows = []
    for split, g in frame.groupby("split", sort=False):
        groups = [("all", g)] + [(m, gm) for m, gm in g.groupby("modality", sort=True)] if g["modality"].nunique() > 1 \
            else [("all", g), (str(g["modality"].iloc[0]), g)]
        for modality, gm in groups:
            row = {"split": split, "modality": modality, "prediction": label}
            row.update(_row(gm["age_years"].to_numpy(float), gm[pred_col].to_numpy(float)))
            row["coverage90"] = float(gm[coverage_col].mean()) if coverage_col and coverage_col in gm else float("nan")
            rows.append(row)
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def format_metrics(df: pd.DataFrame) -> str:
    """Human-readable table (rounding happens here, at display time only)."""
    show = df.copy()
    for c in ("mae_years", "rmse_years", "pad_mean_years", "pad_sd_years"):
        show[c] = show[c].map(lambda v: f"{v:.2f}")
    for c in ("pearson_r", "coverage90"):
        show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return show.to_string(index=False)
