"""Migration 5: the 0.1.0 database gains bias_corrections; stored per-manufacturer lines reach v_cohort_scores."""

from __future__ import annotations

import duckdb
import numpy as np

from epi_spineage.db import bias as dbbias
from epi_spineage.db import migrations
from epi_spineage.db.schema import apply_schema
from epi_spineage.model.bias import ManufacturerBiasCorrection
from tests.db.conftest import V1_KEY


def test_the_0_1_0_database_gains_bias_corrections_and_the_views_apply_them(v1_db):
    con = duckdb.connect(str(v1_db))
    try:
        assert migrations.schema_version(con) == 1
        apply_schema(con, key=V1_KEY)
        assert migrations.schema_version(con) >= 5
        assert con.execute("SELECT count(*) FROM bias_corrections").fetchall() == [(0,)]
        # without stored lines the per-manufacturer columns are NULL (the pooled ones are as before)
        rows = con.execute("""
            SELECT participant_id, model_id, manufacturer, age_years, spine_age_years,
                   bias_correction_scope, spine_age_corrected_by_manufacturer_years
            FROM v_cohort_scores ORDER BY participant_id""").df()
        assert len(rows) and rows["bias_correction_scope"].isna().all()
        assert rows["spine_age_corrected_by_manufacturer_years"].isna().all()
        # a line fitted elsewhere (every fixture participant is analysed) is stored and applied
        rng = np.random.default_rng(5)
        age = rng.uniform(50, 90, 60)
        man = np.array(rows["manufacturer"].fillna("(missing)").iloc[0], dtype=object).repeat(60)
        fit = ManufacturerBiasCorrection("other:calibration", min_images=30).fit(age, age + rng.normal(2, 3, 60), man)
        dbbias.store(con, rows["model_id"].iloc[0], fit)
        after = con.execute("""
            SELECT age_years, spine_age_years, manufacturer, bias_correction_scope,
                   spine_age_corrected_by_manufacturer_years AS corrected
            FROM v_cohort_scores ORDER BY participant_id""").df()
        same = after["manufacturer"].fillna("(missing)") == man[0]
        assert set(after.loc[same, "bias_correction_scope"]) == {"manufacturer"}
        want = fit.apply(
            after.loc[same, "age_years"], after.loc[same, "spine_age_years"], after.loc[same, "manufacturer"]
        )
        np.testing.assert_allclose(after.loc[same, "corrected"], want, rtol=1e-12)
        apply_schema(con, key=V1_KEY)  # idempotent
        assert con.execute("SELECT count(*) FROM bias_corrections").fetchall() == [(1,)]
    finally:
        con.close()
