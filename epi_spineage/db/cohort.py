"""Loading a cohort table into DuckDB: pseudonymised ids, refused identifier columns, upsert by participant.

Participant ids are replaced by the same keyed hash the scorer stores for DICOM PatientIDs, so
``cohort`` rows and scored images join on ``cohort.participant_id = images.participant_key``
without a raw identifier ever reaching the database.
"""

from __future__ import annotations

import logging
import re

from epi_spineage.errors import UserError

log = logging.getLogger("epi_spineage.cohort")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def pseudonymise_ids(df, key: bytes):
    """Replace ``participant_id`` by its keyed hash; ids that already are hashes stay as they are."""
    from epi_spineage.privacy import is_pseudonym, pseudonymise

    ids = df["participant_id"]
    present = ids.dropna().astype(str)
    if len(present) and present.map(is_pseudonym).all():
        log.info("participant_id already holds keyed hashes; loading as is")
        return df.copy()
    out = df.copy()
    out["participant_id"] = ids.map(lambda v: pseudonymise(v, key))
    return out


#: Column names that hold direct identifiers: refused, because the database keeps only keyed hashes.
_IDENTIFIER_COLUMN = re.compile(
    r"^names?$|(^|_)((patient|full|first|last|given|family|middle)_?names?|surname|mrn|medical_record|hospital_?(id|number|no)|"
    r"nhs|ssn|social_security|national_id|resident_?(id|number)|birth_?date|date_of_birth|dob|address|street|"
    r"post_?code|zip_?code|phone|telephone|mobile|email|accession)($|_)",
    re.IGNORECASE,
)


def identifier_columns(columns) -> list[str]:
    """Columns whose names say they hold direct identifiers (names, record numbers, birth dates...)."""
    return [c for c in columns if c != "participant_id" and _IDENTIFIER_COLUMN.search(str(c))]


def load_cohort(
    df,
    db_path,
    *,
    key: bytes,
    table: str = "cohort",
    replace: bool = False,
    lock_timeout_s: float = 60.0,
    synthetic: bool = False,
) -> int:
    """Pseudonymise and upsert ``df`` (already validated) into ``table``; returns rows loaded.

    ``synthetic``: the rows come from the simulator; the table is marked so that reports say so.
    """
    from epi_spineage.db import schema as dbschema
    from epi_spineage.db.locking import connect_or_refuse, connect_with_retry
    from epi_spineage.privacy import key_fingerprint

    if not _IDENT.match(table):
        raise UserError(f"--table must be a plain SQL name, not {table!r}")
    leaking = identifier_columns(df.columns)
    if leaking:
        raise UserError(
            f"column(s) {', '.join(map(repr, leaking))} look like direct identifiers, which the "
            "database never stores: drop them from the file (or map them away with --mapping) first"
        )
    data = pseudonymise_ids(df, key)
    data["key_fingerprint"] = key_fingerprint(key)
    con = connect_or_refuse(db_path, timeout_s=lock_timeout_s)
    from epi_spineage.db.migrate_v3 import compact_database
    from epi_spineage.db.migrations import schema_version
    from epi_spineage.db.store import check_database_key

    try:
        before = schema_version(con)
        dbschema.apply_schema(con, key=key)
        if before is not None and before < 3:  # migration 3 rewrote stored paths: drop their old bytes
            con.close()
            compact_database(db_path, timeout_s=lock_timeout_s)
            con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
        con.execute("BEGIN TRANSACTION").fetchall()
        check_database_key(con, key_fingerprint(key))
        if table != "cohort":
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM cohort LIMIT 0').fetchall()
        con.register("_cohort_in", data)
        existing = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        }
        in_types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _cohort_in)").fetchall())
        for column in data.columns:
            if column not in existing:
                if not _IDENT.match(column):
                    raise UserError(f"column name {column!r} is not a plain SQL name; rename it with --mapping")
                con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {in_types[column]}').fetchall()
        if replace:
            con.execute(f'DELETE FROM "{table}"').fetchall()
        con.execute(f'INSERT OR REPLACE INTO "{table}" BY NAME SELECT * FROM _cohort_in').fetchall()
        if synthetic:
            from epi_spineage.provenance import SYNTHETIC_TABLE_COMMENT

            comment = SYNTHETIC_TABLE_COMMENT.replace("'", "''")
            con.execute(f"COMMENT ON TABLE \"{table}\" IS '{comment}'").fetchall()
        con.execute("COMMIT").fetchall()
        con.unregister("_cohort_in")
        return len(data)
    finally:
        con.close()
