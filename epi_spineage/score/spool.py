"""The Parquet spool: where results wait when the database stays locked, and their loader.

A spool folder holds result batches (``batch-<run>-<seq>.parquet``, the flat result schema), the
model rows (``model-<id>.json``) and run rows (``run-<id>.json``) that could not be written. Every
file appears atomically (written under a temporary name, fsynced, renamed), so a crash leaves either
a whole file or none. ``ingest_folder`` loads a spool or a folder of Ray shards: model rows first,
then each batch in its own transaction, then run rows; spool files are deleted after their commit.
Because every insert is keyed, loading a file twice (a crash between commit and delete) adds nothing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.locking import connect_with_retry
from epi_spineage.errors import UserError

log = logging.getLogger(__name__)

SPOOL_MARKER = ".epi_spineage_spool"


def default_spool_dir(db_path: str | os.PathLike) -> Path:
    return Path(str(db_path) + ".spool")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    """Write side of a spool folder (created on first use, marked so ingest may delete from it)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _ready(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / SPOOL_MARKER
        if not marker.exists():
            marker.write_text("epi_spineage spool: load with `python -m epi_spineage.ingest`\n")
        return self.folder

    def write_batch(self, table: pa.Table, run_id: str, seq: int) -> Path:
        path = self._ready() / f"batch-{run_id}-{seq:06d}.parquet"
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def write_json(self, kind: str, ident: str, row: dict) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)
        path = self._ready() / f"{kind}-{safe}.json"
        text = json.dumps(row, default=str, sort_keys=True)
        _atomic_write(path, lambda tmp: tmp.write_text(text))
        return path

    def pending(self) -> bool:
        return self.folder.is_dir() and any(_data_files(self.folder))


def _data_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and path.suffix in (".parquet", ".json"):
            yield path


@dataclass
class IngestSummary:
    """What one ingest loaded: files, rows offered, new scores and other outcomes."""

    files: int = 0
    models: int = 0
    runs: int = 0
    counts: db.LoadCounts = field(default_factory=db.LoadCounts)
    deleted: int = 0

    def line(self) -> str:
        c = self.counts
        return (
            f"ingested {self.files} file(s): {c.offered} rows, {c.scored} new scores, "
            f"{c.duplicates} duplicates, {c.not_spine} QC skips, {c.errors} errors; "
            f"{self.models} model row(s), {self.runs} run row(s)"
        )


def _parse_json_row(path: Path) -> dict:
    return json.loads(path.read_text())


def ingest_into(
    con, folder: str | os.PathLike, *, delete: bool | None = None, key: bytes | None = None
) -> IngestSummary:
    """Load every spool/shard file under ``folder`` through an open connection.

    ``delete``: remove each file after its commit; default: only in a marked spool folder. ``key``:
    needed only to migrate a database whose stored paths are not yet hashed (migration 3); rows
    keyed with another key than the database's are refused either way.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    if delete is None:
        delete = (folder / SPOOL_MARKER).exists()
    dbschema.apply_schema(con, key=key)
    files = list(_data_files(folder))
    summary = IngestSummary()
    models = [p for p in files if p.suffix == ".json" and p.name.startswith("model-")]
    runs = [p for p in files if p.suffix == ".json" and p.name.startswith("run-")]
    batches = [p for p in files if p.suffix == ".parquet"]
    # Models before scores (the views join them); runs last so a run's final counts win.
    for path in models:
        row = _parse_json_row(path)
        con.execute("BEGIN TRANSACTION").fetchall()
        db.register_model(con, row)
        con.execute("COMMIT").fetchall()
        summary.models += 1
    for path in batches:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("skipping unreadable shard %s: %s", path, exc)
            continue
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            counts = db.load_results(con, table)
        except BaseException:
            con.execute("ROLLBACK").fetchall()
            raise
        con.execute("COMMIT").fetchall()
        summary.counts.add(counts)
        summary.files += 1
        if delete:
            path.unlink(missing_ok=True)
            summary.deleted += 1
    for path in runs:
        row = _parse_json_row(path)
        con.execute("BEGIN TRANSACTION").fetchall()
        db.upsert_run(con, row)
        con.execute("COMMIT").fetchall()
        summary.runs += 1
    if delete:
        for path in models + runs:
            path.unlink(missing_ok=True)
            summary.deleted += 1
    summary.files += summary.models + summary.runs
    return summary


def ingest_folder(
    db_path: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    delete: bool | None = None,
    lock_timeout_s: float = 60.0,
    key: bytes | None = None,
) -> IngestSummary:
    """Open ``db_path`` (waiting up to ``lock_timeout_s`` while it is busy) and ingest ``folder``."""
    from epi_spineage.db.migrate_v3 import compact_database
    from epi_spineage.db.migrations import schema_version

    con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
    try:
        before = schema_version(con)
        dbschema.apply_schema(con, key=key)
    except BaseException:
        con.close()
        raise
    if before is not None and before < 3:  # migration 3 rewrote stored paths: drop their old bytes
        con.close()
        compact_database(db_path, timeout_s=lock_timeout_s)
        con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
    try:
        return ingest_into(con, folder, delete=delete, key=key)
    finally:
        con.close()
