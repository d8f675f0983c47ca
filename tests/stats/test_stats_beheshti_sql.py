"""One Beheshti formula: the SQL view v_cohort_scores computes what model.bias.beheshti_correct does."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.results import to_table
from epi_spineage.model.bias import beheshti_correct
from epi_spineage.privacy import pseudonymise
from tests.model_rows import stand_in_model_row
from tests.score.test_score_sql import KEY, _row


def test_view_equals_the_python_formula_on_random_values():
    rng = np.random.default_rng(11)
    n = 40
    alpha, beta = float(rng.uniform(-0.6, 0.2)), float(rng.uniform(-20, 40))
    ages = rng.uniform(40, 99, n)
    spine = ages + rng.normal(0, 6, n)
    con = duckdb.connect()
    dbschema.apply_schema(con)
    db.register_model(con, stand_in_model_row({"method": "beheshti", "alpha": alpha, "beta": beta}))
    db.load_results(con, to_table([_row(i, f"P{i:03d}", age=float(spine[i]), month=1 + i % 12) for i in range(n)]))
    cohort = pd.DataFrame(
        {
            "participant_id": [pseudonymise(f"P{i:03d}", KEY) for i in range(n)],
            "cohort": "derivation",
            "age_years": ages,
            "sex": "F",
        }
    )
    con.register("c_in", cohort)
    con.execute("INSERT INTO cohort BY NAME SELECT * FROM c_in")
    con.unregister("c_in")
    got = con.execute(
        "SELECT participant_id, age_years, spine_age_years, spine_age_corrected_years, pad_years, "
        "pad_raw_years, pad_corrected_years FROM v_cohort_scores"
    ).df()
    assert len(got) == n
    want = beheshti_correct(got["spine_age_years"], got["age_years"], alpha, beta)
    np.testing.assert_allclose(got["spine_age_corrected_years"], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["pad_corrected_years"], want - got["age_years"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["pad_raw_years"], got["spine_age_years"] - got["age_years"])
    np.testing.assert_allclose(got["pad_years"], got["pad_raw_years"])
