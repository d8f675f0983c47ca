"""End to end on phantom DICOMs: bad inputs, reruns, QC, SOPInstanceUID skip, cohort join, privacy."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from epi_spineage.db import schema as dbschema
from epi_spineage.errors import UserError
from epi_spineage.score.pipeline import score_archives

from .conftest import TEST_KEY, member_names, phantom_dicoms, run_cli, stored, write_tar, write_zip

# every test here scores phantoms with a torch model
pytestmark = pytest.mark.needs_imaging

N_GOOD = 8


@pytest.fixture(scope="module")
def phantoms():
    return phantom_dicoms(N_GOOD, seed=1)


@pytest.fixture
def messy_zip(tmp_path, phantoms):
    """Good phantoms plus a corrupt, a truncated, a non-image, a duplicate and an AP view."""
    members = {p.member: p.data for p in phantoms}
    members["bad/corrupt.dcm"] = b"\0" * 128 + b"DICM" + bytes(range(256)) * 4
    extra = phantom_dicoms(1, seed=3, start=60)[0].data  # its SOPInstanceUID is nowhere else
    members["bad/truncated.dcm"] = extra[: len(extra) // 2]
    members["bad/IM0042"] = b"not an image at all\n"  # no suffix, as DICOM files often are
    members["manifest.csv"] = b"image,participant_id\n"  # a sidecar: skipped, never an error
    members["copy/img0000.dcm"] = phantoms[0].data
    ap = phantom_dicoms(1, seed=2, view_position="AP", start=50)[0]
    members["views/ap.dcm"] = ap.data
    out = write_zip(tmp_path / "night1.zip", members)
    messy_zip_members[out] = list(members)
    return out


messy_zip_members: dict = {}


def _count_decodes(monkeypatch):
    import epi_spineage.imaging as imaging

    calls = []
    real = imaging.load_image

    def counting(*a, **k):
        calls.append(k.get("name"))
        return real(*a, **k)

    monkeypatch.setattr(imaging, "load_image", counting)
    return calls


def test_bad_inputs_recorded_rest_scored_and_rerun_is_cheap(tmp_path, messy_zip, tiny_model, key_env, monkeypatch):
    dbfile = tmp_path / "s.duckdb"
    s1 = score_archives([messy_zip], tiny_model, dbfile, key=TEST_KEY, batch_size=4, workers=0, device="cpu")
    assert (s1.n_scored, s1.n_duplicates, s1.n_not_spine, s1.n_errors) == (N_GOOD, 1, 1, 3)
    con = duckdb.connect(str(dbfile))
    names = member_names(messy_zip, messy_zip_members[messy_zip])
    errors = {names[p]: t for p, t in con.execute("SELECT source_path, error_type FROM errors").fetchall()}
    assert errors == {
        "corrupt.dcm": errors["corrupt.dcm"],
        "truncated.dcm": "truncated",
        "IM0042": "not_an_image",
        "img0000.dcm": "duplicate",
    }
    assert errors["corrupt.dcm"] in ("not_an_image", "unreadable")
    ap_path = stored(f"{messy_zip.resolve()}::views/ap.dcm")
    qc = con.execute("SELECT qc_status, qc_reason FROM images WHERE source_path = ?", [ap_path]).fetchall()
    assert qc == [("not_spine", "ViewPosition AP is not lateral")]
    prov = con.execute(
        "SELECT DISTINCT weights_hash, preprocess_config_hash, package_version, run_id, "
        "photometric_interpretation, bits_stored, manufacturer FROM scores"
    ).fetchall()
    assert len(prov) == 2 and {r[6] for r in prov} == {"ACME", "GLOBEX"} and all(r[5] == 12 for r in prov)
    assert con.execute("SELECT status, n_scored, n_errors FROM runs").fetchall() == [("finished", N_GOOD, 3)]
    assert all(v == 0 for v in dbschema.run_sql_tests(con).values())
    con.close()

    # Rerun: nothing new is decoded except the files that failed (they may have been fixed).
    calls = _count_decodes(monkeypatch)
    s2 = score_archives([messy_zip], tiny_model, dbfile, key=TEST_KEY, batch_size=4, workers=0, device="cpu")
    assert s2.n_scored == 0 and s2.n_skipped_known == N_GOOD + 2 and s2.n_errors == 3
    # (IM0042 is text: named as such without a decode)
    assert sorted(names[c] for c in calls) == ["corrupt.dcm", "truncated.dcm"]

    # The QC flag overrides: the AP view is scored on request.
    s3 = score_archives(
        [messy_zip], tiny_model, dbfile, key=TEST_KEY, batch_size=4, workers=0, device="cpu", include_non_spine=True
    )
    assert s3.n_scored == 1
    con = duckdb.connect(str(dbfile))
    assert con.execute("SELECT count(*) FROM scores").fetchall()[0][0] == N_GOOD + 1
    row = con.execute("SELECT qc_status, qc_reason FROM images WHERE source_path = ?", [ap_path]).fetchall()[0]
    assert row[0] == "ok" and "scored despite QC" in row[1]


def test_same_sop_instance_uid_is_skipped_before_decoding(tmp_path, phantoms, tiny_model, key_env, monkeypatch):
    dbfile = tmp_path / "s.duckdb"
    first = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantoms[:3]})
    score_archives([first], tiny_model, dbfile, key=TEST_KEY, batch_size=4, workers=0, device="cpu")
    # The same instance re-exported (other pixels, e.g. re-compressed) under another name, plus a new one.
    import numpy as np

    from epi_spineage.synth.dicom import dicom_bytes

    px = np.full((64, 48), 900, np.uint16)
    px[10:50, 10:30] = 2000
    reexport = dicom_bytes(px, patient_name="X^Y", patient_id="HOSP0199", sop_instance_uid=phantoms[2].sop_instance_uid)
    second = write_tar(tmp_path / "b.tar.gz", {"re/img2.dcm": reexport, "new.dcm": phantoms[3].data})
    calls = _count_decodes(monkeypatch)
    s = score_archives([second], tiny_model, dbfile, key=TEST_KEY, batch_size=4, workers=0, device="cpu")
    assert (s.n_scored, s.n_duplicates) == (1, 1)
    assert calls == [stored(f"{second.resolve()}::new.dcm")]


def test_worker_processes_and_limit(tmp_path, phantoms, tiny_model, key_env):
    dbfile = tmp_path / "s.duckdb"
    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantoms})
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, batch_size=2, workers=2, device="cpu", limit=5)
    assert s.n_scored == 5
    dry = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, dry_run=True)
    assert dry.n_would_score == N_GOOD - 5 and dry.n_skipped_known == 5
    s = score_archives([archive], tiny_model, dbfile, key=TEST_KEY, batch_size=2, workers=2, device="cpu")
    assert s.n_scored == N_GOOD - 5 and s.n_skipped_known == 5
    con = duckdb.connect(str(dbfile), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT content_hash) FROM scores").fetchall() == [(N_GOOD, N_GOOD)]


def test_refuses_without_a_key(tmp_path, messy_zip, tiny_model, monkeypatch):
    # The library never reads the environment: a key there does not stand in for the argument.
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", TEST_KEY)
    with pytest.raises(UserError, match="no pseudonymisation key"):
        score_archives([messy_zip], tiny_model, tmp_path / "s.duckdb", workers=0)
    assert not (tmp_path / "s.duckdb").exists()


def test_privacy_and_cohort_join_through_the_clis(tmp_path, phantoms, tiny_model, key_env):
    """Names and raw IDs never reach the database, logs or outputs; cohort rows join the scores."""
    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantoms})
    dbfile = tmp_path / "s.duckdb"
    out = run_cli(
        [
            "-m",
            "epi_spineage.score",
            str(archive),
            "--model",
            str(tiny_model),
            "--db",
            str(dbfile),
            "--workers",
            "1",
            "--batch-size",
            "4",
            "-vv",
        ],
        key_env,
    )
    assert out.returncode == 0, out.stderr
    assert f"scored {N_GOOD} image(s)" in out.stdout
    cohort_csv = tmp_path / "clinic.csv"
    pd.DataFrame(
        {
            "participant_id": [p.patient_id for p in phantoms],
            "cohort": "external",
            "age_years": [60.0 + i for i in range(N_GOOD)],
            "sex": ["F", "M"] * (N_GOOD // 2),
        }
    ).to_csv(cohort_csv, index=False)
    loaded = run_cli(["-m", "epi_spineage.cohort", "load", str(cohort_csv), "--db", str(dbfile)], key_env)
    assert loaded.returncode == 0, loaded.stderr
    validate = run_cli(["-m", "epi_spineage.cohort", "validate", str(cohort_csv)], key_env)
    assert validate.returncode == 0, validate.stdout + validate.stderr

    con = duckdb.connect(str(dbfile))
    joined = con.execute(
        "SELECT count(*), count(pad_years), count(pad_corrected_years) FROM v_cohort_scores"
    ).fetchall()
    assert joined == [(N_GOOD, N_GOOD, N_GOOD)]
    secrets = (
        [p.patient_name for p in phantoms]
        + [p.patient_name.split("^")[0] for p in phantoms]
        + [p.patient_id for p in phantoms]
    )
    # Every text value of every table, and the file bytes themselves.
    texts = []
    for (table,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
    ).fetchall():
        df = con.execute(f"SELECT * FROM {table}").df()
        texts += [str(v) for v in df.astype(str).to_numpy().ravel()]
    con.close()
    blob = "\n".join(texts)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.duckdb*") if p.is_file())
    outputs = out.stdout + out.stderr + loaded.stdout + loaded.stderr + validate.stdout + validate.stderr
    for secret in secrets:
        assert secret not in blob
        assert secret.encode() not in raw
        assert secret not in outputs
    assert "p_" in blob  # the keyed hashes are there instead


def test_per_image_reader_warnings_stay_out_of_the_job_output(tmp_path, tiny_model, key_env):
    # MONOCHROME1 inversion warns once per image; a nightly run over thousands must not flood stderr.
    import warnings

    from epi_spineage.synth.dicom import dicom_bytes
    from epi_spineage.synth.phantom import render_phantom

    members = {}
    for i in range(3):
        pixels = np.minimum(
            render_phantom(50.0 + 10 * i, style="radiograph", seed=i, scale=0.08, bits_stored=12), 4095
        ).astype(np.uint16)
        members[f"m1_{i}.dcm"] = dicom_bytes(
            pixels, photometric="MONOCHROME1", patient_name="DOE^JANE", patient_id=f"H{i:06d}", bits_stored=12
        )
    archive = write_zip(tmp_path / "m1.zip", members)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = score_archives(
            [archive], tiny_model, tmp_path / "s.duckdb", key=TEST_KEY, batch_size=4, workers=0, device="cpu"
        )
    assert summary.n_scored == 3
    assert not [w for w in caught if "MONOCHROME1" in str(w.message)]
