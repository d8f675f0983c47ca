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
    # every default but the size of the multiple imputation (2 sets of 2 cycles, not 20 of 10): the
    # section and its tables are all there, in seconds (tests/report/test_report_sensitivity.py)
    config = StudyConfig(mi_imputations=2, mi_iterations=2)
    results = run_study(der, ext, config)
    results.attach_truth(truth)
    out = tmp_path_factory.mktemp("demo_report")
    index = write_study_report(out, results, config=config, synthetic=True, source="test", svg=True)
    payload = json.loads((out / "results.json").read_text())
    return BuiltReport(out, index, results, payload, der, ext)


@pytest.fixture(scope="session")
def scored_db(tmp_path_factory, demo_inputs):
    """A DuckDB in the package schema: a small cohort whose first rows of each role are scored.

    For scored participants the spine age lives only in ``images``/``scores`` (the cohort row has
    none), so the report can only see it through the SQL views. The model's bias correction is the
    identity (alpha = beta = 0), so corrected and uncorrected spine age agree for scored rows.
    """
    pytest.importorskip("duckdb")
    import pandas as pd

    der, ext, _ = demo_inputs
    df = pd.concat([der.head(1500), ext.head(800)], ignore_index=True)
    scored = df.groupby("cohort").head(400).index
    db = tmp_path_factory.mktemp("db") / "scores.duckdb"
    cohort = df.copy()
    cohort.loc[scored, ["spine_age_years", "spine_age_corrected_years"]] = float("nan")
    write_scored_db(
        db,
        cohort,
        keys=df.loc[scored, "participant_id"].to_numpy(),
        spine_ages=df.loc[scored, "spine_age_years"].to_numpy(),
        modalities=df.loc[scored, "modality"].to_numpy(),
    )
    return db, df


def write_scored_db(db, cohort, *, keys, spine_ages, modalities=None, manufacturers=None):
    """A DuckDB in the package schema: ``cohort`` rows, and one scored image per participant key.

    The model's bias correction is the identity (alpha = beta = 0).
    """
    import duckdb
    import pandas as pd

    from epi_spineage.db.schema import apply_schema

    n = len(keys)
    images = pd.DataFrame(
        {
            "source_path": [f"archive.zip::img{i:05d}.dcm" for i in range(n)],
            "content_hash": [f"h{i:05d}" for i in range(n)],
            "participant_key": keys,
            "qc_status": "ok",
            "manufacturer": "ACME" if manufacturers is None else manufacturers,
            "modality": modalities,
            "study_date": pd.Timestamp("2015-01-01"),
        }
    )
    scores = pd.DataFrame(
        {
            "content_hash": images["content_hash"],
            "model_id": "m1",
            "spine_age_years": spine_ages,
            "spine_age_sd_years": 3.0,
            "source_path": images["source_path"],
            "weights_hash": "w",
            "preprocess_config_hash": "p",
            "package_version": "0",
            "run_id": "r1",
            "scored_at": pd.Timestamp("2020-01-01"),
        }
    )
    with duckdb.connect(str(db)) as con:
        apply_schema(con)
        cols = [r[0] for r in con.execute("DESCRIBE cohort").fetchall()]
        con.register("c", cohort[[c for c in cohort.columns if c in cols]])
        con.execute("INSERT INTO cohort BY NAME SELECT * FROM c")
        con.register("i", images)
        con.execute("INSERT INTO images BY NAME SELECT * FROM i")
        con.register("s", scores)
        con.execute("INSERT INTO scores BY NAME SELECT * FROM s")
        con.execute("""INSERT INTO models (model_id, weights_hash, metadata_json) VALUES
                       ('m1', 'w', '{"bias_correction": {"method": "beheshti", "alpha": 0.0, "beta": 0.0}}')""")
    return db
