"""The flat result row: one per archive member, the unit every writer and loader shares.

The scorer's per-batch commit, the Parquet spool, and the Ray shards all carry this one Arrow
schema; ``db.load_results`` turns it into ``images``/``scores``/``errors`` rows. One format means
one loader, so a spool file and a Ray shard are ingested by the same tested code.

``status``: ``scored`` (has spine age), ``not_spine`` (QC skip), ``duplicate`` (same pixels or
SOPInstanceUID as an image already scored by this model), ``error`` (could not be read).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping

import pyarrow as pa

STATUSES = ("scored", "not_spine", "duplicate", "error")

RESULT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("source_path", pa.string()),
        ("status", pa.string()),
        ("content_hash", pa.string()),
        ("duplicate_of", pa.string()),
        ("file_size_bytes", pa.int64()),
        ("sop_instance_uid", pa.string()),
        ("sop_class_uid", pa.string()),
        ("format", pa.string()),
        ("modality", pa.string()),
        ("dicom_modality", pa.string()),
        ("view_position", pa.string()),
        ("body_part_examined", pa.string()),
        ("series_description", pa.string()),
        ("study_date", pa.date32()),
        ("pixel_spacing_row_mm", pa.float64()),
        ("pixel_spacing_col_mm", pa.float64()),
        ("rows_px", pa.int32()),
        ("columns_px", pa.int32()),
        ("manufacturer", pa.string()),
        ("photometric_interpretation", pa.string()),
        ("bits_stored", pa.int32()),
        ("transfer_syntax_uid", pa.string()),
        ("participant_key", pa.string()),
        ("key_fingerprint", pa.string()),
        ("qc_reason", pa.string()),
        ("model_id", pa.string()),
        ("weights_hash", pa.string()),
        ("preprocess_config_hash", pa.string()),
        ("package_version", pa.string()),
        ("device", pa.string()),
        ("decoder", pa.string()),
        ("spine_age_years", pa.float64()),
        ("spine_age_sd_years", pa.float64()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("recorded_at", pa.timestamp("us")),
        ("file_fingerprint", pa.string()),  # cheap change test for the rerun skip (db/store.py)
    ]
)

RESULT_COLUMNS = tuple(RESULT_SCHEMA.names)


def now_utc() -> _dt.datetime:
    """Naive UTC timestamp (DuckDB TIMESTAMP has no zone; every stored time is UTC)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def parse_study_date(value) -> _dt.date | None:
    """DICOM DA ("YYYYMMDD"), ISO text, or a date; anything unparseable becomes ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    text = str(value).strip().replace("-", "")[:8]
    try:
        return _dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def spacing_pair(value) -> tuple[float | None, float | None]:
    """PixelSpacing (row, column) in mm from a list/tuple/"a\\b" string; ``None`` when absent."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        value = value.replace("\\", " ").replace(",", " ").split()
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None, None
    if len(vals) == 1:
        return vals[0], vals[0]
    return (vals[0], vals[1]) if len(vals) >= 2 else (None, None)


def _as_int(value) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _as_str(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def meta_fields(meta: Mapping) -> dict:
    """The stored subset of ``LoadedImage.meta``. ``patient_id`` is deliberately not among them."""
    row_mm, col_mm = spacing_pair(meta.get("pixel_spacing"))
    return {
        "sop_instance_uid": _as_str(meta.get("sop_instance_uid")),
        "sop_class_uid": _as_str(meta.get("sop_class_uid")),
        "format": _as_str(meta.get("format")),
        "modality": _as_str(meta.get("modality")),
        "dicom_modality": _as_str(meta.get("dicom_modality")),
        "view_position": _as_str(meta.get("view_position")),
        "body_part_examined": _as_str(meta.get("body_part_examined")),
        "series_description": _as_str(meta.get("series_description")),
        "study_date": parse_study_date(meta.get("study_date")),
        "pixel_spacing_row_mm": row_mm,
        "pixel_spacing_col_mm": col_mm,
        "manufacturer": _as_str(meta.get("manufacturer")),
        "photometric_interpretation": _as_str(meta.get("photometric_interpretation")),
        "bits_stored": _as_int(meta.get("bits_stored")),
        "transfer_syntax_uid": _as_str(meta.get("transfer_syntax_uid")),
    }


def to_table(rows: Iterable[Mapping]) -> pa.Table:
    """Rows (dicts with any subset of the columns) to an Arrow table in ``RESULT_SCHEMA``."""
    rows = list(rows)
    columns = {name: [r.get(name) for r in rows] for name in RESULT_COLUMNS}
    return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table read back from Parquet (a spool file, a Ray shard) to ``RESULT_SCHEMA``.

    Missing columns become nulls so that shards written by an older version still load.
    """
    n = table.num_rows
    arrays = []
    for field in RESULT_SCHEMA:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)
