"""One reduced demo report per test session (the build is the expensive part)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

SEED = 11
N_DERIVATION = 3000
N_EXTERNAL = 1500


@dataclass
class BuiltReport:
    out: Path
    index: Path
    results: object
    payload: dict
    derivation_input: object
    external_input: object


@pytest.fixture(scope="session")
def demo_inputs():
    from epi_spineage.report import demo_study

    return demo_study(SEED, N_DERIVATION, N_EXTERNAL)


@pytest.fixture(scope="session")
def built_report(tmp_path_factory, demo_inputs) -> BuiltReport:
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import write_study_report

    der, ext, truth = demo_inputs
    config = StudyConfig()
    results = run_study(der, ext, config)
    results.attach_truth(truth)
    out = tmp_path_factory.mktemp("demo_report")
    index = write_study_report(out, results, config=config, synthetic=True, source="test", svg=True)
    payload = json.loads((out / "results.json").read_text())
    return BuiltReport(out, index, results, payload, der, ext)


@pytest.fixture(scope="session")
def scored_db(tmp_path_factory, demo_inputs):
    """A DuckDB in the package schema holding a small cohort (spine ages in the cohort table)."""
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    from epi_spineage.score.db import apply_schema

    der, ext, _ = demo_inputs
    df = pd.concat([der.head(1500), ext.head(800)], ignore_index=True)
    db = tmp_path_factory.mktemp("db") / "scores.duckdb"
    with duckdb.connect(str(db)) as con:
        apply_schema(con)
        cols = [r[0] for r in con.execute("DESCRIBE cohort").fetchall()]
        con.register("df", df[[c for c in df.columns if c in cols]])
        con.execute("INSERT INTO cohort BY NAME SELECT * FROM df")
    return db, df
