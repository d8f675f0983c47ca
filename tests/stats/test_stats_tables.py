"""Cohort input: reading, the TOML column mapping, validation (one line per problem), derived variables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError, ValidationError
from epi_spineage.tables import apply_mapping, derive_variables, load_mapping, read_table, validate_cohort

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "column_mapping.toml"


def _cohort(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "participant_id": [f"{i:05d}" for i in range(n)],
            "cohort": np.where(np.arange(n) < n // 2, "derivation", "external"),
            "age_years": rng.integers(50, 80, n).astype(float),
            "sex": rng.choice(["F", "M"], n),
            "spine_age_years": rng.integers(45, 85, n).astype(float),
            "height_cm": rng.normal(160, 8, n),
            "weight_kg": rng.normal(60, 9, n),
            "tscore_lumbar": rng.normal(-1, 1, n),
            "tscore_femoral_neck": rng.normal(-1.5, 1, n),
            "albumin_g_l": rng.normal(42, 3, n),
            "creatinine_mg_dl": rng.normal(0.9, 0.2, n),
            "diabetes": rng.integers(0, 2, n),
            "fracture_any": rng.integers(0, 2, n),
            "fracture_any_years": rng.uniform(0.5, 10, n),
        }
    )


def test_valid_cohort_has_no_problems():
    assert validate_cohort(_cohort()) == []


def test_each_problem_gets_one_line_and_no_row_is_dropped():
    bad = _cohort().drop(columns="cohort")
    bad["sex"] = bad["sex"].astype(object)
    bad.loc[3, "sex"] = "X"
    bad.loc[5, "participant_id"] = bad.loc[4, "participant_id"]
    bad.loc[7, "fracture_any_years"] = 0.0
    bad.loc[8, ["fracture_any", "fracture_any_years"]] = [1, np.nan]
    bad.loc[9, "tscore_lumbar"] = 12.0
    bad.loc[10, "diabetes"] = 2
    before = bad.copy()
    problems = validate_cohort(bad, raise_on_error=False)
    pd.testing.assert_frame_equal(bad, before)
    assert len(problems) == 7, problems
    text = "\n".join(problems)
    for needle in (
        "missing required column 'cohort'",
        "participant_id: 1 id(s) appear more than once",
        "sex: 1 row(s) with unknown code(s) 'X' (row 4)",
        "fracture_any_years: 1 row(s) with zero or negative",
        "fracture_any: 1 event(s) without a time",
        "tscore_lumbar: 1 value(s) out of range",
        "diabetes: 1 value(s) not 0/1: 2 (row 11)",
    ):
        assert needle in text
    assert all("\n" not in p for p in problems)
    with pytest.raises(ValidationError) as err:
        validate_cohort(bad)
    assert err.value.problems == problems and isinstance(err.value, UserError)


def test_example_mapping_renames_and_recodes():
    m = load_mapping(EXAMPLE)
    raw = pd.DataFrame(
        {
            "PATIENT_NO": ["007", "008"],
            "AGE": [61, 70],
            "GENDER": [1, 2],
            "PRED_AGE": [63.0, 68.5],
            "HT": [1.60, 1.55],
            "WT": [60, 50],
            "DM": ["Y", "N"],
            "PREV_VFX": ["no", "yes"],
            "FN_T": [-2.6, -1.0],
            "LS_T": [-1.0, None],
            "FX": ["N", "Y"],
            "FX_YRS": [3.0, 2.5],
        }
    )
    d = read_table(raw, mapping=m)
    assert list(d["sex"]) == ["M", "F"] and list(d["diabetes"]) == [1, 0] and list(d["prevalent_vf"]) == [0, 1]
    assert list(d["cohort"]) == ["external"] * 2 and list(d["participant_id"]) == ["007", "008"]
    np.testing.assert_allclose(d["height_cm"], [160.0, 155.0])
    assert validate_cohort(d) == []


def test_unmatched_codes_are_kept_for_validation_to_report():
    d = apply_mapping(pd.DataFrame({"sex": [1, 2, 9]}), {"values": {"sex": {"1": "M", "2": "F"}}})
    assert list(d["sex"]) == ["M", "F", 9]


def test_bad_mapping_files_are_user_errors(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text("[columns\nA = 'b'")
    with pytest.raises(UserError, match="not valid TOML"):
        load_mapping(p)
    p.write_text("[colums]\nA = 'age_years'\n")
    with pytest.raises(UserError, match="unknown section"):
        load_mapping(p)
    p.write_text("[binary_values]\nY = 2\n")
    with pytest.raises(UserError, match="0 or 1"):
        load_mapping(p)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "duckdb"])
def test_read_table_formats_keep_ids_as_text(tmp_path, fmt):
    df = _cohort(10)
    path = tmp_path / f"c.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        with duckdb.connect(str(path)) as con:
            con.register("df", df)
            con.execute("CREATE TABLE cohort AS SELECT * FROM df")
    got = read_table(path)
    assert list(got["participant_id"]) == list(df["participant_id"])
    np.testing.assert_allclose(got["age_years"], df["age_years"])
    if fmt == "duckdb":
        with pytest.raises(UserError, match="no table 'other'"):
            read_table(path, table="other")


def test_read_table_missing_and_unsupported_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UserError, match="unsupported"):
        read_table(tmp_path / "x.xlsx")


def test_derive_pad_osteoporosis_bmi_and_scalings():
    df = _cohort()
    df.loc[0, ["tscore_lumbar", "tscore_femoral_neck"]] = [np.nan, np.nan]
    df.loc[1, ["tscore_lumbar", "tscore_femoral_neck"]] = [-2.5, 0.0]
    df.loc[2, ["tscore_lumbar", "tscore_femoral_neck"]] = [-2.49, np.nan]
    d = derive_variables(df)
    assert len(d) == len(df)
    np.testing.assert_allclose(d["pad_years"], df["spine_age_years"] - df["age_years"])
    assert pd.isna(d.loc[0, "osteoporosis"]) and d.loc[1, "osteoporosis"] == 1 and d.loc[2, "osteoporosis"] == 0
    np.testing.assert_allclose(d["bmi"], df["weight_kg"] / (df["height_cm"] / 100) ** 2)
    np.testing.assert_allclose(d["height_dec5_cm"], -df["height_cm"] / 5)
    for _, g in d.groupby("cohort"):
        fn = df.loc[g.index, "tscore_femoral_neck"]
        np.testing.assert_allclose(g["fn_tscore_dec"], -(fn - fn.mean()) / fn.std(ddof=1))
        cr = df.loc[g.index, "creatinine_mg_dl"]
        np.testing.assert_allclose(g["creatinine_inc"], (cr - cr.mean()) / cr.std(ddof=1))
        np.testing.assert_allclose(g["pad_z"].std(ddof=1), 1.0)
    assert "hemoglobin_dec" not in d.columns


def test_corrected_pad_is_chosen_per_cohort_and_bias_parameters_apply():
    df = _cohort()
    df["spine_age_corrected_years"] = np.where(df["cohort"] == "external", df["spine_age_years"] - 1.0, np.nan)
    auto = derive_variables(df)
    ext = auto["cohort"] == "external"
    assert auto.loc[ext, "pad_corrected"].all() and not auto.loc[~ext, "pad_corrected"].any()
    np.testing.assert_allclose(
        auto.loc[ext, "pad_years"], df.loc[ext, "spine_age_years"] - 1 - df.loc[ext, "age_years"]
    )
    raw = derive_variables(df, corrected=False)
    np.testing.assert_allclose(raw["pad_years"], df["spine_age_years"] - df["age_years"])
    with pytest.raises(UserError):
        derive_variables(df.drop(columns="spine_age_corrected_years"), corrected=True)
    b = derive_variables(df, bias=(0.5, -30.0), corrected=True)
    np.testing.assert_allclose(b["spine_age_corrected_years"], df["spine_age_years"] - (0.5 * df["age_years"] - 30.0))


def test_csv_with_mapping_file_keeps_mapped_ids_as_text(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("PATIENT_NO,AGE,GENDER,FX,FX_YRS\n00017,61,1,Y,2.5\n00018,70,2,N,4\n")
    with pytest.warns(UserWarning, match="not in the table"):
        d = read_table(csv, mapping=str(EXAMPLE))
    assert list(d["participant_id"]) == ["00017", "00018"]
    assert list(d["sex"]) == ["M", "F"] and list(d["fracture_any"]) == [1, 0]
    assert validate_cohort(d) == []
