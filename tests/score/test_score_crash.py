"""SIGKILL the scorer at arbitrary moments, rerun, and find every image scored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from .conftest import phantom_dicoms, write_zip

N = 24


def _start(archive, model, dbfile, env):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "epi_spineage.score",
            str(archive),
            "--model",
            str(model),
            "--db",
            str(dbfile),
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--commit-interval",
            "0",
            "-v",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_after_commits(proc, n_commits: int, timeout: float = 90.0) -> None:
    """SIGKILL once the scorer logged ``n_commits`` commits (so some batches are in, some not)."""
    seen = 0
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if "committed" in line:
            seen += 1
            if seen >= n_commits:
                break
        if time.monotonic() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_then_rerun_scores_every_image_exactly_once(tmp_path, tiny_model, key_env):
    phantoms = phantom_dicoms(N, seed=7)
    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantoms})
    dbfile = tmp_path / "s.duckdb"

    first = _start(archive, tiny_model, dbfile, key_env)
    _kill_after_commits(first, 2)
    assert first.returncode == -signal.SIGKILL
    con = duckdb.connect(str(dbfile), read_only=True)
    partial = con.execute("SELECT count(*) FROM scores").fetchall()[0][0]
    # No partial rows: every image row of a scored image has its score and vice versa.
    orphans = con.execute(
        "SELECT count(*) FROM images i LEFT JOIN scores s USING (content_hash) "
        "WHERE s.content_hash IS NULL AND i.qc_status = 'ok'"
    ).fetchall()[0][0]
    con.close()
    assert 0 < partial < N and orphans == 0

    second = _start(archive, tiny_model, dbfile, key_env)  # killed again, at another point
    _kill_after_commits(second, 1)

    final = subprocess.run(
        [
            sys.executable,
            "-m",
            "epi_spineage.score",
            str(archive),
            "--model",
            str(tiny_model),
            "--db",
            str(dbfile),
            "--batch-size",
            "8",
            "--workers",
            "1",
        ],
        env=key_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    con = duckdb.connect(str(dbfile), read_only=True)
    n, distinct, paths = con.execute(
        "SELECT count(*), count(DISTINCT content_hash), count(DISTINCT source_path) FROM scores"
    ).fetchall()[0]
    assert n == distinct == paths == N
    assert con.execute("SELECT count(*) FROM images").fetchall()[0][0] == N
    assert con.execute("SELECT count(*) FROM errors").fetchall()[0][0] == 0
    statuses = sorted(r[0] for r in con.execute("SELECT status FROM runs").fetchall())
    # The killed runs are marked by the next run (the second may have finished before its kill).
    assert "running" not in statuses and statuses.count("interrupted") >= 1 and statuses[0] == "finished"
