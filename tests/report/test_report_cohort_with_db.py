"""--cohort FILE --db DB: the database's spine ages replace the file's for scored participants only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage.privacy import pseudonymise
from epi_spineage.report.config import load_config
from epi_spineage.report.inputs import load_inputs

from .conftest import write_scored_db


def test_scores_join_through_keyed_ids_and_unscored_rows_keep_the_file_values(tmp_path, demo_inputs, pseudonym_key):
    pytest.importorskip("duckdb")
    der, ext, _ = demo_inputs
    df = pd.concat([der.head(600), ext.head(300)], ignore_index=True)
    scored = df.groupby("cohort").head(100).index
    keyed = df["participant_id"].map(lambda v: pseudonymise(v, pseudonym_key))
    db_age = df.loc[scored, "spine_age_years"].to_numpy() + 7.0  # distinguishable from the file's values
    db = write_scored_db(
        tmp_path / "scores.duckdb", df.assign(participant_id=keyed), keys=keyed[scored].to_numpy(), spine_ages=db_age
    )
    csv = tmp_path / "cohort.csv"
    df.to_csv(csv, index=False)

    inputs = load_inputs(
        cohort=str(csv),
        mapping=None,
        db=str(db),
        config=load_config(None),
        seed=0,
        n_derivation=0,
        n_external=0,
        key=pseudonym_key,
    )
    got = pd.concat([inputs.derivation, inputs.external]).set_index("participant_id")["spine_age_years"]
    want = df.set_index("participant_id")["spine_age_years"].copy()
    want.loc[df.loc[scored, "participant_id"]] = db_age
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy())
    assert any("200 of 900" in w for w in inputs.warnings)
