"""A database filled from the simulator's output is reported as synthetic; a plain one is not."""

from __future__ import annotations

import shutil

import pytest

from epi_spineage.cohort import main as cohort_main
from epi_spineage.report.config import load_config
from epi_spineage.report.inputs import load_inputs
from epi_spineage.synth import simulate_study


@pytest.fixture(scope="module")
def simulated_tables(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_study(seed=4, n_derivation=600, n_external=300).write(out)
    return out


def _inputs(db):
    return load_inputs(
        cohort=None, mapping=None, db=str(db), config=load_config(None), seed=0, n_derivation=0, n_external=0
    )


def test_cohort_loaded_from_simulator_output_is_labelled_synthetic(simulated_tables, tmp_path, pseudonym_key):
    db = tmp_path / "study.duckdb"
    for name in ("derivation", "external"):
        assert cohort_main(["load", str(simulated_tables / f"{name}.parquet"), "--db", str(db)]) == 0
    inputs = _inputs(db)
    assert inputs.synthetic is True
    assert "simulator" in inputs.source


def test_cohort_without_truth_json_is_not_labelled(simulated_tables, tmp_path, pseudonym_key):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("derivation", "external"):
        shutil.copy(simulated_tables / f"{name}.parquet", plain / f"{name}.parquet")
    db = tmp_path / "study.duckdb"
    for name in ("derivation", "external"):
        assert cohort_main(["load", str(plain / f"{name}.parquet"), "--db", str(db)]) == 0
    inputs = _inputs(db)
    assert inputs.synthetic is False
