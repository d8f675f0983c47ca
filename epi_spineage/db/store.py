"""The scorer's side of the database: loading result batches, models, runs, and what is already done.

Everything that writes goes through ``load_results`` (flat result rows, see ``results.py``) inside
one transaction per batch, inserted from Arrow (DuckDB's ``executemany`` manages about 1,000 rows/s;
an Arrow scan millions). Keys make every load idempotent: ``scores`` (content_hash, model_id),
``images`` (source_path), ``errors`` (a deterministic error_id), so re-loading a spool file or a Ray
shard after a crash adds nothing twice.

DuckDB 2.0 refuses ``register`` on a connection with an unread result, so every statement here is
fetched to the end (``.fetchall()``), DDL included.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from epi_spineage.db.results import conform, now_utc
from epi_spineage.privacy import is_pseudonym

log = logging.getLogger(__name__)

# ---- result batches ---------------------------------------------------------------------------

# Resolve duplicates against what is already stored and within the batch itself: a "scored" row
# whose pixels this model already scored under another path becomes a duplicate of that path.
_RESOLVE = """
CREATE OR REPLACE TEMP TABLE _batch AS
WITH incoming AS (
    SELECT * FROM _incoming
),
first_in_batch AS (
    SELECT
        *,
        first_value(source_path) OVER (
            PARTITION BY content_hash, model_id, status = 'scored' ORDER BY source_path
        ) AS first_path
    FROM incoming
)
SELECT
    b.* EXCLUDE (status, duplicate_of, first_path),
    CASE
        WHEN b.status = 'scored' AND s.source_path IS NOT NULL AND s.source_path <> b.source_path THEN 'duplicate'
        WHEN b.status = 'scored' AND s.source_path IS NULL AND b.first_path <> b.source_path THEN 'duplicate'
        ELSE b.status
    END AS status,
    CASE
        WHEN b.status = 'scored' AND s.source_path IS NOT NULL AND s.source_path <> b.source_path THEN s.source_path
        WHEN b.status = 'scored' AND s.source_path IS NULL AND b.first_path <> b.source_path THEN b.first_path
        ELSE b.duplicate_of
    END AS duplicate_of
FROM first_in_batch AS b
LEFT JOIN scores AS s
    ON s.content_hash = b.content_hash AND s.model_id = b.model_id
"""

_INSERT_IMAGES = """
INSERT INTO images BY NAME
SELECT
    source_path, content_hash, file_size_bytes, sop_instance_uid, sop_class_uid, format, modality,
    dicom_modality, view_position, body_part_examined, series_description, study_date,
    pixel_spacing_row_mm, pixel_spacing_col_mm, rows_px, columns_px, manufacturer,
    photometric_interpretation, bits_stored, transfer_syntax_uid, participant_key, key_fingerprint,
    file_fingerprint,
    CASE status WHEN 'scored' THEN 'ok' ELSE status END AS qc_status,
    CASE WHEN status = 'duplicate' THEN coalesce(qc_reason, 'same pixels as ' || duplicate_of)
         ELSE qc_reason END AS qc_reason,
    run_id, recorded_at
FROM _batch
WHERE status IN ('scored', 'not_spine', 'duplicate') AND content_hash IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY source_path ORDER BY recorded_at DESC) = 1
ON CONFLICT (source_path) DO UPDATE SET
    content_hash = excluded.content_hash, file_size_bytes = excluded.file_size_bytes,
    file_fingerprint = excluded.file_fingerprint,
    qc_status = excluded.qc_status, qc_reason = excluded.qc_reason,
    run_id = excluded.run_id, recorded_at = excluded.recorded_at
"""

_INSERT_SCORES = """
INSERT OR IGNORE INTO scores BY NAME
SELECT
    content_hash, model_id, spine_age_years, spine_age_sd_years, source_path, sop_instance_uid,
    weights_hash, preprocess_config_hash, package_version, run_id, photometric_interpretation,
    bits_stored, manufacturer, device, recorded_at AS scored_at, decoder
FROM _batch
WHERE status = 'scored'
"""

# One row per path, content and error type (not per run): a bad file seen by every nightly run is
# recorded once (by the first run that saw it), so QC counts stay true; a changed file is new content.
_INSERT_ERRORS = """
INSERT OR IGNORE INTO errors BY NAME
SELECT
    sha256(source_path || chr(0) || coalesce(file_fingerprint, file_size_bytes::VARCHAR, message, '')
           || chr(0) || coalesce(error_type, status)) AS error_id,
    run_id, source_path,
    CASE WHEN status = 'duplicate' THEN 'duplicate' ELSE coalesce(error_type, 'error') END AS error_type,
    CASE WHEN status = 'duplicate' THEN coalesce(message, 'same pixels as ' || duplicate_of)
         ELSE message END AS message,
    recorded_at AS occurred_at
FROM _batch
WHERE status IN ('error', 'duplicate')
"""


@dataclass
class LoadCounts:
    """Rows offered and rows that were new, by outcome."""

    offered: int = 0
    scored: int = 0
    duplicates: int = 0
    not_spine: int = 0
    errors: int = 0

    def add(self, other: LoadCounts) -> None:
        for name in ("offered", "scored", "duplicates", "not_spine", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def database_keys(con) -> list[str]:
    """The key fingerprint(s) recorded in ``db_key`` (one, once a key has been used; none before)."""
    return [r[0] for r in con.execute("SELECT key_fingerprint FROM db_key ORDER BY recorded_at").fetchall()]


def check_database_key(con, fingerprint: str, *, record: bool = True) -> None:
    """Refuse (UserError, one line) a key other than the one this database belongs to.

    The first writer with a key records its fingerprint (``record``); call inside the writer's
    transaction or on an open writable connection. See docs/privacy.md#one-key-per-database.
    """
    from epi_spineage.errors import UserError

    known = database_keys(con)
    if not known:
        if record:
            con.execute("INSERT OR IGNORE INTO db_key (key_fingerprint) VALUES (?)", [fingerprint]).fetchall()
        return
    if fingerprint not in known:
        raise UserError(
            f"this database belongs to the key with fingerprint {known[0]}, not {fingerprint}: "
            "one key per database (use the key it was created with, or another database)"
        )


def load_results(con, table: pa.Table) -> LoadCounts:
    """Insert one batch of flat result rows; call inside a transaction. Idempotent.

    Refuses (UserError) rows pseudonymised with a key other than the database's.
    """
    table = conform(table)
    counts = LoadCounts(offered=table.num_rows)
    if table.num_rows == 0:
        return counts
    for fingerprint in sorted({f for f in table.column("key_fingerprint").to_pylist() if f}):
        check_database_key(con, fingerprint)
    con.register("_incoming", table)
    try:
        con.execute(_RESOLVE).fetchall()
        before = con.execute("SELECT count(*) FROM scores").fetchall()[0][0]
        con.execute(_INSERT_IMAGES).fetchall()
        con.execute(_INSERT_SCORES).fetchall()
        con.execute(_INSERT_ERRORS).fetchall()
        counts.scored = con.execute("SELECT count(*) FROM scores").fetchall()[0][0] - before
        by_status = dict(con.execute("SELECT status, count(*) FROM _batch GROUP BY status").fetchall())
        counts.duplicates = by_status.get("duplicate", 0)
        counts.not_spine = by_status.get("not_spine", 0)
        counts.errors = by_status.get("error", 0)
        con.execute("DROP TABLE _batch").fetchall()
    finally:
        con.unregister("_incoming")
    return counts


# ---- models and runs --------------------------------------------------------------------------


def normalise_bias_correction(bias) -> dict | None:
    """``BiasCorrection`` (or its dict) to ``{"method", "alpha", "beta", ...}`` for the SQL views.

    Beheshti: corrected = predicted - (alpha * age + beta). Other layouts keep their own keys and
    get alpha/beta only when they name a slope and intercept.
    """
    if bias is None:
        return None
    d = bias.to_dict() if hasattr(bias, "to_dict") else dict(bias)
    d = json.loads(json.dumps(d, default=_json_default))
    method = str(d.get("method", "beheshti")).lower()
    alpha = _first(d, "alpha", "slope", "coef", "a")
    beta = _first(d, "beta", "intercept", "b")
    if method != "beheshti":
        # Zhang's per-age-level table does not fit a linear SQL formula: the views leave the
        # corrected columns NULL and the report applies it in Python.
        alpha = beta = None
    out = {"method": method, "alpha": alpha, "beta": beta}
    out["fit"] = {k: v for k, v in d.items() if k not in ("ids", "participant_ids", "fit_ids")}
    # The keyed hashes of the participants it was fitted on (already pseudonyms, like cohort ids):
    # the views refuse to correct those rows, as BiasCorrection.apply does.
    fit_ids = d.get("fit_ids")
    if isinstance(fit_ids, list) and all(is_pseudonym(i) for i in fit_ids):
        out["fit_ids"] = fit_ids
    return out


def _first(d: Mapping, *names):
    for name in names:
        if name in d and isinstance(d[name], (int, float)):
            return float(d[name])
    return None


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def model_row(loaded) -> dict:
    """The ``models`` row for a ``LoadedModel``."""
    meta = dict(getattr(loaded, "meta", {}) or {})
    meta["bias_correction"] = normalise_bias_correction(getattr(loaded, "bias_correction", None))
    cfg = loaded.preprocess_config
    return {
        "model_id": loaded.model_id,
        "weights_hash": loaded.weights_hash,
        "backbone": meta.get("backbone"),
        "min_age_years": float(getattr(loaded, "min_age", meta.get("min_age", 40)) or 40),
        "max_age_years": float(getattr(loaded, "max_age", meta.get("max_age", 100)) or 100),
        "temperature": float(getattr(loaded, "temperature", 1.0) or 1.0),
        "preprocess_config_hash": cfg.config_hash(),
        "preprocess_config_json": cfg.to_json(),
        "metadata_json": json.dumps(meta, default=_json_default, sort_keys=True),
        "registered_at": now_utc(),
    }


def register_model(con, row: Mapping) -> None:
    """Insert the model row unless that model id is already known."""
    con.register("_model", pa.Table.from_pylist([dict(row)]))
    try:
        con.execute("""
            INSERT OR IGNORE INTO models BY NAME
            SELECT model_id, weights_hash, backbone, min_age_years, max_age_years, temperature,
                   preprocess_config_hash, preprocess_config_json::JSON AS preprocess_config_json,
                   metadata_json::JSON AS metadata_json, registered_at::TIMESTAMP AS registered_at
            FROM _model
        """).fetchall()
    finally:
        con.unregister("_model")


RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "model_id",
    "host",
    "package_version",
    "device",
    "archives",
    "n_seen",
    "n_scored",
    "n_skipped_known",
    "n_not_spine",
    "n_duplicates",
    "n_errors",
    "n_spooled",
    "decode",
    "n_gpu_decoded",
    "n_cpu_fallback",
)


def upsert_run(con, row: Mapping) -> None:
    """Insert or update one ``runs`` row (the start row, then the finished one).

    A late "running" row (say, from a spool loaded after the run finished) never overwrites a
    finished one.
    """
    full = {name: row.get(name) for name in RUN_COLUMNS}
    con.register("_run", pa.Table.from_pylist([full]))
    try:
        sets = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c not in ("run_id", "started_at"))
        con.execute(f"""
            INSERT INTO runs BY NAME
            SELECT run_id, started_at::TIMESTAMP AS started_at, finished_at::TIMESTAMP AS finished_at,
                   status, model_id, host, package_version, device, archives,
                   n_seen, n_scored, n_skipped_known, n_not_spine, n_duplicates, n_errors, n_spooled,
                   decode::VARCHAR AS decode, n_gpu_decoded::BIGINT AS n_gpu_decoded,
                   n_cpu_fallback::BIGINT AS n_cpu_fallback
            FROM _run
            ON CONFLICT (run_id) DO UPDATE SET {sets}
            WHERE excluded.status <> 'running' OR runs.status = 'running'
        """).fetchall()
    finally:
        con.unregister("_run")


def mark_abandoned_runs(con) -> int:
    """Runs left 'running' by a killed process become 'interrupted'. Call only under the scorer lock."""
    n = con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchall()[0][0]
    if n:
        con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'").fetchall()
    return n


# ---- what is already done ---------------------------------------------------------------------


@dataclass
class Known:
    """What a model has already done, so a rerun skips it before decoding.

    ``paths``: stored source path -> (file size, file fingerprint or None), for paths fully handled
    (scored, duplicate, QC skip);
    ``sops``: SOPInstanceUID -> (content hash, path) scored; ``hashes``: content hash -> path scored.
    """

    paths: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)
    qc_paths: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)
    sops: dict[str, tuple[str, str]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def done_paths(self, include_non_spine: bool) -> dict[str, tuple[int | None, str | None]]:
        """Paths to skip: everything handled, plus QC skips unless those are now wanted."""
        if include_non_spine:
            return dict(self.paths)
        return {**self.paths, **self.qc_paths}


def known_for_model(con, model_id: str) -> Known:
    """Read the done sets for ``model_id`` (one scan of ``images`` and ``scores``)."""
    known = Known()
    rows = con.execute(
        """
        SELECT s.content_hash, s.source_path, s.sop_instance_uid
        FROM scores AS s WHERE s.model_id = ?
    """,
        [model_id],
    ).fetchall()
    for content_hash, path, sop in rows:
        known.hashes.setdefault(content_hash, path)
        if sop:
            known.sops.setdefault(sop, (content_hash, path))
    has_fp = bool(
        con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'images' "
            "AND column_name = 'file_fingerprint'"
        ).fetchall()[0][0]
    )
    img = con.execute(
        f"""
        SELECT i.source_path, i.file_size_bytes, {"i.file_fingerprint" if has_fp else "NULL"}, i.qc_status,
               (s.content_hash IS NOT NULL) AS is_scored
        FROM images AS i
        LEFT JOIN scores AS s ON s.content_hash = i.content_hash AND s.model_id = ?
    """,
        [model_id],
    ).fetchall()
    for path, size, fingerprint, qc_status, is_scored in img:
        if is_scored:
            known.paths[path] = (size, fingerprint)
        elif qc_status == "not_spine":
            known.qc_paths[path] = (size, fingerprint)
    return known


def error_id(source_path: str, content: str, error_type: str) -> str:
    """The same id ``_INSERT_ERRORS`` computes in SQL (for tests and tools): ``content`` is the file
    fingerprint, else the size, else the message."""
    return hashlib.sha256(f"{source_path}\0{content}\0{error_type}".encode()).hexdigest()
