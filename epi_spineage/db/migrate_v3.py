"""Migration 3: rewrite stored paths as keyed hashes in place, record the key, add file fingerprints.

Release 0.1.0 stored ``images.source_path``, ``scores.source_path`` and ``errors.source_path`` raw, and
PACS member names carry record numbers. This step replaces every stored path (and the paths quoted in
``qc_reason``/``message`` and the archives of ``runs``) by ``hash_path(path, key)``, the form the scorer
now writes, so that a rerun still recognises every image and rescores nothing. The old bytes survive in
the file's free blocks until the database is rewritten: ``compact_database`` (run by each writer right
after this migration) copies it into a fresh file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from epi_spineage.db.paths import hash_path, is_path_hash
from epi_spineage.db.schema import quote_ident
from epi_spineage.errors import UserError

log = logging.getLogger(__name__)

#: The table that records which key a database belongs to (one row; see ``check_database_key``).
KEY_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS db_key (
    key_fingerprint            VARCHAR PRIMARY KEY, -- privacy.key_fingerprint of the database's key
    recorded_at                TIMESTAMP NOT NULL DEFAULT current_timestamp
)
"""

_QUOTED_PATH = re.compile(r"^(.*?\bas )(.+?)( \(not decoded\))?$")


def _needs_key(con: Any) -> bool:
    for table in ("images", "scores", "errors"):
        n = con.execute(
            f"SELECT count(*) FROM {table} WHERE NOT regexp_full_match(source_path, 'h_[0-9a-f]{{32}}')"
        ).fetchall()[0][0]
        if n:
            return True
    return False


def _fingerprints(con: Any) -> set[str]:
    rows = con.execute("""
        SELECT DISTINCT key_fingerprint FROM images WHERE key_fingerprint IS NOT NULL
        UNION SELECT DISTINCT key_fingerprint FROM cohort WHERE key_fingerprint IS NOT NULL
    """).fetchall()
    return {r[0] for r in rows}


def hash_stored_paths(con: Any, key: bytes | None) -> None:
    """The body of migration 3 (inside the migration's transaction)."""
    from epi_spineage.privacy import key_fingerprint

    if key is None and _needs_key(con):
        raise UserError(
            "this database needs migration 3 (stored paths become keyed hashes), which needs the "
            "pseudonymisation key: set EPI_SPINEAGE_PSEUDONYM_KEY(_FILE) or run "
            "`python -m epi_spineage.cohort upgrade --db FILE --key-file KEY`"
        )
    con.execute(KEY_TABLE_SQL).fetchall()
    con.execute("ALTER TABLE images ADD COLUMN IF NOT EXISTS file_fingerprint VARCHAR").fetchall()
    if key is None:
        return
    fp = key_fingerprint(key)
    existing = _fingerprints(con)
    if existing and fp not in existing:
        raise UserError(
            f"this database was written with key fingerprint {', '.join(sorted(existing))}, not "
            f"{fp}: migrate it with the key it was written with"
        )
    con.execute("INSERT OR IGNORE INTO db_key (key_fingerprint) VALUES (?)", [fp]).fetchall()

    paths: set[str] = set()
    for table in ("images", "scores", "errors"):
        paths.update(r[0] for r in con.execute(f"SELECT DISTINCT source_path FROM {table}").fetchall())
    mapping = {p: (p if is_path_hash(p) else hash_path(p, key)) for p in paths}

    def quoted(text, own_path=None):
        """The message with paths hashed: "... as PATH" messages, and the row's own path (or its
        archive and member parts, as archive errors name them)."""
        if text is None:
            return None
        m = _QUOTED_PATH.match(text)
        if m and m.group(2) in mapping:
            return m.group(1) + mapping[m.group(2)] + (m.group(3) or "")
        if own_path and not is_path_hash(own_path):
            new = mapping.get(own_path) or hash_path(own_path, key)
            for part in sorted({own_path, *own_path.split("::")} - {""}, key=len, reverse=True):
                text = text.replace(part, new)
        return text

    # images: source_path is the primary key, so rewrite its rows (delete + insert) rather than update
    images = con.sql("SELECT * FROM images").to_arrow_table()
    if images.num_rows:
        cols = {name: images.column(name).to_pylist() for name in images.column_names}
        cols["source_path"] = [mapping[p] for p in cols["source_path"]]
        cols["qc_reason"] = [quoted(t, p) for t, p in zip(cols["qc_reason"], images.column("source_path").to_pylist())]
        new = pa.table(
            {name: pa.array(cols[name], type=images.schema.field(name).type) for name in images.column_names}
        )
        con.register("_images_v3", new)
        con.execute("DELETE FROM images").fetchall()
        con.execute("INSERT INTO images BY NAME SELECT * FROM _images_v3").fetchall()
        con.unregister("_images_v3")
    pairs = pa.table({"old": list(mapping), "new": list(mapping.values())})
    con.register("_paths_v3", pairs)
    for table in ("scores", "errors"):
        con.execute(
            f"UPDATE {table} SET source_path = m.new FROM _paths_v3 AS m "
            f"WHERE {table}.source_path = m.old AND m.old <> m.new"
        ).fetchall()
    con.unregister("_paths_v3")
    # (errors.source_path is already hashed here, so the raw one comes from the mapping's other side)
    raw_of = {new: old for old, new in mapping.items()}
    for error_id, path, message in con.execute(
        "SELECT error_id, source_path, message FROM errors WHERE message IS NOT NULL"
    ).fetchall():
        new_message = quoted(message, raw_of.get(path))
        if new_message != message:
            con.execute("UPDATE errors SET message = ? WHERE error_id = ?", [new_message, error_id]).fetchall()
    for run_id, archives in con.execute("SELECT run_id, archives FROM runs WHERE archives IS NOT NULL").fetchall():
        try:
            listed = json.loads(archives)
        except ValueError:
            listed = [archives]
        hashed = json.dumps([a if is_path_hash(a) else hash_path(str(a), key) for a in listed])
        if hashed != archives:
            con.execute("UPDATE runs SET archives = ? WHERE run_id = ?", [hashed, run_id]).fetchall()


def compact_database(path: str | os.PathLike, *, timeout_s: float = 60.0) -> None:
    """Rewrite ``path`` into a fresh file, so bytes of rewritten rows do not linger in free blocks.

    Holds the file (DuckDB's write lock) while copying; the fresh file replaces it atomically.
    """
    from epi_spineage.db.locking import connect_with_retry

    p = Path(path)
    tmp = p.with_name(f".{p.name}.compact-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    con = connect_with_retry(p, timeout_s=timeout_s)
    try:
        con.execute("CHECKPOINT").fetchall()
        comments = con.execute(
            "SELECT table_name, comment FROM duckdb_tables() "
            "WHERE database_name = current_database() AND comment IS NOT NULL"
        ).fetchall()
        src = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute("ATTACH ? AS epi_compact", [str(tmp)]).fetchall()
        con.execute(f"COPY FROM DATABASE {quote_ident(src)} TO epi_compact").fetchall()
        for table, comment in comments:
            con.execute(f'COMMENT ON TABLE epi_compact.main."{table}" IS ' + _literal(comment)).fetchall()
        con.execute("DETACH epi_compact").fetchall()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"
