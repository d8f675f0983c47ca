"""The keyed loader, the spool and the locks, without a model."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb
import pytest

from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.locking import (
    DatabaseBusy,
    ScorerAlreadyRunning,
    ScorerLock,
    connect_with_retry,
    lock_holder,
    lock_holder_pid,
)
from epi_spineage.db.results import to_table
from epi_spineage.score.spool import Spool, ingest_folder


def _rows(start, n, *, status="scored", hash_of=lambda i: f"h{i}"):
    return [
        {
            "run_id": "r1",
            "source_path": f"/x/{i}.dcm",
            "status": status,
            "content_hash": hash_of(i),
            "model_id": "m",
            "weights_hash": "w",
            "preprocess_config_hash": "c",
            "package_version": "v",
            "spine_age_years": 60.0 + i,
            "spine_age_sd_years": 2.0,
            "error_type": "unreadable" if status == "error" else None,
            "recorded_at": dt.datetime(2025, 1, 1),
        }
        for i in range(start, start + n)
    ]


def _counts(con):
    return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("images", "scores", "errors"))


def test_load_results_is_idempotent_and_resolves_duplicates():
    con = duckdb.connect()
    dbschema.apply_schema(con)
    rows = _rows(0, 5) + _rows(5, 2, status="error")
    # /x/7 and /x/8 carry the pixels of /x/0 (one earlier in the DB, one in the same batch)
    rows += _rows(7, 2, hash_of=lambda i: "h0")
    first = db.load_results(con, to_table(rows))
    assert (first.scored, first.duplicates, first.errors) == (5, 2, 2)
    assert _counts(con) == (7, 5, 4)  # images: 5 scored + 2 duplicates; errors: 2 unreadable + 2 duplicates
    again = db.load_results(con, to_table(rows))
    assert again.scored == 0 and _counts(con) == (7, 5, 4)
    dup = con.execute("SELECT qc_status, qc_reason FROM images WHERE source_path = '/x/8.dcm'").fetchall()[0]
    assert dup == ("duplicate", "same pixels as /x/0.dcm")
    # A later batch with the same pixels under a new path is a duplicate of the stored one.
    later = db.load_results(con, to_table(_rows(9, 1, hash_of=lambda i: "h3")))
    assert later.duplicates == 1 and later.scored == 0


def test_known_for_model_lists_done_paths_and_sops():
    con = duckdb.connect()
    dbschema.apply_schema(con)
    rows = _rows(0, 3)
    for r in rows:
        r["sop_instance_uid"] = "1.2." + r["source_path"][3]
        r["file_size_bytes"] = 100
    rows += [dict(_rows(3, 1, status="not_spine")[0], qc_reason="ViewPosition AP is not lateral")]
    db.load_results(con, to_table(rows))
    known = db.known_for_model(con, "m")
    assert set(known.paths) == {"/x/0.dcm", "/x/1.dcm", "/x/2.dcm"} and known.paths["/x/0.dcm"] == (100, None)
    assert set(known.done_paths(False)) == {"/x/0.dcm", "/x/1.dcm", "/x/2.dcm", "/x/3.dcm"}
    assert "/x/3.dcm" not in known.done_paths(True)
    assert known.sops["1.2.1"] == ("h1", "/x/1.dcm")
    assert db.known_for_model(con, "other-model").paths == {}


def test_spool_then_ingest_twice_adds_nothing_twice(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.write_batch(to_table(_rows(0, 4)), "r1", 1)
    spool.write_batch(to_table(_rows(4, 3) + _rows(7, 1, status="error")), "r1", 2)
    spool.write_json(
        "run",
        "r1",
        {
            "run_id": "r1",
            "started_at": "2025-01-01 00:00:00",
            "status": "finished",
            "finished_at": "2025-01-01 00:01:00",
            "n_scored": 7,
        },
    )
    kept = tmp_path / "kept"
    kept.mkdir()
    for p in (tmp_path / "spool").glob("*.parquet"):
        (kept / p.name).write_bytes(p.read_bytes())
    dbfile = tmp_path / "x.duckdb"
    summary = ingest_folder(dbfile, tmp_path / "spool")
    assert summary.counts.scored == 7 and summary.counts.errors == 1 and summary.runs == 1
    assert not spool.pending()  # a marked spool is emptied
    again = ingest_folder(dbfile, kept)  # an unmarked folder (e.g. Ray shards) is kept
    assert again.counts.scored == 0 and sorted(p.name for p in kept.iterdir()) != []
    con = duckdb.connect(str(dbfile))
    assert _counts(con) == (7, 7, 1)
    assert con.execute("SELECT status, n_scored FROM runs").fetchall() == [("finished", 7)]
    # A late 'running' row never overwrites a finished run.
    db.upsert_run(con, {"run_id": "r1", "started_at": "2025-01-01 00:00:00", "status": "running"})
    assert con.execute("SELECT status FROM runs").fetchall()[0][0] == "finished"


def test_lock_error_names_the_holder(tmp_path):
    dbfile = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(30)"),
            str(dbfile),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseBusy) as info:
            connect_with_retry(dbfile, timeout_s=0.3)
        assert f"PID {holder.pid}" in str(info.value)
        try:
            duckdb.connect(str(dbfile))
        except duckdb.IOException as exc:
            assert lock_holder_pid(str(exc)) == holder.pid
            assert lock_holder(str(exc)).startswith(f"PID {holder.pid} (")
    finally:
        holder.kill()
        holder.wait()
    connect_with_retry(dbfile, timeout_s=5).close()  # free again once the holder is gone


def test_second_scorer_is_refused(tmp_path):
    dbfile = tmp_path / "x.duckdb"
    first = ScorerLock(dbfile).acquire()
    try:
        with pytest.raises(ScorerAlreadyRunning, match=r"PID \d+"):
            ScorerLock(dbfile).acquire()
    finally:
        first.release()
    ScorerLock(dbfile).acquire().release()
    assert lock_holder("no pid here") == "another process"
