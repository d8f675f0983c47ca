"""Read-only opens: a scored database attached to an in-memory DuckDB with the package's views over it.

A report never writes to (or holds the write lock of) the scoring database; a database written by a newer
package, or one that needs migrating, is refused with one line.
"""

from __future__ import annotations

from pathlib import Path

from epi_spineage.errors import UserError
from epi_spineage.schema import DB_TABLES


def open_readonly(path: str | Path, *, timeout_s: float = 60.0):
    """An in-memory DuckDB with the file attached read-only and the package's views built over it,
    so that a report never writes to (or locks) the scoring database.

    While a writer (the scorer committing a batch) holds the file, the attach retries with back-off for
    up to ``timeout_s`` seconds, as the scorer's own commits do.
    """
    import time

    import duckdb

    from epi_spineage.db.locking import is_lock_error
    from epi_spineage.db.migrations import check_readable
    from epi_spineage.db.schema import VIEWS, read_sql

    p = Path(path)
    if not p.is_file():
        raise UserError(f"database not found: {p}")
    con = duckdb.connect(":memory:")
    deadline, delay = time.monotonic() + timeout_s, 0.05
    while True:
        try:
            # the path is bound, never formatted into the SQL: a file name may hold quotes (o'neill.duckdb)
            con.execute("ATTACH ? AS src (READ_ONLY)", [str(p)]).fetchall()
            break
        except duckdb.Error as exc:
            if is_lock_error(exc) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            con.close()
            raise UserError(f"{p}: not a DuckDB database or busy ({str(exc).splitlines()[0]})") from None
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src' AND table_type = 'BASE TABLE'"
        ).fetchall()
    }
    if "cohort" not in tables and "scores" not in tables:
        con.close()
        raise UserError(f"{p}: no cohort or scores table; load one with `epi-spineage cohort` / `epi-spineage score`")
    try:
        check_readable(con, "src", where=str(p))
    except UserError:
        con.close()
        raise
    for t in sorted(set(DB_TABLES) | {"db_key", "schema_version"}):
        if t in tables:
            con.execute(f'CREATE VIEW main."{t}" AS SELECT * FROM src.main."{t}"')
    missing = [t for t in ("images", "scores", "models", "cohort") if t not in tables]
    if missing:
        # build the missing tables empty (schema.sql) so the views resolve
        con.execute(read_sql("schema.sql"))
    for view in VIEWS:
        con.execute(read_sql(view))
    return con
