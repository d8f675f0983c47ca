"""``python -m epi_spineage.cohort``: validate a clinical cohort table and load it into DuckDB.

Participant ids are replaced by the same keyed hash the scorer stores for DICOM PatientIDs, so
``cohort`` rows and scored images join on ``cohort.participant_id = images.participant_key``
without a raw identifier ever reaching the database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

log = logging.getLogger("epi_spineage.cohort")

_PSEUDONYM = re.compile(r"^p_[0-9a-f]{24}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EPILOG = """\
examples:
  export EPI_SPINEAGE_PSEUDONYM_KEY_FILE=/etc/epi-spineage/key   # the scorer's key
  python -m epi_spineage.cohort validate clinic.csv --mapping mapping.toml
  python -m epi_spineage.cohort load clinic.csv --db spine.duckdb --mapping mapping.toml
  python -m epi_spineage.cohort load clinic.parquet --db spine.duckdb --replace

`load` validates first (one line per problem, nothing loaded on failure), pseudonymises
participant_id with the key (EPI_SPINEAGE_PSEUDONYM_KEY, ..._KEY_FILE or --key-file), and
upserts by participant (--replace empties the table first). Columns outside the cohort schema are
added to the table as they are.
"""


def build_parser():
    p = make_parser("epi-spineage cohort", "Validate a cohort table, or load it into DuckDB with pseudonymised ids.",
                    EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="{load,validate}")
    for name, text in (("load", "validate, pseudonymise and load into DuckDB"), ("validate", "check a table only")):
        s = sub.add_parser(name, help=text, description=text, epilog=EPILOG,
                           formatter_class=p.formatter_class)
        s.error = p.error  # one-line usage errors, exit 2
        s.add_argument("file", metavar="FILE", help="CSV, Parquet or DuckDB file")
        s.add_argument("--mapping", metavar="TOML", help="column-mapping config (renames and recodes)")
        s.add_argument("--source-table", default=None, help="table to read when FILE is a DuckDB file")
        if name == "load":
            s.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file (created if missing)")
            s.add_argument("--table", default="cohort", help="destination table (default cohort)")
            s.add_argument("--replace", action="store_true", help="empty the table before loading")
            s.add_argument("--key-file", default=None, help="file holding the pseudonymisation key")
            s.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                           help="how long to wait while another process holds the database (default 60)")
    return p


def _read(args):
    from epi_spineage.tables import read_table, validate_cohort

    if not Path(args.file).exists():
        raise UserError(f"file not found: {args.file}")
    df = read_table(args.file, mapping=args.mapping, table=args.source_table)
    problems = validate_cohort(df, raise_on_error=False)
    return df, problems


def pseudonymise_ids(df, key: bytes):
    """Replace ``participant_id`` by its keyed hash; ids that already are hashes stay as they are."""
    from epi_spineage.privacy import pseudonymise

    ids = df["participant_id"]
    present = ids.dropna().astype(str)
    if len(present) and present.map(lambda v: bool(_PSEUDONYM.match(v))).all():
        log.info("participant_id already holds keyed hashes; loading as is")
        return df.copy()
    out = df.copy()
    out["participant_id"] = ids.map(lambda v: pseudonymise(v, key))
    return out


#: Column names that hold direct identifiers: refused, because the database keeps only keyed hashes.
_IDENTIFIER_COLUMN = re.compile(
    r"^names?$|(^|_)((patient|full|first|last|given|family|middle)_?names?|surname|mrn|medical_record|hospital_?(id|number|no)|"
    r"nhs|ssn|social_security|national_id|resident_?(id|number)|birth_?date|date_of_birth|dob|address|street|"
    r"post_?code|zip_?code|phone|telephone|mobile|email|accession)($|_)", re.IGNORECASE)


def identifier_columns(columns) -> list[str]:
    """Columns whose names say they hold direct identifiers (names, record numbers, birth dates...)."""
    return [c for c in columns if c != "participant_id" and _IDENTIFIER_COLUMN.search(str(c))]


def load_cohort(df, db_path, *, key: bytes, table: str = "cohort", replace: bool = False,
                lock_timeout_s: float = 60.0, synthetic: bool = False) -> int:
    """Pseudonymise and upsert ``df`` (already validated) into ``table``; returns rows loaded.

    ``synthetic``: the rows come from the simulator; the table is marked so that reports say so.
    """
    from epi_spineage.privacy import key_fingerprint
    from epi_spineage.score import db
    from epi_spineage.score.locking import DatabaseBusy, connect_with_retry

    if not _IDENT.match(table):
        raise UserError(f"--table must be a plain SQL name, not {table!r}")
    leaking = identifier_columns(df.columns)
    if leaking:
        raise UserError(f"column(s) {', '.join(map(repr, leaking))} look like direct identifiers, which the "
                        "database never stores: drop them from the file (or map them away with --mapping) first")
    data = pseudonymise_ids(df, key)
    data["key_fingerprint"] = key_fingerprint(key)
    try:
        con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
    except DatabaseBusy as exc:
        raise UserError(str(exc)) from None
    try:
        db.apply_schema(con)
        con.execute("BEGIN TRANSACTION").fetchall()
        if table != "cohort":
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM cohort LIMIT 0").fetchall()
        con.register("_cohort_in", data)
        existing = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
        in_types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _cohort_in)").fetchall())
        for column in data.columns:
            if column not in existing:
                if not _IDENT.match(column):
                    raise UserError(f"column name {column!r} is not a plain SQL name; rename it with --mapping")
                con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {in_types[column]}').fetchall()
        if replace:
            con.execute(f"DELETE FROM {table}").fetchall()
        con.execute(f"INSERT OR REPLACE INTO {table} BY NAME SELECT * FROM _cohort_in").fetchall()
        if synthetic:
            from epi_spineage.provenance import SYNTHETIC_TABLE_COMMENT

            comment = SYNTHETIC_TABLE_COMMENT.replace("'", "''")
            con.execute(f"COMMENT ON TABLE {table} IS '{comment}'").fetchall()
        con.execute("COMMIT").fetchall()
        con.unregister("_cohort_in")
        return len(data)
    finally:
        con.close()


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    df, problems = _read(args)
    if args.command == "validate":
        if problems:
            for line in problems:
                print(line)
            print(f"{args.file}: {len(problems)} problem(s)")
            return 1
        print(f"{args.file}: {len(df)} rows, valid")
        return EXIT_OK
    if problems:
        from epi_spineage.errors import ValidationError

        raise ValidationError(problems, what=str(args.file))
    from epi_spineage.privacy import load_key

    key = load_key(key_file=args.key_file)
    from epi_spineage.provenance import simulator_truth

    synthetic = args.source_table is None and simulator_truth(args.file) is not None
    n = load_cohort(df, Path(args.db).expanduser(), key=key, table=args.table, replace=args.replace,
                    lock_timeout_s=args.lock_timeout, synthetic=synthetic)
    print(f"loaded {n} participant(s) into {args.db}:{args.table} (ids pseudonymised"
          + ("; synthetic: simulator output" if synthetic else "") + ")")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage cohort")


if __name__ == "__main__":
    raise SystemExit(main())
