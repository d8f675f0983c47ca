"""Migration 3 on the 0.1.0 fixture: raw paths become keyed hashes in place, the key is recorded, nothing
is rescored, and no raw id is left anywhere in the file's bytes (issue 12 items 1 and 2)."""

from __future__ import annotations

import duckdb
import pytest

from epi_spineage.db import store
from epi_spineage.db.paths import hash_path, is_path_hash
from epi_spineage.db.schema import apply_schema, run_sql_tests, upgrade_database
from epi_spineage.errors import UserError
from epi_spineage.privacy import key_fingerprint
from tests.db.conftest import V1_COUNTS, V1_KEY


def _raw_paths(path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT source_path FROM images UNION ALL SELECT source_path FROM scores "
                "UNION ALL SELECT source_path FROM errors"
            ).fetchall()
        ]
    finally:
        con.close()


def test_fixture_holds_raw_ids_before_migration(v1_db):
    assert b"HOSP03000009" in v1_db.read_bytes()


def test_upgrade_hashes_every_path_and_leaves_no_raw_id_in_the_file(v1_db):
    old = sorted(_raw_paths(v1_db))
    assert any("HOSP03" in p for p in old)
    before, after = upgrade_database(v1_db, key=V1_KEY)
    assert (before, after) == (1, 3) or before == 1
    new = _raw_paths(v1_db)
    assert all(is_path_hash(p) for p in new) and len(new) == len(old)
    assert sorted(new) == sorted(hash_path(p, V1_KEY) for p in old)
    assert b"HOSP03" not in v1_db.read_bytes()
    wal = v1_db.with_name(v1_db.name + ".wal")
    assert not wal.exists() or b"HOSP03" not in wal.read_bytes()
    con = duckdb.connect(str(v1_db))
    try:
        assert store.database_keys(con) == [key_fingerprint(V1_KEY)]
        assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in V1_COUNTS} == V1_COUNTS
        # a rerun hashes the same references with the same key: every image is still known
        model_id = con.execute("SELECT model_id FROM models").fetchall()[0][0]
        known = store.known_for_model(con, model_id)
        assert set(known.done_paths(False)) == {hash_path(p, V1_KEY) for p in old if "broken" not in p}
        assert run_sql_tests(con)["one_key_per_database.sql"] == 0
        # the error row's message and the run's archives are hashed too
        assert "::" not in " ".join(str(r) for r in con.execute("SELECT * FROM errors, runs").fetchall())
    finally:
        con.close()


def test_migration_without_a_key_refuses_in_one_line(v1_db):
    con = duckdb.connect(str(v1_db))
    try:
        with pytest.raises(UserError, match="needs the pseudonymisation key") as info:
            apply_schema(con)
        assert "\n" not in str(info.value)
        assert all("HOSP03" in p for p in _paths_open(con) if "broken" not in p)  # rolled back, nothing half-done
    finally:
        con.close()


def _paths_open(con):
    return [r[0] for r in con.execute("SELECT source_path FROM images").fetchall()]


def test_migration_with_another_key_is_refused(v1_db):
    con = duckdb.connect(str(v1_db))
    try:
        with pytest.raises(UserError, match="written with key fingerprint"):
            apply_schema(con, key=b"another-key-0123456789-abcdefghij")
    finally:
        con.close()


def test_one_key_per_database_refuses_a_second_key(tmp_path):
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    try:
        apply_schema(con)
        store.check_database_key(con, "aaaaaaaaaaaa")
        store.check_database_key(con, "aaaaaaaaaaaa")
        with pytest.raises(UserError, match="one key per database"):
            store.check_database_key(con, "bbbbbbbbbbbb")
        assert run_sql_tests(con)["one_key_per_database.sql"] == 0
        # a database that already mixes keys (written before this check) fails the SQL data test
        con.execute("INSERT INTO db_key (key_fingerprint) VALUES ('bbbbbbbbbbbb')").fetchall()
        assert run_sql_tests(con)["one_key_per_database.sql"] > 0
    finally:
        con.close()
