"""Another process holds the database: the scorer retries, names the holder, spools, and the spool loads."""

from __future__ import annotations

import logging
import subprocess
import sys

import duckdb
import pytest

from epi_spineage.db import schema as dbschema
from epi_spineage.score.pipeline import score_archives

from .conftest import TEST_KEY, phantom_dicoms, run_cli, write_zip

# every test here scores phantoms with a torch model
pytestmark = pytest.mark.needs_imaging

N = 6


def test_busy_database_spools_then_ingest_loads(tmp_path, tiny_model, key_env, caplog):
    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(N, seed=11)})
    dbfile = tmp_path / "s.duckdb"
    con = duckdb.connect(str(dbfile))
    dbschema.apply_schema(con)
    con.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('SELECT 1').fetchall(); "
                "print('ready', flush=True); time.sleep(120)"
            ),
            str(dbfile),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with caplog.at_level(logging.WARNING):
            summary = score_archives(
                [archive], tiny_model, dbfile, key=TEST_KEY, batch_size=2, workers=0, device="cpu", lock_timeout_s=0.5
            )
        assert summary.n_scored == N and summary.n_spooled == N
        assert f"PID {holder.pid}" in caplog.text and "spool" in caplog.text
        spool = tmp_path / "s.duckdb.spool"
        assert any(spool.glob("batch-*.parquet")) and any(spool.glob("run-*.json")) and any(spool.glob("model-*.json"))
        # While the holder stays, ingest refuses after its wait, with the reason, and loads nothing.
        busy = run_cli(["-m", "epi_spineage.ingest", str(spool), "--db", str(dbfile), "--lock-timeout", "0.5"], key_env)
        assert busy.returncode == 2 and f"PID {holder.pid}" in busy.stderr
    finally:
        holder.kill()
        holder.wait()
    out = run_cli(["-m", "epi_spineage.ingest", str(spool), "--db", str(dbfile)], key_env)
    assert out.returncode == 0, out.stderr
    assert f"{N} new scores" in out.stdout
    assert not any(spool.glob("*.parquet"))
    con = duckdb.connect(str(dbfile), read_only=True)
    assert con.execute("SELECT count(*) FROM scores").fetchall()[0][0] == N
    assert con.execute("SELECT status, n_scored, n_spooled FROM runs").fetchall() == [("finished", N, N)]
    assert con.execute("SELECT count(*) FROM models").fetchall()[0][0] == 1
    con.close()
    # A rerun finds everything done.
    again = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu", lock_timeout_s=5)
    assert again.n_scored == 0 and again.n_skipped_known == N
