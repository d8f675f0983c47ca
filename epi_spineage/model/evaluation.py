"""Accuracy of predicted age per split and modality: MAE, RMSE, Pearson r, mean PAD and its SD.

``age_metrics`` returns a tidy DataFrame (one row per group and metric set), never rounded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_COLUMNS = (
    "split",
    "modality",
    "prediction",
    "n",
    "mae_years",
    "rmse_years",
    "pearson_r",
    "pad_mean_years",
    "pad_sd_years",
    "coverage90",
)


def _row(age: np.ndarray, pred: np.ndarray) -> dict:
    pad = pred - age
    n = int(age.size)
    r = float(np.corrcoef(age, pred)[0, 1]) if n > 2 and np.std(age) > 0 and np.std(pred) > 0 else float("nan")
    return {
        "n": n,
        "mae_years": float(np.mean(np.abs(pad))) if n else float("nan"),
        "rmse_years": float(np.sqrt(np.mean(pad**2))) if n else float("nan"),
        "pearson_r": r,
        "pad_mean_years": float(np.mean(pad)) if n else float("nan"),
        "pad_sd_years": float(np.std(pad, ddof=1)) if n > 1 else float("nan"),
    }


def age_metrics(
    frame: pd.DataFrame,
    pred_col: str = "spine_age_years",
    label: str = "uncorrected",
    coverage_col: str | None = "in_interval90",
) -> pd.DataFrame:
    """Metrics per (split, modality), plus ``modality == "all"`` per split.

    Columns: split, modality, prediction (``label``, e.g. uncorrected / corrected), n, mae_years,
    rmse_years, pearson_r (predicted vs chronological age), pad_mean_years, pad_sd_years (ddof=1),
    coverage90 (share of ages inside the central 90% predictive interval; NaN when not computed).
    """
    rows = []
    for split, g in frame.groupby("split", sort=False):
        groups = (
            [("all", g)] + [(m, gm) for m, gm in g.groupby("modality", sort=True)]
            if g["modality"].nunique() > 1
            else [("all", g), (str(g["modality"].iloc[0]), g)]
        )
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


# ---------------------------------------------------------------------------- model-quality verdict
#: |alpha| above this refuses a Beheshti/Zhang correction: PAD = alpha * age + beta with alpha near -1
#: means the predictions do not follow age at all (alpha = r * SD(pred) / SD(age) - 1), and the
#: "corrected" age is then chronological age plus noise, which looks perfect (docs/guides/train.md#model-quality).
WEAK_ALPHA_ABS = 0.9
#: A prediction SD under this share of the chronological-age SD is a flat predictor: it explains at
#: most about 10% of the age spread even with r = 1.
FLAT_SD_FRACTION = 0.1
#: Fewer test images than this cannot support a verdict.
MIN_VERDICT_N = 5


def model_quality(
    age, pred, *, mean_predictor_age: float, alphas: dict[str, float | None] | None = None, split: str = "test"
) -> dict:
    """The checkpoint's quality verdict: ``{"verdict": "ok"|"weak", "mae_years", "mae_mean_predictor_years",
    "r", "prediction_sd_years", "reasons": [...], "allowed_weak": False, ...}``.

    ``age``/``pred``: chronological and (uncorrected) predicted age on ``split``; ``mean_predictor_age``
    the training-mean age (the predictor that knows nothing); ``alphas``: the fitted bias-correction
    slopes by label (``{"pooled": -0.3, "vfa": ...}``). Weak when any rule holds: the predictions are
    flat (SD < 10% of the age SD), the MAE is no better than the mean-age predictor's, or a correction's
    |alpha| > 0.9; or when fewer than 5 images can be judged.
    """
    age = np.asarray(age, dtype="float64")
    pred = np.asarray(pred, dtype="float64")
    ok = np.isfinite(age) & np.isfinite(pred)
    age, pred = age[ok], pred[ok]
    n = int(age.size)
    mae = float(np.mean(np.abs(pred - age))) if n else float("nan")
    mae_mean = float(np.mean(np.abs(age - mean_predictor_age))) if n else float("nan")
    pred_sd = float(np.std(pred, ddof=1)) if n > 1 else float("nan")
    age_sd = float(np.std(age, ddof=1)) if n > 1 else float("nan")
    r = float(np.corrcoef(age, pred)[0, 1]) if n > 2 and age_sd > 0 and pred_sd > 0 else float("nan")
    reasons = []
    if n < MIN_VERDICT_N:
        reasons.append(f"only {n} {split} image(s) to judge the model (need {MIN_VERDICT_N})")
    else:
        if not pred_sd >= FLAT_SD_FRACTION * age_sd:
            reasons.append(
                f"flat predictor: prediction SD {pred_sd:.2f} years < {FLAT_SD_FRACTION:g} x age SD {age_sd:.2f}"
            )
        if not mae < mae_mean:
            reasons.append(f"{split} MAE {mae:.2f} years is no better than the mean-age predictor's {mae_mean:.2f}")
    for label, alpha in (alphas or {}).items():
        if alpha is not None and np.isfinite(alpha) and abs(alpha) > WEAK_ALPHA_ABS:
            reasons.append(
                f"bias correction ({label}) alpha {alpha:.4f}: |alpha| > {WEAK_ALPHA_ABS:g}, the "
                "predictions do not follow age"
            )
    return {
        "verdict": "weak" if reasons else "ok",
        "split": split,
        "n": n,
        "mae_years": mae,
        "mae_mean_predictor_years": mae_mean,
        "r": r,
        "prediction_sd_years": pred_sd,
        "age_sd_years": age_sd,
        "alphas": {k: (None if v is None else float(v)) for k, v in (alphas or {}).items()},
        "rules": {
            "flat_sd_fraction": FLAT_SD_FRACTION,
            "weak_alpha_abs": WEAK_ALPHA_ABS,
            "min_n": MIN_VERDICT_N,
            "mae_must_beat_mean_predictor": True,
        },
        "reasons": reasons,
        "allowed_weak": False,
    }


def quality_line(quality: dict) -> str:
    """One line for the training summary: the verdict and its numbers (rounded for display only)."""
    q = quality
    numbers = (
        f"{q['split']} MAE {q['mae_years']:.2f} vs {q['mae_mean_predictor_years']:.2f} years for the "
        f"mean-age predictor, r {q['r']:.3f}, prediction SD {q['prediction_sd_years']:.2f} years "
        f"(n={q['n']})"
    )
    if q["verdict"] == "ok":
        return f"model quality: ok ({numbers})"
    allowed = " - saved only because of --allow-weak-model" if q.get("allowed_weak") else ""
    return f"model quality: WEAK MODEL{allowed}: {'; '.join(q['reasons'])} ({numbers})"
