"""The competing-risk hazard ratios (Fine-Gray beside cause-specific and ordinary Cox), Gray's test and the
multiple-imputation sensitivity section (issue 15): the report's numbers equal direct ``epi_spineage.stats``
calls, the config switches work, a fit the data cannot support shows a note, and nothing is left out silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage import stats
from epi_spineage.errors import UserError
from epi_spineage.report import steps
from epi_spineage.report.analyses import run_study
from epi_spineage.report.config import StudyConfig, config_from_dict
from epi_spineage.schema import OUTCOMES, PAD_COLUMN

RTOL = 1e-10


@pytest.fixture(scope="module")
def small_inputs():
    from epi_spineage.report import demo_study

    return demo_study(5, 700, 400)


def _cr(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    (fe, ft), (de, dt) = OUTCOMES[outcome], OUTCOMES["death"]
    cr = stats.competing_event_type(frame, fracture=fe, death=de, fracture_time=ft, death_time=dt)
    return cr[cr["cr_event"].notna()].dropna(subset=[PAD_COLUMN, "age_years", "sex"])


def test_competing_hazard_ratios_equal_direct_stats_calls(built_report):
    res = built_report.results
    cfg = res.config
    hr = res.competing.hazard_ratios
    covs = list(next(iter(cfg.fracture_models.values())))
    assert set(hr["estimator"]) == {steps.FINE_GRAY, steps.CAUSE_SPECIFIC, steps.ORDINARY_COX}
    assert set(hr["outcome"]) == set(cfg.fracture_outcomes) and set(hr["cohort"]) == set(res.cohorts)
    for (role, outcome), blk in hr.groupby(["cohort", "outcome"]):
        df = res.cohorts[role].frame
        sd = float(df[PAD_COLUMN].std(ddof=1))
        cr = _cr(df, outcome)
        fg = stats.fine_gray(cr, "cr_years", "cr_event", PAD_COLUMN, covs, sd=sd).summary.iloc[0]
        cs = stats.cause_specific_cox(cr, "cr_years", "cr_event", PAD_COLUMN, covs, sd=sd).summary.iloc[0]
        got = blk.set_index("estimator")
        for est, ref in ((steps.FINE_GRAY, fg), (steps.CAUSE_SPECIFIC, cs)):
            for col in ("estimate", "ci_low", "ci_high", "p_value"):
                assert got.loc[est, col] == pytest.approx(ref[col], rel=RTOL), (role, outcome, est, col)
        assert got.loc[steps.FINE_GRAY, "n_competing"] == int((cr["cr_event"] == 2).sum()) > 0
        assert got.loc[steps.FINE_GRAY, "events"] == int((cr["cr_event"] == 1).sum())
        # fracture follow-up ends at death in the simulator, so the ordinary Cox is the cause-specific one
        assert got.loc[steps.ORDINARY_COX, "estimate"] == pytest.approx(cs["estimate"], rel=1e-9)
    # the published (results.json) numbers are the same
    j = built_report.payload["numbers"]["competing_hr_per_sd"]
    row = hr[(hr["cohort"] == "external") & (hr["estimator"] == steps.FINE_GRAY)].iloc[0]
    assert j["external"][row["outcome"]][steps.FINE_GRAY]["estimate"] == pytest.approx(row["estimate"], rel=1e-12)


def test_gray_test_beside_the_curves(built_report):
    res = built_report.results
    g = res.competing.gray
    assert set(g["cohort"]) == set(res.cohorts)
    for _, r in g.iterrows():
        df = res.cohorts[r["cohort"]].frame
        cr = _cr(df, res.config.km_outcome)
        cr = cr[cr["accelerated"].notna()].assign(
            acceleration=lambda d: d["accelerated"].map({1.0: "accelerated", 0.0: "not accelerated"})
        )
        ref = stats.gray_test(cr, "cr_years", "cr_event", group="acceleration", cause=1).iloc[0]
        assert r["p_value"] == pytest.approx(ref["p_value"], rel=RTOL)
        assert r["statistic"] == pytest.approx(ref["statistic"], rel=RTOL)
    text = built_report.index.read_text(encoding="utf-8")
    assert (
        "Gray&#39;s test of equal cumulative incidence" in text or "Gray's test of equal cumulative incidence" in text
    )
    for phrase in ("in the presence of death", "among participants still alive", "treats death as censoring"):
        assert phrase in text


def test_mi_pooled_estimate_equals_direct_impute_and_pool(built_report):
    res = built_report.results
    cfg = res.config
    comp = res.imputation.comparison
    mi_rows = comp[(comp["analysis"] == steps.MI_ANALYSIS) & comp["estimate"].notna()]
    assert len(mi_rows), "the demo's derivation cohort has missing osteoporosis: model 3 is imputed"
    row = mi_rows.iloc[0]
    role, outcome, model = row["cohort"], row["outcome"], row["model"]
    df = res.cohorts[role].frame
    covs = cfg.fracture_models[model] if row["family"] == "fracture" else cfg.mortality_models[model]
    # the step imputes once per cohort for every model it refits: here model 3 of every outcome it can estimate
    imputed = comp[(comp["cohort"] == role) & (comp["analysis"] == steps.MI_ANALYSIS) & comp["n"].notna()]
    columns = list(dict.fromkeys([PAD_COLUMN, *covs]))
    outcomes = list(dict.fromkeys(imputed["outcome"]))
    assert set(imputed["model"]) == {model}
    mi = stats.impute_mice(
        df[[*columns, *[OUTCOMES[o][1] for o in outcomes], *[OUTCOMES[o][0] for o in outcomes]]],
        columns,
        time=[OUTCOMES[o][1] for o in outcomes],
        event=[OUTCOMES[o][0] for o in outcomes],
        m=cfg.mi_imputations,
        n_iter=cfg.mi_iterations,
        seed=cfg.mi_seed,
    )
    ref = stats.mi_cox_per_sd(
        mi, OUTCOMES[outcome][1], OUTCOMES[outcome][0], PAD_COLUMN, covs, sd=float(df[PAD_COLUMN].std(ddof=1))
    ).iloc[0]
    for col in ("estimate", "ci_low", "ci_high", "p_value", "fmi", "df", "dfcom"):
        assert row[col] == pytest.approx(ref[col], rel=RTOL), col
    assert row["n"] == len(df) and row["m"] == cfg.mi_imputations
    # the complete-case row beside it is the Cox section's own fit
    cc = comp[(comp["cohort"] == role) & (comp["outcome"] == outcome) & (comp["model"] == model)]
    cc = cc[cc["analysis"] == steps.CC_ANALYSIS].iloc[0]
    hr = res.cox_fracture.hr_per_sd[role][outcome][model]
    assert cc["estimate"] == hr["estimate"] and cc["n"] == hr["n"] < row["n"]
    # number and share imputed per variable
    miss = res.imputation.missing
    osteo = miss[(miss["cohort"] == role) & (miss["variable"] == "osteoporosis")].iloc[0]
    assert osteo["n_missing"] == int(df["osteoporosis"].isna().sum()) > 0
    assert osteo["share_missing"] == pytest.approx(df["osteoporosis"].isna().mean())


def test_mi_is_reproducible_with_the_same_seed(built_report):
    res = built_report.results
    again = steps.multiple_imputation(res)
    pd.testing.assert_frame_equal(again.comparison, res.imputation.comparison)


def test_nothing_missing_says_so_in_one_line(built_report):
    res = built_report.results
    assert "external" in res.imputation.nothing_missing  # the simulator's external cohort is complete
    text = built_report.index.read_text(encoding="utf-8")
    assert "External: no missing value in PAD or any covariate of the models, so nothing to impute" in text
    ids = [t.name for t in _shown_tables(built_report)]
    for name in ("competing_risk_hazard_ratios", "competing_risk_gray", "mi_comparison", "mi_missing"):
        assert name in ids  # so the label tests of test_report_exports read these tables too


def _shown_tables(built_report):
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.names = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "figure" and "table-block" in (a.get("class") or ""):
                self.names.append(type("T", (), {"name": a["id"][4:]}))

    p = P()
    p.feed(built_report.index.read_text(encoding="utf-8"))
    return p.names


def _text(res, tmp_path) -> str:
    """The competing-risk regression and MI parts of the report as the reader sees them (no figures drawn)."""
    from epi_spineage.report.document import _competing_hrs, _Doc, _gray
    from epi_spineage.report.document_extra import imputation_section

    d = _Doc(res, tmp_path, svg=False)
    s = d.section("competing", "Competing risk of death")
    _gray(d, s, res.competing)
    _competing_hrs(d, s, res.competing)
    imputation_section(d)
    parts = []
    for sec in d.sections:
        parts += sec.paragraphs + sec.bullets
        for t in sec.tables:
            parts += [" ".join(map(str, r)) for r in (t.display if t.display is not None else t.frame).values]
    return "\n".join(parts)


def test_switches_off(small_inputs, tmp_path):
    der, ext, _ = small_inputs
    cfg = StudyConfig(fine_gray=False, multiple_imputation=False)
    res = run_study(der, ext, cfg)
    # Fine-Gray off: the cause-specific and ordinary Cox HRs and the curves stay
    assert set(res.competing.hazard_ratios["estimator"]) == {steps.CAUSE_SPECIFIC, steps.ORDINARY_COX}
    assert len(res.competing.cuminc) and len(res.competing.gray)
    assert not res.imputation.enabled and not len(res.imputation.comparison)
    text = _text(res, tmp_path)
    assert "fine_gray = false" in text and "multiple_imputation = false" in text
    assert "mi_comparison" not in res.tables and "competing_risk_hazard_ratios" in res.tables


def test_not_estimable_fits_are_null_with_a_note(small_inputs, tmp_path):
    der, ext, _ = small_inputs
    cfg = StudyConfig(min_events_per_parameter=1000.0, mi_imputations=2, mi_iterations=1)
    res = run_study(der, ext, cfg)
    hr = res.competing.hazard_ratios
    assert len(hr) and hr["estimate"].isna().all() and hr["ci_low"].isna().all()
    assert hr["note"].str.startswith("not estimable").all()
    mi = res.imputation.comparison
    assert len(mi) and mi["estimate"].isna().all()
    assert mi.loc[mi["analysis"] == steps.MI_ANALYSIS, "note"].str.contains("not imputed|no missing").all()
    text = _text(res, tmp_path)
    assert text.count("not estimable (") >= len(hr) // 3 * 3


def test_one_model_failing_keeps_the_others(small_inputs, monkeypatch):
    """A Fine-Gray fit that raises a data error is recorded where it happened; the Cox HRs beside it stay."""
    der, ext, _ = small_inputs

    def refuse(*a, **k):
        raise UserError("no events with cr_event == 1 among the analysed rows")

    monkeypatch.setattr(stats, "fine_gray", refuse)
    res = run_study(der, ext, StudyConfig(multiple_imputation=False))
    hr = res.competing.hazard_ratios
    assert steps.FINE_GRAY not in set(hr["estimator"]) and steps.CAUSE_SPECIFIC in set(hr["estimator"])
    assert any("Fine-Gray subdistribution HR: not estimated (no events" in w for w in res.warnings)


def test_large_cohorts_get_fewer_imputed_sets_and_say_so():
    cfg = StudyConfig()
    assert steps.mi_sets(cfg, 20_000) == 20 and steps.mi_sets(cfg, 20_001) == 5
    assert steps.mi_sets(StudyConfig(mi_imputations_large=20), 10**6) == 20
    assert steps.mi_sets(StudyConfig(mi_imputations=3), 10**6) == 3


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"fine_gray": "yes"}, "fine_gray"),
        ({"multiple_imputation": 1}, "multiple_imputation"),
        ({"mi_imputations": 1}, "mi_imputations"),
        ({"mi_iterations": 0}, "mi_iterations"),
        ({"mi_seed": -1}, "mi_seed"),
        ({"mi_imputation": 5}, "mi_imputation"),
    ],
)
def test_sensitivity_config_keys(body, word):
    with pytest.raises(UserError, match=word):
        config_from_dict({"sensitivity": body})
    cfg = config_from_dict({"sensitivity": {"fine_gray": False, "mi_imputations": 5, "mi_seed": 7}})
    assert (cfg.fine_gray, cfg.multiple_imputation, cfg.mi_imputations, cfg.mi_seed) == (False, True, 5, 7)
    assert np.isfinite(StudyConfig().mi_seed)
