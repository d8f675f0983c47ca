"""Schema versions: a 0.1.0 database is migrated in place (nothing lost, nothing rescored); newer ones are refused."""

from __future__ import annotations

import duckdb
import pytest

from epi_spineage.db import migrations
from epi_spineage.db.schema import apply_schema
from epi_spineage.errors import UserError
from tests.db.conftest import V1_COUNTS, V1_KEY


def _counts(con) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in V1_COUNTS}


def _columns(con) -> set[tuple[str, str, str]]:
    return set(
        con.execute("""
        SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'main' AND table_name IN (
            SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')
    """).fetchall()
    )


def test_release_0_1_0_database_is_version_1_and_migrates_without_loss(v1_db):
    con = duckdb.connect(str(v1_db))
    try:
        assert migrations.schema_version(con) == 1
        before = _counts(con)
        scored = con.execute("SELECT content_hash, model_id, spine_age_years FROM scores ORDER BY 1").fetchall()
        apply_schema(con, key=V1_KEY)
        assert migrations.schema_version(con) == migrations.LATEST
        assert _counts(con) == before == V1_COUNTS
        assert con.execute("SELECT content_hash, model_id, spine_age_years FROM scores ORDER BY 1").fetchall() == scored
        versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()]
        assert versions[0] == 1 and versions[-1] == migrations.LATEST
        apply_schema(con, key=V1_KEY)  # idempotent: a second writer's open changes nothing
        assert _counts(con) == V1_COUNTS
    finally:
        con.close()


def test_migrated_images_are_still_known_so_nothing_is_rescored(v1_db):
    from epi_spineage.db import store

    con = duckdb.connect(str(v1_db))
    try:
        apply_schema(con, key=V1_KEY)
        model_id = con.execute("SELECT model_id FROM models").fetchall()[0][0]
        known = store.known_for_model(con, model_id)
        assert len(known.hashes) == V1_COUNTS["scores"]
        assert len(known.done_paths(include_non_spine=False)) == V1_COUNTS["images"]
    finally:
        con.close()


def test_a_new_database_and_a_migrated_one_have_the_same_tables(v1_db, tmp_path):
    old = duckdb.connect(str(v1_db))
    new = duckdb.connect(str(tmp_path / "new.duckdb"))
    try:
        apply_schema(old, key=V1_KEY)
        apply_schema(new)
        assert migrations.schema_version(new) == migrations.LATEST
        assert _columns(old) == _columns(new)
    finally:
        old.close()
        new.close()


def test_a_newer_schema_is_refused_by_writers_and_readers(v1_db):
    from epi_spineage.db.readonly import open_readonly

    con = duckdb.connect(str(v1_db))
    apply_schema(con, key=V1_KEY)
    con.execute(
        "INSERT INTO schema_version (version, name) VALUES (?, 'from the future')", [migrations.LATEST + 1]
    ).fetchall()
    with pytest.raises(UserError, match="newer than this epi_spineage"):
        apply_schema(con)
    con.close()
    with pytest.raises(UserError, match="newer than this epi_spineage"):
        open_readonly(v1_db)


def test_a_reader_names_the_upgrade_command_when_migrations_are_pending(v1_db, monkeypatch):
    from epi_spineage.db.readonly import open_readonly

    monkeypatch.setattr(migrations, "LATEST", migrations.LATEST + 1)
    with pytest.raises(UserError, match="cohort upgrade --db"):
        open_readonly(v1_db)


def test_report_reads_the_migrated_fixture(v1_db):
    from epi_spineage.db.readonly import open_readonly

    con = duckdb.connect(str(v1_db))
    apply_schema(con, key=V1_KEY)
    con.close()
    ro = open_readonly(v1_db)
    try:
        assert ro.execute("SELECT count(*) FROM v_latest_score").fetchall()[0][0] == V1_COUNTS["scores"]
    finally:
        ro.close()


def test_cohort_upgrade_command(v1_db, capsys, tmp_path):
    from epi_spineage.cli.cohort import main

    key_file = tmp_path / "key"
    key_file.write_bytes(V1_KEY)
    assert main(["upgrade", "--db", str(v1_db)]) == 2  # migration 3 hashes stored paths: no key, no upgrade
    assert "needs the pseudonymisation key" in capsys.readouterr().err
    assert main(["upgrade", "--db", str(v1_db), "--key-file", str(key_file)]) == 0
    assert "schema version" in capsys.readouterr().out
    con = duckdb.connect(str(v1_db), read_only=True)
    assert migrations.schema_version(con) == migrations.LATEST
    con.close()
    assert main(["upgrade", "--db", str(v1_db.with_name("missing.duckdb"))]) == 2


def test_migration_2_adds_settings_and_cut_rule_and_keeps_old_cut_points(v1_db):
    # A cut point written by 0.1.0 (rule in `comparison`) keeps its rule after the migration.
    con = duckdb.connect(str(v1_db))
    try:
        con.execute(
            "INSERT INTO cutpoints (name, value, source_cohort, method, comparison, created_at) "
            "VALUES ('pad_tertile_years', 1.5, 'derivation', 'quantile type 7', '>', now())"
        ).fetchall()
        assert migrations.schema_version(con) == 1
        apply_schema(con, key=V1_KEY)
        assert migrations.schema_version(con) >= 2
        assert con.execute("SELECT name, value FROM settings").fetchall() == [("drift_min_count", "30")]
        row = con.execute("SELECT value, comparison, cut_rule FROM cutpoints").fetchall()
        assert row == [(1.5, ">", None)]
        rules = con.execute("SELECT DISTINCT pad_cut_years FROM v_accelerated").fetchall()
        assert rules == [(1.5,)]
        # put the cut exactly on one participant's PAD, so that '>' and '>=' differ by that one row
        con.execute("UPDATE cutpoints SET value = (SELECT min(round(pad_years, 9)) FROM v_accelerated)").fetchall()
        # the view reads the old column where cut_rule is NULL, and cut_rule where set
        flags = con.execute(
            "SELECT count(*) FILTER (accelerated), "
            "count(*) FILTER (round(pad_years, 9) > pad_cut_years), "
            "count(*) FILTER (round(pad_years, 9) >= pad_cut_years) FROM v_accelerated"
        ).fetchall()[0]
        assert flags[0] == flags[1] == flags[2] - 1 and flags[2] > 1
        con.execute("UPDATE cutpoints SET cut_rule = '>='").fetchall()
        assert con.execute("SELECT count(*) FILTER (accelerated) FROM v_accelerated").fetchall()[0][0] == flags[2]
        assert con.execute("SELECT DISTINCT drift_min_count FROM v_drift").fetchall() in ([(30,)], [])
    finally:
        con.close()
