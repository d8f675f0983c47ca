"""Domain shift in SQL: v_agreement_by_manufacturer equals stats.agreement_by_group, and the per-manufacturer
bias correction stored in bias_corrections is applied by v_cohort_scores exactly as
model.bias.ManufacturerBiasCorrection applies it in Python (calibration participants refused/NULL)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from epi_spineage.db import bias as dbbias
from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.results import to_table
from epi_spineage.errors import UserError
from epi_spineage.model.bias import BiasCorrection, ManufacturerBiasCorrection
from epi_spineage.privacy import pseudonymise
from epi_spineage.stats import agreement_by_group, pad_shift_test
from tests.model_rows import stand_in_model_row
from tests.score.test_score_sql import KEY, _row

OFFSETS = {"ACME": 0.0, "BOREALIS": 3.0, "CYGNUS": -2.0, "TINY": 4.0}
SHARES = {"ACME": 0.45, "BOREALIS": 0.3, "CYGNUS": 0.23, "TINY": 0.02}
POOLED = (-0.3, 20.0)  # the model's pooled line: PAD = -0.3 * age + 20


def _cohort(n: int, seed: int) -> pd.DataFrame:
    """Scanner offsets planted in the score; one manufacturer too small for its own fit; some no manufacturer."""
    rng = np.random.default_rng(seed)
    man = rng.choice(list(SHARES), n, p=list(SHARES.values())).astype(object)
    man[:3] = None
    man[3] = "ONLY-ANALYSED"  # a manufacturer the calibration set does not have
    age = rng.uniform(50, 90, n)
    sex = rng.choice(["F", "M"], n)
    offset = np.array([OFFSETS.get(m, 0.0) if m is not None else 0.0 for m in man])
    spine = age + POOLED[0] * age + POOLED[1] + offset + rng.normal(0, 4, n)
    split = np.where(rng.random(n) < 0.4, "calibration", "test")
    split[:4] = ["test", "calibration", "calibration", "test"]
    return pd.DataFrame(
        {
            "pid": [f"P{i:04d}" for i in range(n)],
            "cohort": "external",
            "split": split,
            "age_years": age,
            "sex": sex,
            "spine_age_years": spine,
            "manufacturer": man,
            "image_modality": np.where((rng.random(n) < 0.5) & (np.arange(n) >= 4), "radiograph", "vfa"),
        }
    )


def _database(df: pd.DataFrame, pooled_fit_pids=()) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    dbschema.apply_schema(con)
    bias = {
        "method": "beheshti",
        "alpha": POOLED[0],
        "beta": POOLED[1],
        "fit_ids": [pseudonymise(p, KEY) for p in pooled_fit_pids],
    }
    db.register_model(con, stand_in_model_row(bias))
    rows = []
    for i, r in enumerate(df.itertuples()):
        row = _row(i, r.pid, age=float(r.spine_age_years), month=1 + i % 12, manufacturer=r.manufacturer)
        row["modality"] = r.image_modality
        rows.append(row)
    db.load_results(con, to_table(rows))
    cohort = pd.DataFrame(
        {
            "participant_id": [pseudonymise(p, KEY) for p in df["pid"]],
            "cohort": df["cohort"],
            "split": df["split"],
            "age_years": df["age_years"],
            "sex": df["sex"],
        }
    )
    con.register("c_in", cohort)
    con.execute("INSERT INTO cohort BY NAME SELECT * FROM c_in").fetchall()
    con.unregister("c_in")
    return con


def test_agreement_view_equals_agreement_by_group():
    df = _cohort(700, 1)
    con = _database(df)
    view = con.execute("SELECT * FROM v_agreement_by_manufacturer").df()
    rows = con.execute("SELECT model_id, manufacturer, modality, age_years, spine_age_years FROM v_cohort_scores").df()
    want = agreement_by_group(rows, ("model_id", "manufacturer", "modality"))
    # 4 manufacturers by two modalities; three VFA without a manufacturer; one of a fifth (VFA)
    assert len(view) == len(want) == 2 * 4 + 2
    assert "(missing)" in set(view["manufacturer"])
    key = ["model_id", "manufacturer", "modality"]
    got = view.set_index(key).sort_index()
    want = want.set_index(key).sort_index()
    assert list(got.index) == list(want.index)
    np.testing.assert_array_equal(got["n"], want["n"])
    for col in ("pad_mean_years", "pad_sd_years", "mae_years", "pearson_r", "r_ci_low", "r_ci_high"):
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-9, atol=1e-12, err_msg=col)
    np.testing.assert_allclose(got["pad_mean_se_years"], want["pad_sd_years"] / np.sqrt(want["n"]), rtol=1e-12)
    # a group too small for an interval: NULL in SQL, NaN in Python
    tiny = con.execute(
        "SELECT n, pearson_r, r_ci_low FROM v_agreement_by_manufacturer WHERE manufacturer = '(missing)'"
    ).fetchall()
    assert tiny == [(3, pytest.approx(want.loc[("m1", "(missing)", "vfa"), "pearson_r"]), None)]


def test_per_manufacturer_correction_is_the_same_in_sql_and_python_and_removes_the_shift():
    df = _cohort(1500, 2)
    # analysed rows the pooled line was fitted on: three of a manufacturer with its own line, one without
    test_rows = df[df["split"] == "test"]
    pooled_fit = [*test_rows["pid"][test_rows["manufacturer"] == "ACME"].iloc[:3]]
    pooled_fit += [*test_rows["pid"][test_rows["manufacturer"] == "TINY"].iloc[:1]]
    con = _database(df, pooled_fit_pids=pooled_fit)
    mid, fit = dbbias.fit_from_db(con, "external:calibration", min_images=30)
    assert mid == "m1"
    dbbias.store(con, mid, fit)
    # own fits for the big three; TINY and '(missing)' fall back to the pooled line, with a note each
    assert set(fit.fits_) == {"ACME", "BOREALIS", "CYGNUS"}
    assert {line.split(":")[0] for line in fit.notes()} == {"TINY", "(missing)"}
    at70 = {m: f.alpha_ * 70 + f.beta_ for m, f in fit.fits_.items()}  # each line's PAD at age 70
    for m, off in (("BOREALIS", 3.0), ("CYGNUS", -2.0)):
        assert at70[m] - at70["ACME"] == pytest.approx(off, abs=1.0)
    v = con.execute("""
        SELECT participant_id, split, manufacturer, age_years, spine_age_years, bias_correction_scope,
               bias_calibration_set, spine_age_corrected_by_manufacturer_years AS corrected
        FROM v_cohort_scores ORDER BY participant_id""").df()
    assert set(v["bias_calibration_set"]) == {"external:calibration"}
    calib = v["split"] == "calibration"
    assert v.loc[calib, "corrected"].isna().all()  # the calibration set is never corrected
    in_pooled = v["participant_id"].isin([pseudonymise(p, KEY) for p in pooled_fit])
    falls_back = v["bias_correction_scope"] == "pooled"
    assert (in_pooled & falls_back).sum() == 1 and (v.loc[in_pooled & falls_back, "corrected"].isna()).all()
    assert v.loc[in_pooled & ~falls_back, "corrected"].notna().sum() == 3  # their own line was not fitted on them
    ok = ~calib & ~(in_pooled & falls_back)
    test = v[ok]
    want = fit.apply(test["age_years"], test["spine_age_years"], test["manufacturer"], ids=test["participant_id"])
    np.testing.assert_allclose(test["corrected"], want, rtol=1e-12, atol=1e-10)
    scopes = test.groupby(test["manufacturer"].fillna("(missing)"))["bias_correction_scope"].first().to_dict()
    assert scopes == {"ACME": "manufacturer", "BOREALIS": "manufacturer", "CYGNUS": "manufacturer",
                      "TINY": "pooled", "(missing)": "pooled", "ONLY-ANALYSED": "pooled"}  # fmt: skip
    # Python refuses what SQL leaves NULL: calibration participants
    c = v[calib]
    with pytest.raises(UserError, match="calibration set"):
        fit.apply(c["age_years"], c["spine_age_years"], c["manufacturer"], ids=c["participant_id"])
    # the shift: found in the raw PAD of the analysed rows, gone after the per-manufacturer correction
    rows = con.execute("""
        SELECT manufacturer, age_years, sex, pad_raw_years, pad_corrected_by_manufacturer_years
        FROM v_cohort_scores WHERE split = 'test' AND manufacturer IN ('ACME', 'BOREALIS', 'CYGNUS')""").df()
    before = pad_shift_test(rows, pad="pad_raw_years")
    after = pad_shift_test(rows, pad="pad_corrected_by_manufacturer_years")
    assert before["p_value"].iloc[0] < 1e-10
    assert after["p_value"].iloc[0] > 0.05
    # refitting replaces the model's rows; the Python reader gets back the same lines
    dbbias.store(con, mid, fit)
    back = dbbias.read_corrections(con)["m1"]
    assert {m: (f.alpha_, f.beta_) for m, f in back.fits_.items()} == {
        m: (f.alpha_, f.beta_) for m, f in fit.fits_.items()
    }
    assert back.calibration_ids == fit.calibration_ids
    # the zero-row data test holds, and catches a pooled row that carries a line of its own
    assert dbschema.run_sql_tests(con)["bias_corrections_consistent.sql"] == 0
    con.execute("UPDATE bias_corrections SET alpha = 0.1 WHERE manufacturer = 'TINY'").fetchall()
    assert dbschema.run_sql_tests(con)["bias_corrections_consistent.sql"] == 1


def test_calibration_set_names_and_refusals():
    assert dbbias.parse_calibration_set("external") == ("external", None)
    assert dbbias.parse_calibration_set(" external : calibration ") == ("external", "calibration")
    for bad in ("", ":x", "external:"):
        with pytest.raises(UserError, match="COHORT:SPLIT"):
            dbbias.parse_calibration_set(bad)
    con = _database(_cohort(120, 3))
    with pytest.raises(UserError, match="0 scored participant"):
        dbbias.fit_from_db(con, "external:nosuchsplit")
    with pytest.raises(UserError, match="model 'm9'"):
        dbbias.fit_from_db(con, "external", model_id="m9")
    with pytest.raises(UserError, match="min_images"):
        ManufacturerBiasCorrection("x", min_images=2)


def test_without_a_pooled_correction_a_small_manufacturer_stays_missing():
    rng = np.random.default_rng(4)
    age = rng.uniform(50, 90, 80)
    man = np.array(["A"] * 70 + ["B"] * 10, dtype=object)
    spine = age + rng.normal(0, 3, 80)
    fit = ManufacturerBiasCorrection("cal", pooled=None, min_images=30).fit(age, spine, man)
    assert fit.scope("A") == "manufacturer" and fit.scope("B") == "pooled"
    assert fit.notes() == ["B: 10 calibration image(s), fewer than 30; no pooled correction: left missing"]
    out = fit.apply(age + 0.5, spine, man)
    assert np.isfinite(out[:70]).all() and np.isnan(out[70:]).all()
    pooled = BiasCorrection().fit(age, spine)
    fit2 = ManufacturerBiasCorrection("cal", pooled=pooled.to_dict(), min_images=30).fit(age, spine, man)
    np.testing.assert_allclose(
        fit2.apply(age[70:] + 1, spine[70:], man[70:]), pooled._correct(age[70:] + 1, spine[70:])
    )
