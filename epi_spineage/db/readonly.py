"""Read-only opens: a scored database attached to an in-memory DuckDB with the package's views over it.

A report never writes to (or holds the write lock of) the scoring database; a database written by a newer
package, or one that needs migrating, is refused with one line.
"""

from __future__ import annotations

from pathlib import Path

from epi_spineage.errors import UserError
from epi_spineage.schema import DB_TABLES


def open_readonly(path: str | Path):
    """An in-memory DuckDB with the file attached read-only and the package's views built over it,
    so that a report never writes to (or locks) the scoring database."""
    import duckdb

    from epi_spineage.db.migrations import check_readable
    from epi_spineage.db.schema import VIEWS, read_sql

    p = Path(path)
    if not p.is_file():
        raise UserError(f"database not found: {p}")
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{str(p)}' AS src (READ_ONLY)".replace("\\", "/"))
    except duckdb.Error as exc:
        con.close()
        raise UserError(f"{p}: not a DuckDB database or busy ({str(exc).splitlines()[0]})") from None
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'src' AND table_type = 'BASE TABLE'"
    ).fetchall()}
    if "cohort" not in tables and "scores" not in tables:
        con.close()
        raise UserError(f"{p}: no cohort or scores table; load one with `epi-spineage cohort` / `epi-spineage score`")
    try:
        check_readable(con, "src", where=str(p))
    except UserError:
        con.close()
        raise
    for t in DB_TABLES:
        if t in tables:
            con.execute(f'CREATE VIEW main."{t}" AS SELECT * FROM src.main."{t}"')
    missing = [t for t in ("images", "scores", "models", "cohort") if t not in tables]
    if missing:
        # build the missing tables empty (schema.sql) so the views resolve
        con.execute(read_sql("schema.sql"))
    for view in VIEWS:
        con.execute(read_sql(view))
    return con
