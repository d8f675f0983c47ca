"""--cohort FILE --db DB: the database's spine ages replace the file's for scored participants only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.privacy import pseudonymise
from epi_spineage.report.config import load_config
from epi_spineage.report.inputs import load_inputs


def test_scores_join_through_keyed_ids_and_unscored_rows_keep_the_file_values(tmp_path, demo_inputs, pseudonym_key):
    duckdb = pytest.importorskip("duckdb")
    from epi_spineage.score.db import apply_schema

    der, ext, _ = demo_inputs
    df = pd.concat([der.head(600), ext.head(300)], ignore_index=True)
    scored = df.groupby("cohort").head(100).index
    keyed = df["participant_id"].map(lambda v: pseudonymise(v, pseudonym_key))
    db_age = df.loc[scored, "spine_age_years"].to_numpy() + 7.0  # distinguishable from the file's values
    db = tmp_path / "scores.duckdb"
    images = pd.DataFrame({"source_path": [f"a.zip::{i}.dcm" for i in scored], "content_hash": [f"h{i}" for i in scored],
                           "participant_key": keyed[scored].to_numpy(), "qc_status": "ok",
                           "study_date": pd.Timestamp("2015-01-01")})
    scores = pd.DataFrame({"content_hash": images["content_hash"], "model_id": "m1", "spine_age_years": db_age,
                           "spine_age_sd_years": 3.0, "source_path": images["source_path"], "weights_hash": "w",
                           "preprocess_config_hash": "p", "package_version": "0", "run_id": "r1",
                           "scored_at": pd.Timestamp("2020-01-01")})
    cohort = df.assign(participant_id=keyed)
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
    csv = tmp_path / "cohort.csv"
    df.to_csv(csv, index=False)

    inputs = load_inputs(cohort=str(csv), mapping=None, db=str(db), config=load_config(None),
                         seed=0, n_derivation=0, n_external=0)
    got = pd.concat([inputs.derivation, inputs.external]).set_index("participant_id")["spine_age_years"]
    want = df.set_index("participant_id")["spine_age_years"].copy()
    want.loc[df.loc[scored, "participant_id"]] = db_age
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy())
    assert any("200 of 900" in w for w in inputs.warnings)
