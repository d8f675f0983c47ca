"""Schema versions: a ``schema_version`` table and forward migrations, applied by every writer on open.

Version 1 is the schema of release 0.1.0, which had no ``schema_version`` table: a database holding the
package's tables but no version row is taken to be version 1. ``sql/schema.sql`` always describes the
*latest* schema, so a new database is created from it in one step and stamped ``LATEST``; an older one is
brought forward by the migrations below, in order, each in its own transaction. A test checks that both
paths end in the same tables and columns.

Adding a migration: append a ``Migration`` with the next version number, either a SQL file
``sql/migrations/NNN_name.sql`` or a Python function ``(con, context) -> None`` (for work that needs the
pseudonymisation key or row-by-row logic), update ``sql/schema.sql`` to the new state, and add a test that
migrates the 0.1.0 fixture database.

Readers never migrate: a read-only open of a database written by a newer package is refused with one line,
and one that needs migrating tells the user which command upgrades it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from epi_spineage import __version__
from epi_spineage.errors import UserError

#: Tables that release 0.1.0 created; any of them without a version row means schema version 1.
_V1_TABLES = ("images", "scores", "runs", "errors", "models", "cohort", "cutpoints")

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    package_version TEXT
)
"""


@dataclass(frozen=True)
class MigrationContext:
    """What a migration may need besides the connection (the key, for migrations that hash values)."""

    key: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Migration:
    """One forward step: ``version`` is the schema version it produces."""

    version: int
    name: str
    sql_file: str | None = None
    apply: Callable[[Any, MigrationContext], None] | None = None

    def run(self, con: Any, context: MigrationContext) -> None:
        if self.sql_file is not None:
            from epi_spineage.db.schema import read_sql

            for statement in _statements(read_sql(f"migrations/{self.sql_file}")):
                con.execute(statement).fetchall()
        if self.apply is not None:
            self.apply(con, context)


def _statements(text: str) -> list[str]:
    """Split a migration file on semicolons at line ends (migration files hold no procedural SQL)."""
    parts, current = [], []
    for line in text.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            parts.append("\n".join(current))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if _strip_comments(p)]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def _v3_hash_paths(con: Any, context: MigrationContext) -> None:
    from epi_spineage.db.migrate_v3 import hash_stored_paths

    hash_stored_paths(con, context.key)


#: Every migration, in order. Version 1 (release 0.1.0) is the baseline.
MIGRATIONS: tuple[Migration, ...] = (
    # settings (v_drift's minimum cell count) and cutpoints.cut_rule (docs/guides/score.md#cutpoints)
    Migration(2, "settings table; cutpoints.cut_rule", sql_file="002_settings_and_cut_rule.sql"),
    # Version 3: paths stored as keyed hashes, the database's key fingerprint, cheap file fingerprints
    # for the skip test (docs/privacy.md#stored-paths). Needs the key when any path is stored.
    Migration(3, "hashed paths, one key per database, file fingerprints", apply=_v3_hash_paths),
    # Version 4: scores.decoder, the image decoder behind each score (the GPU path, issue 13).
    Migration(4, "scores.decoder", sql_file="004_score_decoder.sql"),
    # Version 5: bias_corrections, per-manufacturer bias corrections stored with the model (issue 15).
    Migration(5, "bias_corrections (per-manufacturer bias correction)", sql_file="005_bias_corrections.sql"),
)

#: The schema version this package writes.
LATEST: int = max([1, *(m.version for m in MIGRATIONS)])


def _has_table(con: Any, name: str, catalog: str | None) -> bool:
    query = "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'"
    params: list[Any] = [name]
    if catalog is not None:
        query += " AND table_catalog = ?"
        params.append(catalog)
    return bool(con.execute(query, params).fetchall()[0][0])


def schema_version(con: Any, catalog: str | None = None) -> int | None:
    """The database's schema version; ``None`` for an empty database (no package tables at all)."""
    if _has_table(con, "schema_version", catalog):
        table = "schema_version" if catalog is None else f'"{catalog}".main.schema_version'
        value = con.execute(f"SELECT max(version) FROM {table}").fetchall()[0][0]
        if value is not None:
            return int(value)
    if any(_has_table(con, t, catalog) for t in _V1_TABLES):
        return 1
    return None


def _stamp(con: Any, version: int, name: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO schema_version (version, name, package_version) VALUES (?, ?, ?)",
        [version, name, __version__],
    ).fetchall()


def _refuse_newer(version: int, where: str = "the database") -> None:
    if version > LATEST:
        raise UserError(
            f"{where} has schema version {version}, newer than this epi_spineage {__version__} "
            f"understands (up to {LATEST}): upgrade the package (pip install -U epi-spineage)"
        )


def migrate(con: Any, *, key: bytes | None = None) -> list[int]:
    """Bring the open (writable) database to ``LATEST``; returns the versions applied.

    A new database is created from ``sql/schema.sql``. Each migration commits on its own, so a crash
    between two leaves a database at a known version that the next writer continues from.
    """
    from epi_spineage.db.schema import read_sql

    version = schema_version(con)
    if version is not None:
        _refuse_newer(version)
    con.execute(_VERSION_TABLE).fetchall()
    if version is None:
        con.execute(read_sql("schema.sql")).fetchall()
        _stamp(con, LATEST, "created")
        return [LATEST]
    if not con.execute("SELECT count(*) FROM schema_version").fetchall()[0][0]:
        _stamp(con, 1, "release 0.1.0 (no version table)")
    applied = []
    context = MigrationContext(key=key)
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            m.run(con, context)
            _stamp(con, m.version, m.name)
            con.execute("COMMIT").fetchall()
        except BaseException:
            con.execute("ROLLBACK").fetchall()
            raise
        applied.append(m.version)
    return applied


def check_readable(con: Any, catalog: str, *, where: str) -> int | None:
    """For a read-only attach: refuse a newer schema, and an older one that needs a writer to migrate it."""
    version = schema_version(con, catalog)
    if version is None:
        return None
    _refuse_newer(version, where)
    if version < LATEST:
        raise UserError(
            f"{where} has schema version {version}; this epi_spineage reads version {LATEST}. "
            "Upgrade it in place once (nothing is rescored): "
            "python -m epi_spineage.cohort upgrade --db FILE"
        )
    return version
