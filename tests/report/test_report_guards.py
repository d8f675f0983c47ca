"""The report's guards (issue 11 items 4-10, report side): not estimable, dropped covariates, external-cohort
mortality contrast, PAD side by side, FRAX provenance and caveats, red QC warnings, --save-cutpoints."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from epi_spineage.report.analyses import run_study
from epi_spineage.report.config import StudyConfig
from epi_spineage.report.steps import dropped_label, mark_not_estimable


@pytest.fixture(scope="module")
def small_study():
    from epi_spineage.report import demo_study

    der, ext, truth = demo_study(5, 700, 400)
    return der, ext, truth


def _summary(n_terms: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "term": [f"x{i}" for i in range(n_terms)],
            "estimate": 1.5,
            "std_error": 0.1,
            "statistic": 4.0,
            "p_value": 0.01,
            "ci_low": 1.2,
            "ci_high": 1.8,
        }
    )


# ------------------------------------------------------------------------------ events per parameter
def test_events_per_parameter_rule_both_sides():
    # 5 parameters: 25 events (5 per parameter) is estimable, 24 (4.8 per parameter) is not
    ok = mark_not_estimable(_summary(5), 25, 5.0)
    assert ok["note"].isna().all() and (ok["estimate"] == 1.5).all()
    bad = mark_not_estimable(_summary(5), 24, 5.0)
    assert bad[["estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high"]].isna().all().all()
    assert bad["note"].str.contains("24 event\\(s\\) for 5 parameter\\(s\\)").all()
    # the rule off: only the infinite-CI check remains
    assert mark_not_estimable(_summary(5), 2, None)["note"].isna().all()


def test_infinite_ci_is_not_estimable_even_with_many_events():
    s = _summary(2)
    s.loc[1, "ci_high"] = np.inf
    out = mark_not_estimable(s, 1000, 5.0)
    assert out["note"].str.startswith("not estimable: infinite").all()


def test_a_note_from_stats_is_kept():
    s = _summary(2).assign(note=["not estimable: no convergence", None])
    s.loc[0, ["estimate", "ci_low", "ci_high"]] = np.nan
    out = mark_not_estimable(s, 1000, 5.0)
    assert out.loc[0, "note"] == "not estimable: no convergence" and out.loc[1, "estimate"] == 1.5


def test_not_estimable_cell_shows_the_reason_never_zeros():
    from epi_spineage.report.document import _ci

    row = mark_not_estimable(_summary(4), 3, 5.0).iloc[0]
    assert _ci(row).startswith("not estimable (3 event(s) for 4 parameter(s)")
    assert _ci(_summary(1).iloc[0]) == "1.50 (1.20-1.80)"


def test_three_events_ten_covariates_prints_not_estimable(small_study, tmp_path):
    """Issue 11 item 4: 3 events and 10 covariates gave '0.00 (0.00-0.00)'."""
    from epi_spineage.report.document import write_study_report

    der, ext, _ = small_study
    ext = ext.copy()
    ext["fracture_any"] = 0
    ext.loc[ext.index[:3], "fracture_any"] = 1
    res = run_study(None, ext, StudyConfig())
    summ = res.cox_fracture.summary
    blk = summ[(summ["outcome"] == "fracture_any")]
    assert len(blk) and blk["estimate"].isna().all()
    assert blk["note"].str.startswith("not estimable").all()
    html = write_study_report(tmp_path, res, config=res.config, synthetic=True, svg=False).read_text()
    assert "not estimable (" in html and "0.00 (0.00-0.00)" not in html
    assert res.to_json()["numbers"]["hr_per_sd_fracture"]["external"]["fracture_any"]["model 1"]["note"]


# ------------------------------------------------------------------------------ dropped covariates
def test_one_sex_drops_sex_and_says_so(small_study):
    der, ext, _ = small_study
    res = run_study(der.assign(sex="F"), ext.assign(sex="F"), StudyConfig())
    summ = res.cox_fracture.summary
    m1 = summ[(summ["model"] == "model 1") & (summ["cohort"] == "external")]
    assert not m1["term"].str.startswith("sex").any()
    assert m1["model_label"].str.contains("sex \\(one sex only\\)").all()
    assert res.cox_fracture.dropped[("external", "fracture_any", "model 1")] == ("sex",)
    q = res.data_quality
    assert q["detail"].str.contains("constant in the complete cases: sex").any()
    assert any("subgroups by sex" in w and "one sex only" in w for w in res.warnings)
    assert dropped_label("model 1", ("sex",)) == "model 1; dropped (constant in the complete cases): sex (one sex only)"


def test_constant_covariate_in_age_gap_regression_is_dropped_not_skipped(small_study):
    der, ext, _ = small_study
    res = run_study(der.assign(prosthesis=0), ext, StudyConfig())
    assert "age-gap regression" not in res.skipped
    assert "prosthesis" in res.age_gap.dropped["derivation"]
    reg = res.age_gap.table
    assert set(reg["cohort"]) == {"derivation", "external"}
    assert not ((reg["cohort"] == "derivation") & (reg["term"] == "prosthesis")).any()


def test_all_censored_deaths_give_a_reason_not_a_crash(small_study):
    der, ext, _ = small_study
    res = run_study(der.assign(death=0), ext.assign(death=0), StudyConfig())
    assert res.mortality is not None and not len(res.mortality.summary)
    assert any("mortality" in w and "no events" in w for w in res.warnings)


# ------------------------------------------------------------------------------ mortality, PAD, FRAX
def test_mortality_accelerated_is_external_and_adjusted(built_report):
    acc = built_report.results.mortality.accelerated
    assert set(acc["cohort"]) == {"external"}
    assert set(acc["adjustment"]) == {"unadjusted", "age- and sex-adjusted"}
    html = built_report.index.read_text()
    assert "age- and sex-adjusted" in html


def test_mortality_adjusted_hr_equals_stats(built_report):
    from epi_spineage import stats

    ext = built_report.results.cohorts["external"].frame
    sub = ext[ext["accelerated"].notna()].assign(
        acceleration=lambda d: d["accelerated"].map({1.0: "accelerated", 0.0: "not accelerated"})
    )
    direct = stats.group_hazard_ratios(
        sub, "death_years", "death", "acceleration", "not accelerated", covariates=["age_years", "sex"]
    )
    acc = built_report.results.mortality.accelerated
    got = acc[(acc["adjustment"] == "age- and sex-adjusted") & (acc["group"] == "accelerated")]
    assert np.isclose(got["estimate"].iloc[0], direct.loc[direct["group"] == "accelerated", "estimate"].iloc[0])


def test_uncorrected_and_corrected_pad_side_by_side(built_report):
    res = built_report.results
    ps = res.agreement.pad_summary
    ext = ps[ps["cohort"] == "external"]
    assert set(ext["pad"]) == {"corrected", "uncorrected"} and ext["analysed"].sum() == 1
    side = res.cox_fracture.pad_side_by_side
    assert set(side[side["cohort"] == "external"]["pad"]) == {"corrected", "uncorrected"}
    assert "cox_fracture_pad_side_by_side" in built_report.payload["tables"]


def test_km_axis_and_pointer_to_competing_risk(built_report):
    from epi_spineage.report.document import KM_AXIS_LABEL

    assert KM_AXIS_LABEL == "cumulative incidence (1 - KM, deaths censored)"
    assert "see the competing-risk section" in built_report.index.read_text()


def test_frax_source_is_the_surrogate_and_never_the_official_tool(built_report):
    html = built_report.index.read_text()
    assert "frax_surrogate_v1" in html
    assert "official tool" not in html
    assert "Partial follow-up" in html and "exploratory" in html


def test_frax_mof_auroc_for_hip_fracture(built_report):
    au = built_report.results.frax.auroc
    hip = au[(au["outcome"] == "fracture_hip") & au["term"].str.contains("MOF")]
    assert len(hip) >= 3  # both AUROCs and the difference, per cohort with hip fractures


def test_frax_source_from_a_user_column(small_study):
    from epi_spineage.report.document import _Doc
    from epi_spineage.report.document_extra import frax_source_text

    der, ext, _ = small_study
    res = run_study(der, ext.assign(frax_source="FRAXplus bulk, Korea, without BMD"), StudyConfig())
    text = frax_source_text(_Doc(res, None, False))
    assert "FRAXplus bulk, Korea, without BMD" in text
    res.frax.source = {}
    assert "does not say how they were computed" in frax_source_text(_Doc(res, None, False))


def test_subgroup_p_values_marked_exploratory_with_the_number_of_tests(built_report):
    assert "interaction tests, not adjusted for multiplicity" in built_report.index.read_text()


# ------------------------------------------------------------------------------ scoring QC, cut points
def test_scoring_warnings_render_red(built_report, tmp_path):
    from epi_spineage.report.document import write_study_report
    from epi_spineage.report.scoring_qc import ScoringQC

    qc = ScoringQC()
    qc.weak_models = ["m-weak"]
    qc.flat_runs = pd.DataFrame({"run_id": ["r1"], "model_id": ["m-weak"], "n": [12], "sd_years": [0.0]})
    qc.raw_paths_stored = True
    res = built_report.results
    html = write_study_report(tmp_path, res, config=res.config, synthetic=True, qc=qc, svg=False).read_text()
    assert html.count('class="qc-warning"') == 2  # scoring and data-quality sections
    assert "m-weak" in html and "near-zero spread" in html and "--store-paths" in html
    plain = write_study_report(tmp_path / "p", res, config=res.config, synthetic=True, qc=ScoringQC(), svg=False)
    assert 'class="qc-warning"' not in plain.read_text()


def test_save_cutpoints_writes_the_learned_cut(small_study, tmp_path, monkeypatch):
    from epi_spineage.report import save_learned_cutpoint

    calls = []
    stand_in = types.ModuleType("epi_spineage.db.cutpoints")
    stand_in.save_cutpoint = lambda db_path, **kw: calls.append((db_path, kw))
    monkeypatch.setitem(sys.modules, "epi_spineage.db.cutpoints", stand_in)
    der, ext, _ = small_study
    res = run_study(der, ext, StudyConfig())
    line = save_learned_cutpoint("x.duckdb", res)
    ((db, kw),) = calls
    assert db == "x.duckdb" and kw["name"] == "pad_tertile_years" and kw["cut_rule"] == ">="
    assert kw["value_years"] == pytest.approx(res.groups.cut_years) and kw["source_cohort"] == "derivation"
    assert "pad_tertile_years" in line


def test_save_cutpoints_needs_db(capsys):
    from epi_spineage.cli.report import main

    assert main(["--save-cutpoints", "--out", "/nonexistent"]) == 2
    assert "--save-cutpoints needs --db" in capsys.readouterr().err
