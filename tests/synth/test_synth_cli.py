"""``python -m epi_spineage.synth``: cohort and images subcommands, help, user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from epi_spineage.synth import main


def test_cohort_parquet_and_truth(tmp_path):
    assert main(["cohort", "--out", str(tmp_path), "--n-derivation", "300", "--n-external", "200", "--seed", "3"]) == 0
    d = pd.read_parquet(tmp_path / "derivation.parquet")
    e = pd.read_parquet(tmp_path / "external.parquet")
    assert len(d) == 300 and len(e) == 200
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["synthetic"] and truth["seed"] == 3
    assert pd.api.types.is_integer_dtype(d["osteoporosis"])


@pytest.mark.parametrize("fmt,files", [("csv", ["derivation.csv", "external.csv"]), ("duckdb", ["cohorts.duckdb"])])
def test_cohort_other_formats(tmp_path, fmt, files):
    assert main(["cohort", "--out", str(tmp_path), "--n-derivation", "50", "--n-external", "40", "--format", fmt]) == 0
    for f in files + ["truth.json"]:
        assert (tmp_path / f).is_file()
    if fmt == "duckdb":
        import duckdb

        con = duckdb.connect(str(tmp_path / "cohorts.duckdb"), read_only=True)
        assert con.execute("select count(*) from external").fetchone()[0] == 40
        con.close()


@pytest.mark.needs_imaging  # phantoms need cv2 and pydicom
def test_images_zip(tmp_path):
    out = tmp_path / "ph.zip"
    assert main(["images", "--n", "4", "--out", str(out), "--scale", "0.05"]) == 0
    assert out.is_file() and (tmp_path / "ph.zip.manifest.csv").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["cohort", "--out", "x", "--n-derivation", "0"],
        ["images", "--out", "x.rar", "--n", "2"],
        ["images", "--out", "x.zip", "--scale", "9"],
        [],
        ["cohort"],
    ],
)
def test_user_errors_exit_2(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors exit 2 (epi_spineage.cli)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_module_help_has_examples():
    r = subprocess.run(
        [sys.executable, "-m", "epi_spineage.synth", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "examples:" in r.stdout and "synth images" in r.stdout


@pytest.mark.needs_imaging  # phantoms need cv2 and pydicom
def test_images_from_participants_table(tmp_path):
    assert main(["cohort", "--out", str(tmp_path), "--n-derivation", "20", "--n-external", "10"]) == 0
    out = tmp_path / "ext.tar.gz"
    assert (
        main(["images", "--participants", str(tmp_path / "external.parquet"), "--out", str(out), "--scale", "0.05"])
        == 0
    )
    m = pd.read_csv(str(out) + ".manifest.csv")
    assert len(m) == 10 and m["participant_id"].str.startswith("E").all()
    assert main(["images", "--participants", str(tmp_path / "nope.parquet"), "--out", str(out)]) == 2


@pytest.mark.needs_imaging  # phantoms need cv2 and pydicom
def test_synth_never_imports_torch():
    code = (
        "import sys; from epi_spineage.synth import simulate_study, render_phantom, write_dicom; "
        "simulate_study(n_derivation=50, n_external=30); render_phantom(50, seed=1, scale=0.05); "
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
