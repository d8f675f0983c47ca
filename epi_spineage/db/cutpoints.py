"""Frozen cut points in the database: the PAD tertile cut that ``v_accelerated`` compares with.

``v_accelerated.accelerated`` is NULL until a cut point named ``pad_tertile_years`` (uncorrected PAD)
is stored, and ``accelerated_corrected`` until ``pad_corrected_tertile_years`` is. Either the report
saves the cut it learned (``report --db F --save-cutpoints``) or the user sets one
(``python -m epi_spineage.cohort cutpoints set``); see docs/guides/score.md#cutpoints.

Writing takes the database the way the scorer does (``connect_with_retry``: back-off while another
process holds the file, then one line naming the holder), applies pending migrations, and upserts
the row in one transaction.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from epi_spineage.errors import UserError

#: Names the views read: uncorrected and bias-corrected PAD.
VIEW_NAMES = ("pad_tertile_years", "pad_corrected_tertile_years")
#: The accepted rules: ">=" (default; PAD >= cut is accelerated) or ">" (Stata xtile's top bin).
CUT_RULES = (">=", ">")
COLUMNS = ["name", "value_years", "cut_rule", "source_cohort", "method", "created_at", "used_by_views"]


def _check(name: str, value_years: float, cut_rule: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise UserError("a cut point needs a name (the views read pad_tertile_years, pad_corrected_tertile_years)")
    try:
        value = float(value_years)
    except (TypeError, ValueError):
        raise UserError(f"cut point value must be a number of years, got {value_years!r}") from None
    if not math.isfinite(value):
        raise UserError(f"cut point value must be finite, got {value_years!r}")
    if cut_rule not in CUT_RULES:
        raise UserError(f"cut rule must be one of {', '.join(repr(r) for r in CUT_RULES)}, got {cut_rule!r}")


def save_cutpoint(
    db_path: str | os.PathLike,
    *,
    name: str,
    value_years: float,
    cut_rule: str = ">=",
    source_cohort: str | None = None,
    method: str = "user",
    lock_timeout_s: float = 60.0,
) -> None:
    """Store (insert or replace) the cut point ``name`` in the database at ``db_path``.

    ``cut_rule`` is written both to ``cut_rule`` and to the 0.1.0 column ``comparison`` (which stays
    NOT NULL), so that older readers agree. The database is created or migrated as every writer does.
    """
    from epi_spineage.db.locking import connect_or_refuse
    from epi_spineage.db.schema import apply_schema

    _check(name, value_years, cut_rule)
    path = Path(db_path).expanduser()
    if not path.parent.is_dir():
        raise UserError(f"folder not found for the database: {path.parent}")
    con = connect_or_refuse(path, timeout_s=lock_timeout_s, threads=1)
    try:
        apply_schema(con)
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            con.execute(
                "INSERT OR REPLACE INTO cutpoints "
                "(name, value, source_cohort, method, comparison, cut_rule, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                [name.strip(), float(value_years), source_cohort, method, cut_rule, cut_rule],
            ).fetchall()
            con.execute("COMMIT").fetchall()
        except BaseException:
            con.execute("ROLLBACK").fetchall()
            raise
    finally:
        con.close()


def read_cutpoints(db_path: str | os.PathLike):
    """Every stored cut point as a DataFrame (columns ``COLUMNS``), read through a read-only attach.

    ``cut_rule`` is the rule the views apply (``cut_rule``, or ``comparison`` for 0.1.0 rows);
    ``used_by_views`` says whether ``v_accelerated`` reads that name.
    """
    import pandas as pd

    from epi_spineage.db.readonly import open_readonly

    con = open_readonly(Path(db_path))
    try:
        rows = con.execute("""
            SELECT name, value AS value_years, coalesce(cut_rule, comparison) AS cut_rule, source_cohort, method,
                   created_at
            FROM cutpoints ORDER BY name""").fetchall()
    finally:
        con.close()
    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    df["used_by_views"] = df["name"].isin(VIEW_NAMES)
    return df
