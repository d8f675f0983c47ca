"""Per-manufacturer bias corrections in the database (table ``bias_corrections``, schema version 5).

``fit_bias_corrections`` fits ``model.bias.ManufacturerBiasCorrection`` on the calibration set the user
names and stores it with the model, so that ``v_cohort_scores`` (its ``..._by_manufacturer_...`` columns)
and the report apply the same lines (docs/methods.md#domain-shift). A calibration set is named
``COHORT`` (every scored participant of that cohort) or ``COHORT:SPLIT`` (one split of it); the rows are
those of ``v_cohort_scores``, i.e. each participant's baseline image with the model that scored it.
The pooled fallback is the model's own correction (``models.metadata_json``), as the views read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from epi_spineage.errors import UserError
from epi_spineage.model.bias import DEFAULT_MIN_IMAGES, BiasCorrection, ManufacturerBiasCorrection

_ARROW_SCHEMA = pa.schema(
    [
        ("model_id", pa.string()),
        ("manufacturer", pa.string()),
        ("calibration_set", pa.string()),
        ("scope", pa.string()),
        ("method", pa.string()),
        ("alpha", pa.float64()),
        ("beta", pa.float64()),
        ("n_images", pa.int32()),
        ("min_images", pa.int32()),
        ("fit_ids", pa.list_(pa.string())),
        ("data_hash", pa.string()),
        ("note", pa.string()),
        ("fitted_at", pa.timestamp("us")),
        ("package_version", pa.string()),
    ]
)


def parse_calibration_set(name: str) -> tuple[str, str | None]:
    """``"COHORT"`` -> (cohort, None); ``"COHORT:SPLIT"`` -> (cohort, split)."""
    text = str(name or "").strip()
    cohort, _, split = text.partition(":")
    if not cohort.strip() or (":" in text and not split.strip()):
        raise UserError(f"calibration set {name!r}: name it COHORT or COHORT:SPLIT (e.g. 'external:calibration')")
    return cohort.strip(), (split.strip() or None)


def pooled_correction(con: Any, model_id: str) -> BiasCorrection | None:
    """The model's pooled correction as stored in ``models.metadata_json`` (None when it has none)."""
    rows = con.execute(
        "SELECT json_extract(metadata_json, '$.bias_correction')::VARCHAR FROM models WHERE model_id = ?", [model_id]
    ).fetchall()
    if not rows or rows[0][0] in (None, "null"):
        return None
    d = json.loads(rows[0][0])
    if not isinstance(d, dict) or d.get("alpha") is None and d.get("method", "beheshti") == "beheshti":
        return None
    fit = dict(d.get("fit") or {})
    fit.update({k: d[k] for k in ("method", "alpha", "beta") if d.get(k) is not None})
    try:
        obj = BiasCorrection.from_dict(fit)
    except UserError:
        return None
    obj.fit_ids_ = d.get("fit_ids") or None
    obj.data_hash_ = None  # the views check ids, not data hashes
    return obj


def _model_id(con: Any, model_id: str | None) -> str:
    models = [r[0] for r in con.execute("SELECT DISTINCT model_id FROM v_cohort_scores ORDER BY 1").fetchall()]
    if model_id is not None:
        if model_id not in models:
            raise UserError(f"model {model_id!r} scored no cohort participant (models: {', '.join(models) or 'none'})")
        return model_id
    if len(models) != 1:
        raise UserError(
            f"the database's cohort was scored with {len(models)} models ({', '.join(models) or 'none'}); "
            "name one with --model-id"
        )
    return models[0]


def calibration_pairs(con: Any, calibration_set: str, model_id: str) -> pd.DataFrame:
    """participant_id, manufacturer, age_years, spine_age_years of the calibration set (one model)."""
    cohort, split = parse_calibration_set(calibration_set)
    sql = """
        SELECT participant_id, manufacturer, age_years, spine_age_years
        FROM v_cohort_scores WHERE model_id = ? AND cohort = ? AND spine_age_years IS NOT NULL
    """
    params: list[Any] = [model_id, cohort]
    if split is not None:
        sql += " AND split = ?"
        params.append(split)
    return con.execute(sql + " ORDER BY participant_id", params).df()


def fit_from_db(
    con: Any, calibration_set: str, *, model_id: str | None = None, min_images: int = DEFAULT_MIN_IMAGES
) -> tuple[str, ManufacturerBiasCorrection]:
    """(model id, the per-manufacturer correction fitted on ``calibration_set``) from an open database."""
    mid = _model_id(con, model_id)
    pairs = calibration_pairs(con, calibration_set, mid)
    if len(pairs) < 3:
        cohort, split = parse_calibration_set(calibration_set)
        where = f"cohort {cohort!r}" + (f", split {split!r}" if split else "")
        raise UserError(
            f"calibration set {calibration_set!r}: {len(pairs)} scored participant(s) in {where} for model {mid}; "
            "a correction needs at least 3 (check the cohort and split names)"
        )
    fit = ManufacturerBiasCorrection(calibration_set, pooled=pooled_correction(con, mid), min_images=min_images)
    fit.fit(pairs["age_years"], pairs["spine_age_years"], pairs["manufacturer"], ids=pairs["participant_id"])
    return mid, fit


def store(con: Any, model_id: str, fit: ManufacturerBiasCorrection) -> int:
    """Replace the model's rows of ``bias_corrections`` with ``fit`` (one transaction); returns rows written."""
    table = pa.Table.from_pylist(fit.to_rows(model_id), schema=_ARROW_SCHEMA)
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        con.execute("DELETE FROM bias_corrections WHERE model_id = ?", [model_id]).fetchall()
        con.register("_bias_rows", table)
        try:
            con.execute("INSERT INTO bias_corrections BY NAME SELECT * FROM _bias_rows").fetchall()
        finally:
            con.unregister("_bias_rows")
        con.execute("COMMIT").fetchall()
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    return table.num_rows


def fit_bias_corrections(
    db_path: str | os.PathLike,
    calibration_set: str,
    *,
    model_id: str | None = None,
    min_images: int = DEFAULT_MIN_IMAGES,
    lock_timeout_s: float = 60.0,
) -> tuple[str, ManufacturerBiasCorrection]:
    """Fit per-manufacturer corrections on ``calibration_set`` and store them with the model (writer lock)."""
    from epi_spineage.db.locking import connect_or_refuse
    from epi_spineage.db.schema import apply_schema

    path = Path(db_path).expanduser()
    if not path.is_file():
        raise UserError(f"database not found: {path}")
    con = connect_or_refuse(path, timeout_s=lock_timeout_s, threads=1)
    try:
        apply_schema(con)
        mid, fit = fit_from_db(con, calibration_set, model_id=model_id, min_images=min_images)
        store(con, mid, fit)
    finally:
        con.close()
    return mid, fit


def read_corrections(con: Any, model_id: str | None = None) -> dict[str, ManufacturerBiasCorrection]:
    """The stored per-manufacturer corrections, by model id (each with its pooled fallback)."""
    df = con.execute("SELECT * FROM bias_corrections ORDER BY model_id, manufacturer").df()
    if model_id is not None:
        df = df[df["model_id"] == model_id]
    out = {}
    for mid, block in df.groupby("model_id", sort=True):
        rows = block.to_dict(orient="records")
        out[str(mid)] = ManufacturerBiasCorrection.from_rows(rows, pooled=pooled_correction(con, str(mid)))
    return out


def describe(con: Any) -> pd.DataFrame:
    """The stored rows without the id lists (model, manufacturer, scope, alpha, beta, n, note)."""
    return con.execute("""
        SELECT model_id, manufacturer, calibration_set, scope, method, alpha, beta, n_images, min_images, note,
               fitted_at
        FROM bias_corrections ORDER BY model_id, manufacturer""").df()
