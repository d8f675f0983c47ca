"""Issue 12, case by case on phantom archives: counts asserted (0 lost, 0 duplicated), no identifier in a
byte search of the database, spool and logs, hostile names, huge images, orphan workers, odd members.

Every test reproduces a failure of release 0.1.0's scorer; each runs in seconds (workers=0 where the
case does not need worker processes).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pytest

from epi_spineage.db import schema as dbschema
from epi_spineage.db.paths import is_path_hash
from epi_spineage.errors import UserError
from epi_spineage.score.pipeline import locate, score_archives

from .conftest import TEST_KEY, descendants, live_processes, phantom_dicoms, run_cli, stored, write_zip

N = 6


@pytest.fixture(scope="module")
def phantoms():
    return phantom_dicoms(N, seed=4)


def _by_id_zip(path: Path, phantoms, extra: dict | None = None) -> Path:
    """Members named after the PatientID, as PACS exports are: exports/<PatientID>/imgNNNN.dcm."""
    members = {f"exports/{p.patient_id}/{p.member}": p.data for p in phantoms}
    members.update(extra or {})
    return write_zip(path, members)


def _identifiers(phantoms) -> list[bytes]:
    out = []
    for p in phantoms:
        out += [p.patient_id.encode(), p.patient_name.split("^")[0].encode()]
    return out


def _files_bytes(*paths: Path) -> bytes:
    chunks = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()] if root.exists() else []
        chunks += [f.read_bytes() for f in files]
    return b"\n".join(chunks)


class _held:
    """Another process holds the database open (as a report or a second writer would) until exit."""

    def __init__(self, dbfile: Path, seconds: float = 600):
        code = (
            "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read(); c.close()"
        )
        self.args = [sys.executable, "-c", code, str(dbfile)]

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _count(dbfile, sql, params=()):
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


# ---- 1. paths are keyed hashes; --locate; --store-paths ------------------------------------------


def test_no_identifier_reaches_database_spool_or_debug_log(tmp_path, phantoms, tiny_model, key_env, caplog):
    archive = _by_id_zip(tmp_path / "night.zip", phantoms)
    dbfile = tmp_path / "s.duckdb"
    with caplog.at_level(logging.DEBUG):
        s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, batch_size=2, workers=0, device="cpu")
        # a second scorer-like writer holds the file: the next batches go to the spool (its bytes searched too)
        spool = tmp_path / "spool"
        extra = _by_id_zip(tmp_path / "night2.zip", phantom_dicoms(2, seed=5))
        with _held(dbfile):
            s2 = score_archives(
                [extra],
                tiny_model,
                dbfile,
                key=TEST_KEY,
                batch_size=2,
                workers=0,
                device="cpu",
                spool_dir=spool,
                lock_timeout_s=0.2,
            )
    assert s.n_scored == N and s.n_errors == 0 and s2.n_spooled > 0
    haystack = _files_bytes(dbfile, spool) + caplog.text.encode()
    leaked = [i for i in _identifiers(phantoms) + _identifiers(phantom_dicoms(2, seed=5)) if i in haystack]
    assert leaked == []
    rows = _count(dbfile, "SELECT source_path FROM images UNION ALL SELECT source_path FROM scores")
    assert len(rows) == 2 * N and all(is_path_hash(r[0]) for r in rows)
    assert len({r[0] for r in rows}) == N  # 0 duplicated


def test_locate_finds_the_member_behind_a_hash(tmp_path, phantoms, tiny_model, key_env):
    archive = _by_id_zip(tmp_path / "night.zip", phantoms)
    member = f"{archive.resolve()}::exports/{phantoms[2].patient_id}/{phantoms[2].member}"
    h = stored(member)
    assert locate(h, [archive], key=TEST_KEY.encode()) == [member]
    assert locate(h, [archive], key=b"another-key-0123456789abc") == []
    out = run_cli(["-m", "epi_spineage.score", "--locate", h, str(archive)], key_env)
    assert out.returncode == 0 and out.stdout.strip() == member
    bad = run_cli(["-m", "epi_spineage.score", "--locate", "HOSP", str(archive)], key_env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_store_paths_is_an_opt_in_that_the_report_flags(tmp_path, phantoms, tiny_model, key_env):
    from epi_spineage.report.scoring_qc import scoring_qc

    archive = _by_id_zip(tmp_path / "night.zip", phantoms[:2])
    hashed, raw = tmp_path / "h.duckdb", tmp_path / "r.duckdb"
    score_archives([archive], tiny_model, hashed, key=TEST_KEY, workers=0, device="cpu")
    score_archives([archive], tiny_model, raw, key=TEST_KEY, workers=0, device="cpu", store_paths=True)
    assert scoring_qc(str(hashed)).raw_paths_stored is False
    assert scoring_qc(str(raw)).raw_paths_stored is True
    assert phantoms[0].patient_id.encode() in raw.read_bytes()


def test_rerun_after_migrating_a_raw_path_database_rescores_nothing(tmp_path, phantoms, tiny_model, key_env):
    """A database whose paths were stored raw (as release 0.1.0 did) is hashed in place by migration 3;
    the next nightly run recognises every image by its hashed path."""
    archive = _by_id_zip(tmp_path / "night.zip", phantoms)
    dbfile = tmp_path / "s.duckdb"
    score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu", store_paths=True)
    con = duckdb.connect(str(dbfile))  # make it look like a 0.1.0 database: no fingerprints, no version row
    con.execute("UPDATE images SET file_fingerprint = NULL").fetchall()
    con.execute("DELETE FROM schema_version").fetchall()
    con.execute("DROP TABLE schema_version").fetchall()
    con.execute("DELETE FROM db_key").fetchall()
    con.close()
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert s.n_scored == 0 and s.n_skipped_known == N
    assert not any(i in dbfile.read_bytes() for i in _identifiers(phantoms))
    assert _count(dbfile, "SELECT count(*) FROM scores") == [(N,)]


# ---- 2. one key per database --------------------------------------------------------------------


def test_a_second_key_is_refused_by_the_scorer_and_cohort_load(tmp_path, phantoms, tiny_model, key_env, monkeypatch):
    import pandas as pd

    from epi_spineage.db.cohort import load_cohort

    archive = _by_id_zip(tmp_path / "night.zip", phantoms[:2])
    dbfile = tmp_path / "s.duckdb"
    score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    other = "a-completely-different-key-0123"
    with pytest.raises(UserError, match="one key per database"):
        score_archives([archive], tiny_model, dbfile, key=other.encode(), workers=0, device="cpu")
    df = pd.DataFrame({"participant_id": ["A1"], "cohort": ["x"], "age_years": [60.0], "sex": ["F"]})
    with pytest.raises(UserError, match="one key per database"):
        load_cohort(df, dbfile, key=other.encode())
    load_cohort(df, dbfile, key=TEST_KEY.encode())
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        assert all(v == 0 for v in dbschema.run_sql_tests(con).values())
        assert con.execute("SELECT count(DISTINCT key_fingerprint) FROM images").fetchall() == [(1,)]
    finally:
        con.close()


# ---- 3. hostile file and table names -------------------------------------------------------------

HOSTILE = "x.duckdb' AS src (READ_ONLY); COPY (SELECT 42 AS pwned) TO 'pwned.csv'; --"


@pytest.mark.parametrize("name", [HOSTILE, "o'neill.duckdb", 'dq"uote.duckdb', 'a";DROP TABLE x;--.duckdb'])
def test_hostile_database_names_at_every_entry_point(tmp_path, phantoms, tiny_model, key_env, name, monkeypatch):
    import pandas as pd

    from epi_spineage.db.cohort import load_cohort
    from epi_spineage.db.readonly import open_readonly
    from epi_spineage.score.spool import ingest_folder

    monkeypatch.chdir(tmp_path)
    archive = _by_id_zip(tmp_path / "night.zip", phantoms[:1])
    dbfile = tmp_path / name
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")  # score --db
    assert s.n_scored == 1
    df = pd.DataFrame({"participant_id": ["A1"], "cohort": ["x"], "age_years": [60.0], "sex": ["F"]})
    assert load_cohort(df, dbfile, key=TEST_KEY.encode()) == 1  # cohort load --db
    with pytest.raises(UserError):
        load_cohort(df, dbfile, key=TEST_KEY.encode(), table='t"; DROP TABLE scores; --')  # cohort load --table
    (tmp_path / "empty_spool").mkdir()
    ingest_folder(dbfile, tmp_path / "empty_spool")  # ingest --db
    con = open_readonly(dbfile)  # report --db
    try:
        assert con.execute("SELECT count(*) FROM scores").fetchall() == [(1,)]
    finally:
        con.close()
    assert not list(tmp_path.rglob("pwned.csv"))


# ---- 4. huge images: refused before decoding, the run goes on ------------------------------------


def _deflated_dicom(rows: int, cols: int, pixel_bytes: int) -> bytes:
    """Deflated explicit VR little endian DICOM declaring rows x cols, holding ``pixel_bytes`` of zeros."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "HUGE0001", "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = rows, cols, 1, 16, 12, 11
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = bytes(pixel_bytes)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_image_declaring_too_many_pixels_is_an_error_row_not_a_failed_run(tmp_path, phantoms, tiny_model, key_env):
    huge = _deflated_dicom(22000, 24000, 2 * 1000)  # declares 528 megapixels, holds almost nothing
    bomb = _deflated_dicom(100, 100, 8 * 1024 * 1024)  # declares 0.01 MP, inflates to 8 MiB
    assert len(huge) < 50_000 and len(bomb) < 100_000
    archive = write_zip(tmp_path / "n.zip", {"huge.dcm": huge, "bomb.dcm": bomb, "good.dcm": phantoms[0].data})
    dbfile = tmp_path / "s.duckdb"
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=1, device="cpu", max_megapixels=1.0)
    assert (s.n_scored, s.n_errors) == (1, 2)
    errors = dict(_count(dbfile, "SELECT source_path, message FROM errors WHERE error_type = 'too_large'"))
    assert "528.0 megapixels" in errors[stored(f"{archive.resolve()}::huge.dcm")]
    assert "inflates beyond" in errors[stored(f"{archive.resolve()}::bomb.dcm")]
    assert _count(dbfile, "SELECT status FROM runs") == [("finished",)]


def test_memory_error_in_one_member_is_its_error_row(tmp_path):
    from epi_spineage.score.members import MemberContext, process_entry

    class Boom:
        name, size = "x.dcm", 10

        def read_bytes(self):
            raise MemoryError("cannot allocate 6.5 GB")

        def fingerprint(self):
            return None

    ctx = MemberContext(run_id="r", key=TEST_KEY.encode(), preprocess_config=None)
    row, array = process_entry(ctx, "x.dcm", 10, Boom())
    assert row["status"] == "error" and "MemoryError" in row["message"] and array is None


# ---- 5. workers die with a SIGKILLed scorer -----------------------------------------------------


def _alive(pids) -> set[int]:
    now = live_processes()
    return {p for p in pids if p in now}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux")
def test_sigkill_leaves_no_worker_forkserver_or_tracker_behind(tmp_path, tiny_model, key_env):
    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(16, seed=6)})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "epi_spineage.score",
            str(archive),
            "--model",
            str(tiny_model),
            "--db",
            str(tmp_path / "s.duckdb"),
            "--batch-size",
            "1",
            "--workers",
            "2",
            "--device",
            "cpu",
        ],
        env=key_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, kids = time.monotonic() + 90, set()
    while time.monotonic() < deadline and len(kids) < 3:  # forkserver (or tracker) + 2 workers
        time.sleep(0.2)
        kids = descendants(proc.pid)
    assert len(kids) >= 3, "the scorer never started its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(kids) == set()


# ---- 6. odd member names -------------------------------------------------------------------------


def test_a_double_colon_member_is_scored_and_traversal_still_refused(tmp_path, phantoms, tiny_model, key_env):
    archive = write_zip(tmp_path / "n.zip", {"a::b.dcm": phantoms[0].data, "c.dcm": phantoms[1].data})
    s = score_archives([archive], tiny_model, tmp_path / "s.duckdb", key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_scored, s.n_errors) == (2, 0)
    evil = write_zip(tmp_path / "e.zip", {"../x.dcm": phantoms[0].data, "C:/y.dcm": phantoms[1].data})
    s = score_archives([evil], tiny_model, tmp_path / "s.duckdb", key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_scored, s.n_errors) == (0, 1)
    rows = _count(tmp_path / "s.duckdb", "SELECT source_path, message FROM errors")
    assert rows == [(stored(str(evil.resolve())), "refusing archive with a path-traversal member")]


# ---- 7. a bad file is recorded once, however many runs see it --------------------------------------


def test_errors_do_not_pile_up_across_runs(tmp_path, phantoms, tiny_model, key_env):
    bad = {f"bad{i}.dcm": b"\0" * 128 + b"DICM" + bytes([i]) * 300 for i in range(3)}
    archive = write_zip(tmp_path / "n.zip", {**bad, "good.dcm": phantoms[0].data})
    dbfile = tmp_path / "s.duckdb"
    for _ in range(4):
        s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
        assert s.n_errors == 3
    assert _count(dbfile, "SELECT count(*), count(DISTINCT source_path) FROM errors") == [(3, 3)]
    # a changed file is new content: one more row
    write_zip(archive, {**bad, "bad0.dcm": b"\0" * 128 + b"DICM" + b"\7" * 301, "good.dcm": phantoms[0].data})
    score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert _count(dbfile, "SELECT count(*) FROM errors") == [(4,)]


# ---- 8. a corrected re-export at the same path and size is rescored --------------------------------


def test_a_same_size_re_export_is_rescored_and_an_unchanged_file_is_not(tmp_path, tiny_model, key_env):
    from epi_spineage.synth.dicom import dicom_bytes

    folder = tmp_path / "exports"
    folder.mkdir()
    px = np.full((64, 48), 900, np.uint16)
    first = dicom_bytes(px, patient_id="HOSP0001", sop_instance_uid="1.2.3.4")
    px2 = px.copy()
    px2[20:40, 10:30] = 1500  # corrected pixels, same dimensions: same file size
    second = dicom_bytes(px2, patient_id="HOSP0001", sop_instance_uid="1.2.3.4")  # same instance, corrected
    assert len(first) == len(second)
    target = folder / "img.dcm"
    target.write_bytes(first)
    dbfile = tmp_path / "s.duckdb"
    assert score_archives([folder], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu").n_scored == 1
    assert score_archives([folder], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu").n_skipped_known == 1
    target.write_bytes(second)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    s = score_archives([folder], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_scored, s.n_skipped_known) == (1, 0)
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        assert all(v == 0 for v in dbschema.run_sql_tests(con).values())
    finally:
        con.close()
    # the same in a zip, where the central directory's CRC-32 tells (no mtime needed)
    z = tmp_path / "n.zip"
    write_zip(z, {"img.dcm": first})
    assert score_archives([z], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu").n_skipped_known == 0
    write_zip(z, {"img.dcm": second})
    s = score_archives([z], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_skipped_known, s.n_scored + s.n_duplicates) == (0, 1)


# ---- 9. smaller ones -----------------------------------------------------------------------------


def test_tar_links_and_devices_are_recorded_not_skipped(tmp_path, phantoms, tiny_model, key_env):
    path = tmp_path / "n.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("good.dcm")
        info.size = len(phantoms[0].data)
        tf.addfile(info, io.BytesIO(phantoms[0].data))
        for name, kind in (("sym.dcm", tarfile.SYMTYPE), ("hard.dcm", tarfile.LNKTYPE), ("dev.dcm", tarfile.CHRTYPE)):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, "good.dcm"
            tf.addfile(link)
    dbfile = tmp_path / "s.duckdb"
    s = score_archives([path], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_scored, s.n_errors) == (1, 3)
    messages = sorted(r[0] for r in _count(dbfile, "SELECT message FROM errors"))
    assert [m.split(" is ")[1].split(",")[0] for m in messages] == [
        "a character device",
        "a hard link",
        "a symbolic link",
    ]


def test_not_an_image_says_what_the_file_is_and_zero_filled_members_cost_little(
    tmp_path, phantoms, tiny_model, key_env
):
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("x.txt", "hello")
    members = {
        "a.dcm": b"%PDF-1.4\n%...",
        "b.dcm": zbuf.getvalue(),
        "c.dcm": b"just some notes\n",
        "zeros.dcm": bytes(24 * 1024 * 1024),
        "good.dcm": phantoms[0].data,
    }
    archive = tmp_path / "n.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    dbfile = tmp_path / "s.duckdb"
    t0 = time.process_time()
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    assert (s.n_scored, s.n_errors) == (1, 4)
    assert time.process_time() - t0 < 30
    got = {r[0] for r in _count(dbfile, "SELECT message FROM errors")}
    assert got == {
        "not an image: a PDF document",
        "not an image: a zip archive",
        "not an image: a text file",
        "not an image: a zero-filled file",
    }


def test_a_newline_in_a_name_cannot_forge_a_log_line(tmp_path, phantoms, tiny_model, key_env, caplog):
    archive = write_zip(tmp_path / "n.zip", {"x\nERROR forged line.dcm": b"\0" * 128 + b"DICM" + b"\1" * 300})
    with caplog.at_level(logging.DEBUG):
        score_archives(
            [archive], tiny_model, tmp_path / "s.duckdb", key=TEST_KEY, workers=0, device="cpu", store_paths=True
        )
    assert not any(line.startswith("ERROR forged") for line in caplog.text.splitlines())


def test_report_db_waits_while_a_writer_commits(tmp_path, phantoms, tiny_model, key_env):
    import threading

    from epi_spineage.db.readonly import open_readonly

    archive = _by_id_zip(tmp_path / "n.zip", phantoms[:1])
    dbfile = tmp_path / "s.duckdb"
    score_archives([archive], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu")
    code = "import duckdb,sys,time; c=duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(2); c.close()"
    holder = subprocess.Popen([sys.executable, "-c", code, str(dbfile)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    con = open_readonly(dbfile, timeout_s=30)
    assert time.monotonic() - t0 > 0.5 and con.execute("SELECT count(*) FROM scores").fetchall() == [(1,)]
    con.close()
    holder.wait(timeout=30)
    del threading


def test_v_latest_score_never_mixes_models(tmp_path):
    import datetime as dt

    from epi_spineage.db import store
    from epi_spineage.db.results import to_table

    con = duckdb.connect()
    dbschema.apply_schema(con)
    t0 = dt.datetime(2026, 1, 1)

    def row(path, content, model, age, minutes):
        return {
            "run_id": "r",
            "source_path": path,
            "status": "scored",
            "content_hash": content,
            "model_id": model,
            "spine_age_years": age,
            "spine_age_sd_years": 1.0,
            "weights_hash": "w",
            "preprocess_config_hash": "p",
            "package_version": "v",
            "recorded_at": t0 + dt.timedelta(minutes=minutes),
        }

    # m1 scored three images; m2 (later) only one of them: the old view took m2 for that image and m1
    # for the rest, a mix no analysis should see
    rows = [row(f"h_{i:032d}", f"c{i}", "m1", 60.0 + i, i) for i in range(3)] + [
        row("h_" + "0" * 32, "c0", "m2", 99.0, 10)
    ]
    store.load_results(con, to_table(rows))
    out = con.execute("SELECT content_hash, model_id FROM v_latest_score ORDER BY 1").fetchall()
    assert out == [("c0", "m1"), ("c1", "m1"), ("c2", "m1")]
    failing = {k: v for k, v in dbschema.run_sql_tests(con).items() if v}
    assert set(failing) <= {"scores_within_model_range.sql"}, failing  # no models rows here
    con.close()


def test_config_title_and_csv_cells_are_neutralised_in_the_report_files(tmp_path):
    import pandas as pd

    from epi_spineage.report.render import write_report

    title = "Spine <img src=x onerror=alert(1)> [click](http://evil) **bold**\n---\nformat: pdf"
    config = pd.DataFrame(
        {"key": ["title", "note"], "value": ['=HYPERLINK("http://evil","x")', "@SUM(A1)"], "number": [-1.5, 2.0]}
    )
    write_report(
        tmp_path,
        [],
        title=title,
        banner=None,
        results_json={},
        meta={"generated_utc": "now", "version": "x"},
        tables={"study_config": config},
    )
    qmd = (tmp_path / "report.qmd").read_text()
    header = qmd.split("\n---\n", 1)[0]
    import re

    assert "format: pdf" not in header and not re.search(r"(?<!\\)<img", qmd) and "](http" not in qmd
    title_line = next(line for line in qmd.splitlines() if line.startswith("title:"))
    assert "format" in title_line  # the title's own "---" and lines stayed inside the one title line
    csv = (tmp_path / "tables" / "study_config.csv").read_text()
    assert "'=HYPERLINK" in csv and "'@SUM" in csv and "-1.5" in csv and "'-1.5" not in csv


# ---- a decode worker killed outright (the kernel's OOM killer sends SIGKILL) ---------------------


def _score_cli(archive, model, dbfile, env, *extra):
    args = ["-m", "epi_spineage.score", str(archive), "--model", str(model), "--db", str(dbfile)]
    return run_cli([*args, "--batch-size", "2", "--workers", "2", "--device", "cpu", *extra], env, timeout=300)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of a decode worker")
def test_a_worker_killed_on_one_file_costs_that_file_not_the_run(tmp_path, tiny_model, key_env):
    images = phantom_dicoms(10, seed=7)
    archive = write_zip(tmp_path / "n.zip", {p.member: p.data for p in images})
    dbfile = tmp_path / "s.duckdb"
    # the worker that reaches this member SIGKILLs itself, as the OOM killer would kill it
    env = {**key_env, "EPI_SPINEAGE_FAULT_KILL_WORKER_ON": images[4].member}
    proc = _score_cli(archive, tiny_model, dbfile, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "killed" in proc.stderr and images[4].member not in proc.stderr  # said, without the name
    assert _count(dbfile, "SELECT status, n_scored, n_errors FROM runs") == [("finished", 9, 1)]
    bad = stored(f"{archive.resolve()}::{images[4].member}")
    errors = _count(dbfile, "SELECT source_path, error_type, message FROM errors")
    assert [(p, t) for p, t, _ in errors] == [(bad, "worker_killed")]
    assert "killed" in errors[0][2] and images[4].member not in errors[0][2]
    scored = _count(dbfile, "SELECT source_path, count(*) FROM scores GROUP BY 1")
    assert len(scored) == 9 and all(n == 1 for _, n in scored) and bad not in {p for p, _ in scored}
    # the next night retries the file (an innocent file blamed by mistake is not lost) and scores nothing twice
    assert _score_cli(archive, tiny_model, dbfile, key_env).returncode == 0
    assert _count(dbfile, "SELECT count(*), count(DISTINCT source_path) FROM scores") == [(10, 10)]
