"""The database schema: tables and views from the top-level ``sql/`` folder, and the zero-row SQL tests.

The SQL lives in files (one view per file) that run in the plain ``duckdb`` shell; this module only
reads and applies them. Every writer applies the schema (and its migrations, ``epi_spineage.db.migrations``)
when it opens the database.
"""

from __future__ import annotations

import importlib.resources

#: Views in dependency order (each file ``sql/<name>.sql`` holds ``CREATE OR REPLACE VIEW <name>``).
VIEWS = (
    "v_latest_score",
    "v_baseline_image",
    "v_cohort_scores",
    "v_accelerated",
    "v_drift",
    "v_agreement_by_manufacturer",
)


def sql_dir():
    """The packaged ``sql`` folder (a Traversable; the repo's root ``sql/`` in a checkout)."""
    return importlib.resources.files("epi_spineage") / "sql"


def read_sql(name: str) -> str:
    """Text of ``sql/<name>`` (``.sql`` added when missing)."""
    if not name.endswith(".sql"):
        name += ".sql"
    return (sql_dir() / name).read_text(encoding="utf-8")


def sql_test_names() -> list[str]:
    """Names of the data tests in ``sql/tests`` (queries that must return zero rows)."""
    folder = sql_dir() / "tests"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


def apply_schema(con, *, key: bytes | None = None) -> None:
    """Bring the tables to the latest schema version (creating or migrating) and (re)create every view.

    Safe to run on every writable connection; ``key`` is for migrations that hash stored values.
    """
    from epi_spineage.db.migrations import migrate

    migrate(con, key=key)
    for view in VIEWS:
        con.execute(read_sql(view)).fetchall()


def run_sql_tests(con) -> dict[str, int]:
    """Run every ``sql/tests`` query; returns {test name: number of failing rows}."""
    out = {}
    for name in sql_test_names():
        text = (sql_dir() / "tests" / name).read_text(encoding="utf-8")
        out[name] = len(con.execute(text).fetchall())
    return out


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: a table or column name from a user's file may hold quotes or
    spaces, and is never spliced into SQL unquoted."""
    return '"' + str(name).replace('"', '""') + '"'


def require_table(con, path, table: str) -> str:
    """``table`` quoted, if the DuckDB file ``path`` (open as ``con``) has it; else a ``UserError`` that
    lists the tables it has."""
    from epi_spineage.errors import UserError

    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if table not in tables:
        raise UserError(f"{path}: no table {table!r} (has: {', '.join(sorted(tables)) or 'none'})")
    return quote_ident(table)


def upgrade_database(path, *, key: bytes | None = None, lock_timeout_s: float = 60.0) -> tuple[int | None, int]:
    """Open ``path`` for writing, apply pending migrations and the views; returns (version before, after)."""
    from epi_spineage.db.locking import connect_or_refuse
    from epi_spineage.db.migrations import LATEST, schema_version

    con = connect_or_refuse(path, timeout_s=lock_timeout_s)
    try:
        before = schema_version(con)
        apply_schema(con, key=key)
    finally:
        con.close()
    if before is not None and before < 3:
        from epi_spineage.db.migrate_v3 import compact_database

        compact_database(path, timeout_s=lock_timeout_s)  # migration 3 rewrote paths: drop the old bytes
    return before, LATEST
