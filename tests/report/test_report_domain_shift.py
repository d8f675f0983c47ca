"""Domain shift in the report: planted scanner offsets are found by the scoring-QC shift test, a per-manufacturer
correction fitted on a named calibration set (cohort bias-fit) removes them, the report reads the same corrected
values as v_cohort_scores, states which correction it used, and refuses a calibration set it analyses."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from epi_spineage.cli.cohort import main as cohort_main
from epi_spineage.errors import UserError
from epi_spineage.privacy import pseudonymise
from epi_spineage.report.config import config_from_dict
from epi_spineage.report.inputs import load_inputs
from epi_spineage.report.scoring_qc import scoring_qc
from epi_spineage.synth.cohort import EXTERNAL, ManufacturerShift, simulate_cohort

from .conftest import N_EXTERNAL, SEED, write_scored_db

SHIFT = ManufacturerShift(score_offsets_years={"PHANTOMRAD (SYNTHETIC)": 3.0, "ACME IMAGING (SYNTHETIC)": -2.5})


@pytest.fixture(scope="module")
def shifted_db(tmp_path_factory):
    """External participants scored with planted scanner offsets; half of them form the cohort
    'external_calibration' (the calibration set), the other half the analysed external cohort."""
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(2)]
    df, _ = simulate_cohort(EXTERNAL, 2 * N_EXTERNAL, rngs[0], manufacturers=SHIFT, manufacturer_rng=rngs[1])
    df["participant_id"] = df["participant_id"].map(lambda v: pseudonymise(v, b"domain-shift-test-key-0123"))
    df.loc[np.random.default_rng(1).random(len(df)) < 0.5, "cohort"] = "external_calibration"
    cohort = df.drop(columns="manufacturer").assign(spine_age_years=np.nan, spine_age_corrected_years=np.nan)
    db = tmp_path_factory.mktemp("shift") / "scores.duckdb"
    write_scored_db(
        db,
        cohort,
        keys=df["participant_id"].to_numpy(),
        spine_ages=df["spine_age_years"].to_numpy(),
        modalities=df["modality"].to_numpy(),
        manufacturers=df["manufacturer"].to_numpy(),
    )
    return db, df


def _config(**bias):
    return config_from_dict({"bias": bias})


def _inputs(db, config):
    return load_inputs(cohort=None, mapping=None, db=str(db), config=config, seed=0, n_derivation=0, n_external=0)


def test_shift_found_then_removed_and_the_report_applies_the_views_correction(
    shifted_db, capsys, built_report, tmp_path
):
    db, df = shifted_db
    assert (
        cohort_main(["bias-fit", "--db", str(db), "--calibration-set", "external_calibration", "--min-images", "30"])
        == 0
    )
    out = capsys.readouterr().out
    assert "calibration set external_calibration" in out and "PHANTOMRAD (SYNTHETIC)" in out
    config = _config(correction="per_manufacturer", calibration_set="external_calibration")
    inputs = _inputs(db, config)
    with duckdb.connect(str(db), read_only=True) as con:
        view = con.execute("""
            SELECT participant_id, spine_age_corrected_by_manufacturer_years AS v, bias_correction_scope
            FROM v_cohort_scores WHERE cohort = 'external'""").df()
    got = inputs.external.set_index("participant_id")["spine_age_corrected_years"]
    np.testing.assert_allclose(got.loc[view["participant_id"]].to_numpy(), view["v"].to_numpy())
    assert set(view["bias_correction_scope"]) == {"manufacturer"}
    # pooled (the default) reads the model's one line: here the identity
    pooled = _inputs(db, _config())
    ext = pooled.external
    np.testing.assert_allclose(ext["spine_age_corrected_years"], ext["spine_age_years"])

    qc = scoring_qc(str(db), bias_correction="per_manufacturer", bias_calibration_set="external_calibration")
    shift = qc.tables["qc_pad_shift"]
    f = shift[shift["test"] == "F"].set_index(["model_id", "pad"])["p_value"]
    assert f[("m1", "uncorrected PAD")] < 1e-6
    terms = shift[shift["test"] == "t"].set_index(["pad", "level"])["estimate"]
    raw, fixed = terms["uncorrected PAD"], terms["PAD after the per-manufacturer correction"]
    assert raw["PHANTOMRAD (SYNTHETIC)"] == pytest.approx(3.0, abs=0.7)
    assert raw["ACME IMAGING (SYNTHETIC)"] == pytest.approx(-2.5, abs=0.7)
    # What is left is the calibration lines' own error: its SE is about that of the estimate itself (the
    # calibration half is as large as the analysed one), so within 3 of their combined SEs
    # (benchmarks/domain_shift.py: its size over seeds).
    se = shift[shift["test"] == "t"].set_index(["pad", "level"])["std_error"]
    se = se["PAD after the per-manufacturer correction"]
    assert (fixed.abs() < 3 * np.sqrt(2) * se).all() and fixed.abs().max() < 0.5 * raw.abs().min()
    stat = shift[shift["test"] == "F"].set_index("pad")["statistic"]
    assert stat["PAD after the per-manufacturer correction"] < stat["uncorrected PAD"] / 10
    agr = qc.tables["qc_agreement"]
    assert set(agr["manufacturer"]) == set(SHIFT.shares) and agr["n"].sum() == len(df)
    assert qc.shift_readings[0].startswith("Model m1, uncorrected PAD: differs between manufacturers")
    assert qc.shift_readings[1].startswith("Model m1, PAD after the per-manufacturer correction: ")

    from epi_spineage.report.document import _bias_statement, _Doc
    from epi_spineage.report.document_extra import scoring_section
    from epi_spineage.report.render import render_html

    d = _Doc(None, tmp_path, svg=False)  # the scoring section alone: it reads no analysis results
    scoring_section(d, qc)
    meta = {"version": "test", "generated_utc": "", "source": "", "synthetic": True, "software": {}}
    html = render_html(d.sections, title="t", banner=None, meta=meta)
    assert "Bias correction used: per manufacturer, fitted on the calibration set external_calibration" in html
    assert "Agreement per model, manufacturer and modality" in html and "adjusting for age and sex" in html
    assert "per scanner manufacturer" in _bias_statement(config)  # the methods bullet
    assert _bias_statement(_config()).startswith("Bias correction used: pooled")


def test_the_report_refuses_a_calibration_set_it_analyses_or_does_not_find(shifted_db, tmp_path):
    db, _ = shifted_db
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    with pytest.raises(UserError, match="has no per-manufacturer lines|fitted on"):
        _inputs(copy, _config(correction="per_manufacturer", calibration_set="derivation:train"))
    assert cohort_main(["bias-fit", "--db", str(copy), "--calibration-set", "external"]) == 0  # the analysed one
    with pytest.raises(UserError, match="analysed participant"):
        _inputs(copy, _config(correction="per_manufacturer", calibration_set="external"))
    # too few calibration images for every manufacturer: all fall back to the pooled line, each with a warning
    assert cohort_main(["bias-fit", "--db", str(copy), "--calibration-set", "external_calibration",
                        "--min-images", "1000"]) == 0  # fmt: skip
    inputs = _inputs(copy, _config(correction="per_manufacturer", calibration_set="external_calibration"))
    fallbacks = [w for w in inputs.warnings if "fewer than 1000; the pooled correction is used" in w]
    assert len(fallbacks) == 3
    ext = inputs.external
    np.testing.assert_allclose(ext["spine_age_corrected_years"], ext["spine_age_years"])  # pooled = identity here
    with pytest.raises(UserError, match="needs --db"):
        load_inputs(
            cohort="x.csv", mapping=None, db=None, config=_config(correction="per_manufacturer", calibration_set="e"),
            seed=0, n_derivation=0, n_external=0,
        )  # fmt: skip
    with pytest.raises(UserError, match="needs calibration_set"):
        _config(correction="per_manufacturer")
    with pytest.raises(UserError, match="pooled, per_manufacturer"):
        _config(correction="by_scanner")
