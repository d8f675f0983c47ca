"""CLI surface: help, usage errors, no torch at import, cohort validation and pseudonymisation."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from epi_spineage.cohort import main as cohort_main
from epi_spineage.ingest import main as ingest_main
from epi_spineage.privacy import pseudonymise
from epi_spineage.score import main as score_main
from epi_spineage.score.qc import lateral_spine_problem

from .conftest import TEST_KEY


def test_import_does_not_load_torch():
    code = (
        "import sys, epi_spineage.score, epi_spineage.score.drift, epi_spineage.score.spool, "
        "epi_spineage.ingest, epi_spineage.cohort; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("main", [score_main, ingest_main, cohort_main])
def test_help_has_examples(main, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, key_env):
    argv = [str(tmp_path / "missing.zip"), "--model", str(tmp_path), "--db", str(tmp_path / "x.duckdb")]
    assert score_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "archive not found" in err
    assert ingest_main([str(tmp_path / "nope"), "--db", str(tmp_path / "x.duckdb")]) == 2


def test_qc_rules():
    ok = {
        "format": "dicom",
        "view_position": "LL",
        "body_part_examined": "LSPINE",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1",
    }
    assert lateral_spine_problem(ok) is None
    assert lateral_spine_problem({**ok, "view_position": ""}) is None  # empty tags cannot refuse
    assert "BodyPartExamined CHEST" in lateral_spine_problem({**ok, "body_part_examined": "chest"})
    assert "SOP class" in lateral_spine_problem({**ok, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"})  # CT
    assert lateral_spine_problem({"format": "png", "view_position": "AP"}) is None


def test_cohort_load_pseudonymises_validates_and_upserts(tmp_path, key_env, capsys):
    csv = tmp_path / "c.csv"
    df = pd.DataFrame(
        {
            "participant_id": ["007", "008"],
            "cohort": "derivation",
            "age_years": [61.5, 70.0],
            "sex": ["F", "M"],
            "clinic_site": ["A", "B"],
        }
    )
    df.to_csv(csv, index=False)
    dbfile = tmp_path / "x.duckdb"
    assert cohort_main(["load", str(csv), "--db", str(dbfile)]) == 0
    df.assign(age_years=[62.5, 70.0]).to_csv(csv, index=False)
    assert cohort_main(["load", str(csv), "--db", str(dbfile)]) == 0  # upsert, not duplicate
    con = duckdb.connect(str(dbfile))
    rows = con.execute("SELECT participant_id, age_years, clinic_site FROM cohort ORDER BY age_years").fetchall()
    con.close()
    key = TEST_KEY.encode()
    assert rows == [(pseudonymise("007", key), 62.5, "A"), (pseudonymise("008", key), 70.0, "B")]
    bad = tmp_path / "bad.csv"
    df.assign(sex=["F", "X"]).to_csv(bad, index=False)
    assert cohort_main(["validate", str(bad)]) == 1
    assert cohort_main(["load", str(bad), "--db", str(dbfile)]) == 2
    assert "failed validation" in capsys.readouterr().err


def test_cohort_load_refuses_identifier_columns(tmp_path, key_env, capsys):
    csv = tmp_path / "c.csv"
    pd.DataFrame(
        {
            "participant_id": ["007"],
            "cohort": "derivation",
            "age_years": [61.5],
            "sex": ["F"],
            "patient_name": ["KIM^MINJI"],
            "site_name": ["A"],
        }
    ).to_csv(csv, index=False)
    dbfile = tmp_path / "x.duckdb"
    assert cohort_main(["load", str(csv), "--db", str(dbfile)]) == 2
    err = capsys.readouterr().err
    assert "patient_name" in err and "site_name" not in err and len(err.strip().splitlines()) == 1
    assert not dbfile.exists() or b"KIM^MINJI" not in dbfile.read_bytes()
