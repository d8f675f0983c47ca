"""Every SQL file runs against a fixture database; the data tests return zero rows there and
catch planted violations; the views compute PAD, corrected PAD, baseline image and the flag."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.results import to_table
from epi_spineage.privacy import pseudonymise
from epi_spineage.score.drift import drift_summary
from tests.model_rows import stand_in_model_row

KEY = b"sql-test-key-0123456789"
ALPHA, BETA = -0.25, 15.0


def _row(i, pid, *, age, month, manufacturer="ACME", model="m1", status="scored", path=None, h=None):
    return {
        "run_id": "run1",
        "source_path": path or f"/a.zip::img{i:03d}.dcm",
        "status": status,
        "content_hash": h or f"hash{i:03d}",
        "file_size_bytes": 1000 + i,
        "sop_instance_uid": f"1.2.{i}",
        "format": "dicom",
        "modality": "radiograph",
        "dicom_modality": "DX",
        "view_position": "LL",
        "study_date": dt.date(2024, month, 10),
        "manufacturer": manufacturer,
        "bits_stored": 12,
        "photometric_interpretation": "MONOCHROME2",
        "participant_key": pseudonymise(pid, KEY),
        "model_id": model,
        "weights_hash": "w" * 64,
        "preprocess_config_hash": "c" * 64,
        "package_version": "0.1.0",
        "device": "cpu",
        "spine_age_years": age,
        "spine_age_sd_years": 3.0,
        "recorded_at": dt.datetime(2025, 1, 1, 0, 0, i % 60),
    }


@pytest.fixture
def con():
    """A scored database: 12 participants, two images for participant P000 (baseline = earlier)."""
    con = duckdb.connect()
    dbschema.apply_schema(con)
    con.execute("BEGIN TRANSACTION")
    db.register_model(con, stand_in_model_row({"method": "beheshti", "alpha": ALPHA, "beta": BETA}))
    rng = np.random.default_rng(5)
    ages = np.linspace(55, 85, 12)
    # Spine age close to age: small PADs, so no month of the first half-year drifts.
    rows = [_row(i, f"P{i:03d}", age=float(ages[i] + rng.normal(0, 0.5)), month=1 + i % 6) for i in range(12)]
    rows.append(_row(99, "P000", age=77.0, month=11))  # a later image of P000
    db.load_results(con, to_table(rows))
    cohort = pd.DataFrame(
        {
            "participant_id": [pseudonymise(f"P{i:03d}", KEY) for i in range(12)],
            "cohort": "derivation",
            "age_years": ages,
            "sex": ["F", "M"] * 6,
        }
    )
    con.register("c_in", cohort)
    con.execute("INSERT INTO cohort BY NAME SELECT * FROM c_in")
    con.execute(
        "INSERT INTO cutpoints (name, value, source_cohort, method, comparison) "
        "VALUES ('pad_tertile_years', 1.0, 'derivation', 'quantile type 7', '>=')"
    )
    con.execute("COMMIT")
    yield con
    con.close()


def test_every_sql_file_runs_and_data_tests_pass(con):
    for view in dbschema.VIEWS:
        con.execute(f"SELECT * FROM {view}").fetchall()
    failures = dbschema.run_sql_tests(con)
    assert len(failures) >= 8
    assert failures == {name: 0 for name in failures}


def test_sql_files_are_one_view_per_file():
    names = {p.name for p in dbschema.sql_dir().iterdir() if p.name.endswith(".sql")}
    assert names == {"schema.sql"} | {f"{v}.sql" for v in dbschema.VIEWS}
    for view in dbschema.VIEWS:
        assert f"CREATE OR REPLACE VIEW {view} AS" in dbschema.read_sql(view)


@pytest.mark.parametrize(
    "plant, test_name",
    [
        ("UPDATE images SET qc_status = 'maybe' WHERE source_path LIKE '%img001%'", "images_accepted_values.sql"),
        (
            "UPDATE images SET participant_key = 'H0001234' WHERE source_path LIKE '%img002%'",
            "participant_keys_pseudonymised.sql",
        ),
        ("UPDATE scores SET spine_age_years = 130 WHERE content_hash = 'hash003'", "scores_within_model_range.sql"),
        ("INSERT INTO cutpoints (name, value, comparison) VALUES ('x', 1, '=<')", "cutpoints_accepted_values.sql"),
        ("INSERT INTO errors VALUES ('e1', 'r', '/x', 'kaput', 'm', NULL)", "errors_accepted_values.sql"),
        ("DELETE FROM images WHERE source_path LIKE '%img004%'", "scores_have_image.sql"),
    ],
)
def test_data_tests_catch_planted_violations(con, plant, test_name):
    con.execute(plant)
    assert dbschema.run_sql_tests(con)[test_name] > 0


def test_views_compute_pad_corrected_pad_and_baseline(con):
    df = con.execute("SELECT * FROM v_cohort_scores ORDER BY participant_id").df()
    assert len(df) == 12
    np.testing.assert_allclose(df.pad_years, df.spine_age_years - df.age_years)
    np.testing.assert_allclose(df.spine_age_corrected_years, df.spine_age_years - (ALPHA * df.age_years + BETA))
    np.testing.assert_allclose(df.pad_corrected_years, df.spine_age_corrected_years - df.age_years)
    p0 = pseudonymise("P000", KEY)
    base = con.execute("SELECT source_path, n_images FROM v_baseline_image WHERE participant_key = ?", [p0]).fetchall()[
        0
    ]
    assert base == ("/a.zip::img000.dcm", 2)  # January image, not the November one


def test_accelerated_flag_uses_cutpoint_and_comparison(con):
    # Plant a PAD exactly at the cut (float noise included): >= flags it, > does not.
    pid = pseudonymise("P005", KEY)
    age = con.execute("SELECT age_years FROM cohort WHERE participant_id = ?", [pid]).fetchall()[0][0]
    con.execute("UPDATE scores SET spine_age_years = ? + 1.0 + 1e-12 WHERE content_hash = 'hash005'", [age])
    flag = con.execute("SELECT accelerated FROM v_accelerated WHERE participant_id = ?", [pid]).fetchall()[0][0]
    assert flag is True
    con.execute("UPDATE scores SET spine_age_years = ? + 1.0 - 1e-12 WHERE content_hash = 'hash005'", [age])
    assert con.execute("SELECT accelerated FROM v_accelerated WHERE participant_id = ?", [pid]).fetchall()[0][0] is True
    con.execute("UPDATE cutpoints SET comparison = '>'")
    accelerated = con.execute("SELECT accelerated FROM v_accelerated WHERE participant_id = ?", [pid]).fetchall()
    assert accelerated[0][0] is False
    df = con.execute("SELECT * FROM v_accelerated").df()
    expected = df.pad_years.round(9) > 1.0
    assert (df.accelerated == expected).all()
    assert df.accelerated_corrected.isna().all()  # no cut point for corrected PAD


def test_drift_summary_flags_a_shifted_manufacturer(con):
    # A later month from a new vendor reads 6 years older than everything before.
    rows = [_row(200 + i, f"Q{i:03d}", age=90.0 + i * 0.1, month=12, manufacturer="NEWCO") for i in range(4)]
    con.execute("BEGIN TRANSACTION")
    db.load_results(con, to_table(rows))
    con.execute("COMMIT")
    # 4 images are too few to flag under the database's default minimum (30)...
    out = drift_summary(con, bound_years=2.0, reference=("2024-01-01", "2024-07-01"))
    newco = out[out.manufacturer == "NEWCO"]
    assert len(newco) == 1 and not newco.drift_flag.any() and (out.drift_min_count == 30).all()
    assert con.execute("SELECT drift_flag FROM v_drift WHERE manufacturer = 'NEWCO'").fetchall()[0][0] is False
    # ...and enough once the minimum is 4: by argument, then through the settings row the view reads
    out = drift_summary(con, bound_years=2.0, reference=("2024-01-01", "2024-07-01"), min_count=4)
    newco = out[out.manufacturer == "NEWCO"]
    assert len(newco) == 1 and bool(newco.drift_flag.iloc[0])
    assert newco.drift_metric.iloc[0] == "spine_age_years"  # NEWCO participants are not in the cohort
    ref = out[(out.study_month < "2024-07-01")]
    assert not ref.drift_flag.any()
    assert not drift_summary(con, bound_years=2.0, min_count=5).query("manufacturer == 'NEWCO'").drift_flag.any()
    loose = drift_summary(con, bound_years=1000.0, min_count=1)
    assert not loose.drift_flag.any()
    con.execute("UPDATE settings SET value = '4' WHERE name = 'drift_min_count'")
    view = con.execute("SELECT drift_flag, drift_min_count FROM v_drift WHERE manufacturer = 'NEWCO'").fetchall()[0]
    assert view == (True, 4)
    assert drift_summary(con, bound_years=2.0).query("manufacturer == 'NEWCO'").drift_flag.all()
    con.execute("UPDATE settings SET value = '5' WHERE name = 'drift_min_count'")
    assert con.execute("SELECT drift_flag FROM v_drift WHERE manufacturer = 'NEWCO'").fetchall()[0][0] is False
    with pytest.raises(ValueError):
        drift_summary(con, bound_years=0)
    with pytest.raises(ValueError):
        drift_summary(con, min_count=0)


def test_flat_runs_are_flagged_by_the_view_and_drift_module(con):
    from epi_spineage.score.drift import flat_runs

    assert flat_runs(con).empty  # run1: ages 55-85, SD about 9 years
    assert not any(r[0] for r in con.execute("SELECT flat_run FROM v_drift").fetchall())
    # a degenerate model: every image of run2 gets 66.12 years
    rows = [dict(_row(300 + i, f"R{i:03d}", age=66.12, month=2), run_id="run2") for i in range(12)]
    con.execute("BEGIN TRANSACTION")
    db.load_results(con, to_table(rows))
    con.execute("COMMIT")
    flat = flat_runs(con)
    assert flat.run_id.tolist() == ["run2"] and flat.n.iloc[0] == 12 and flat.sd_years.iloc[0] < 1e-6
    by_run = dict(con.execute("SELECT DISTINCT run_id, flat_run FROM v_drift").fetchall())
    assert by_run == {"run1": False, "run2": True}
    # fewer than 10 scores is not enough evidence to call a run flat
    assert flat_runs(con, min_n=13).empty


README_QUERIES = [
    """SELECT participant_id, cohort, age_years, spine_age_years, pad_years, pad_corrected_years, accelerated
       FROM v_accelerated ORDER BY pad_years DESC LIMIT 20""",
    """SELECT sex, floor(age_years / 10) * 10 AS age_band, count(*) AS n,
              round(avg(pad_years), 2) AS mean_pad_years, round(stddev_samp(pad_years), 2) AS sd_pad_years
       FROM v_cohort_scores GROUP BY ALL ORDER BY sex, age_band""",
    """SELECT run_id, status, n_scored, n_not_spine, n_duplicates, n_errors, n_spooled,
              finished_at - started_at AS took
       FROM runs ORDER BY started_at DESC LIMIT 1""",
    """SELECT manufacturer, study_month, n_images, round(delta_years, 2) AS delta_years
       FROM v_drift WHERE drift_flag""",
]


def test_readme_queries_run(con):
    """The example queries of the scoring guide (docs/guides/score.md) run against a scored database."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "score.md").read_text()
    for query in README_QUERIES:
        assert " ".join(query.split()).split(" FROM ")[0] in " ".join(doc.split())
        con.execute(query).fetchall()
    first = con.execute(README_QUERIES[0]).fetchall()
    assert len(first) == 12
    # with a cut point stored (as the guide says to), the first query returns flags, not NULLs
    assert all(row[-1] == (round(row[4], 9) >= 1.0) for row in first)
    assert "cutpoints set --db" in doc


def test_view_refuses_to_correct_the_participants_the_correction_was_fitted_on(con):
    # As BiasCorrection.apply refuses them: their corrected values would be flattered.
    fitted = [pseudonymise(f"P{i:03d}", KEY) for i in (1, 2)]
    bias = db.normalise_bias_correction({"method": "beheshti", "alpha": ALPHA, "beta": BETA, "fit_ids": fitted})
    assert bias["fit_ids"] == fitted
    con.execute("UPDATE models SET metadata_json = ? WHERE model_id = 'm1'", [json.dumps({"bias_correction": bias})])
    df = (
        con.execute(
            "SELECT participant_id, spine_age_years, age_years, spine_age_corrected_years, "
            "pad_corrected_years FROM v_cohort_scores"
        )
        .df()
        .set_index("participant_id")
    )
    assert df.loc[fitted, ["spine_age_corrected_years", "pad_corrected_years"]].isna().all().all()
    rest = df.drop(index=fitted)
    assert len(rest) == 10
    np.testing.assert_allclose(rest.spine_age_corrected_years, rest.spine_age_years - (ALPHA * rest.age_years + BETA))
