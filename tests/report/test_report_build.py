"""The demo report builds and every number in results.json is what the stats layer gives directly."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pandas as pd
import pytest

from epi_spineage import stats
from epi_spineage.schema import SYNTHETIC_NOTICE

RTOL = 1e-9


def _records(payload, name) -> pd.DataFrame:
    return pd.DataFrame(payload["tables"][name])


def _close(a, b, rtol=RTOL):
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and not math.isfinite(b))
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)


def test_outputs_exist(built_report):
    out = built_report.out
    assert built_report.index == out / "index.html"
    for name in ("index.html", "results.json", "report.qmd"):
        assert (out / name).stat().st_size > 1000, name
    tables = built_report.payload["tables"]
    # every table in results.json has its CSV with the same number of rows, and vice versa
    csvs = {p.stem for p in (out / "tables").glob("*.csv")}
    assert csvs == set(tables)
    for name, records in tables.items():
        assert len(pd.read_csv(out / "tables" / f"{name}.csv")) == len(records), name
    for required in (
        "cohort_flow",
        "table1",
        "agreement_pearson",
        "discrimination",
        "tertile_cuts",
        "km_failure",
        "group_hazard_ratios",
        "cox_fracture",
        "cox_mortality",
        "incidence_rates",
        "c_index_fracture",
        "competing_risk",
        "subgroup_sex",
        "frax_nri",
        "frax_auroc",
        "age_gap_regression",
        "truth_vs_estimate",
        "data_quality",
    ):
        assert len(tables[required]) > 0, required
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    svgs = {p.stem for p in (out / "figures").glob("*.svg")}
    assert {"age_scatter", "roc", "km_four_groups", "forest_fracture", "competing_risk"} <= pngs
    assert pngs == svgs
    assert SYNTHETIC_NOTICE in html.unescape((out / "index.html").read_text())
    assert SYNTHETIC_NOTICE in (out / "report.qmd").read_text()


def test_results_json_is_strict_json(built_report):
    text = (built_report.out / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert built_report.payload["meta"]["synthetic"] is True
    assert built_report.payload["truth"]["synthetic"] is True


def test_cut_point_recomputed_independently(built_report):
    """Type-7 upper tertile of the derivation test set's PAD, from the raw input with numpy alone."""
    der = built_report.derivation_input
    test = der[der["split"] == "test"]
    pad = (test["spine_age_years"] - test["age_years"]).dropna().to_numpy()
    expected = np.quantile(np.round(pad, 9), 2 / 3, method="linear")
    cuts = _records(built_report.payload, "tertile_cuts")
    assert _close(cuts.loc[cuts["term"] == "tertile_2/3", "estimate"].iloc[0], expected)
    n_flow = _records(built_report.payload, "cohort_flow")
    analysed = n_flow[(n_flow["cohort"] == "derivation") & (n_flow["step"] == "analysed")]["n"].iloc[0]
    assert analysed == len(test)


def test_cox_tables_match_stats(built_report):
    res, payload = built_report.results, built_report.payload
    cox = _records(payload, "cox_fracture")
    cfg = res.config
    checked = not_estimable = 0
    for role in ("derivation", "external"):
        df = res.cohorts[role].frame
        sd = float(df["pad_years"].std(ddof=1))
        for outcome in ("fracture_any", "fracture_nonvertebral"):
            for model in ("model 1", "model 3"):
                direct = stats.cox_per_sd(
                    df, f"{outcome}_years", outcome, "pad_years", cfg.fracture_models[model], sd=sd
                ).summary
                got = cox[(cox["cohort"] == role) & (cox["outcome"] == outcome) & (cox["model"] == model)]
                assert list(got["term"]) == list(direct["term"])
                events = int(direct["events"].iloc[0])
                if events / len(direct) < cfg.min_events_per_parameter:
                    # the events-per-parameter rule (docs/methods.md#epv): numbers blanked, the reason noted
                    assert got["estimate"].isna().all() and got["note"].str.startswith("not estimable").all()
                    not_estimable += 1
                    continue
                assert got["note"].isna().all()
                for col in ("estimate", "std_error", "ci_low", "ci_high", "p_value", "n", "events"):
                    for a, b in zip(got[col], direct[col]):
                        assert _close(a, b), (role, outcome, model, col)
                checked += 1
    assert checked + not_estimable == 8 and checked >= 5
    mort = _records(payload, "cox_mortality")
    ext = res.cohorts["external"].frame
    direct = stats.cox_per_sd(ext, "death_years", "death", "pad_years", cfg.mortality_models["model 2"]).summary
    got = mort[(mort["cohort"] == "external") & (mort["model"] == "model 2")]
    assert np.allclose(got["estimate"].to_numpy(float), direct["estimate"].to_numpy(float), rtol=RTOL)


def test_discrimination_and_agreement_match_stats(built_report):
    res, payload = built_report.results, built_report.payload
    disc = _records(payload, "discrimination")
    for role in ("derivation", "external"):
        df = res.cohorts[role].frame
        for outcome in ("prevalent_vf", "osteoporosis"):
            y = pd.to_numeric(df[outcome], errors="coerce").astype(float)
            direct = stats.delong_test(y, df["age_years"] + df["pad_years"], df["age_years"]).to_frame()
            got = disc[(disc["cohort"] == role) & (disc["outcome"] == outcome)]
            assert np.allclose(got["estimate"].to_numpy(float), direct["estimate"].to_numpy(float), rtol=RTOL)
            assert _close(got["p_value"].iloc[2], direct["p_value"].iloc[2])
        r = stats.pearson(df["age_years"], df["spine_age_years"])
        got = _records(payload, "agreement_pearson")
        row = got[got["cohort"] == role].iloc[0]
        assert _close(row["estimate"], r.estimate) and _close(row["ci_low"], r.ci_low)
        assert _close(payload["numbers"]["pearson_r"][role], r.estimate)


def test_table1_km_rates_match_stats(built_report):
    res, payload = built_report.results, built_report.payload
    df = res.cohorts["external"].frame
    t1 = _records(payload, "table1")
    got = t1[t1["cohort"] == "external"]
    variables = list(dict.fromkeys(got["variable"]))
    direct = stats.table_one(df, by="fracture_any", variables=variables)
    assert np.allclose(got["p_value"].to_numpy(float), direct["p_value"].to_numpy(float), rtol=RTOL, equal_nan=True)
    assert np.allclose(got["mean"].to_numpy(float), direct["mean"].to_numpy(float), rtol=RTOL, equal_nan=True)

    km = _records(payload, "km_failure")
    sub = df[df["group"].notna()].assign(group=lambda d: d["group"].astype(str))
    times = [t for t in res.config.km_times_years if t <= sub["fracture_any_years"].max()]
    direct = stats.km_cumulative_failure(sub, "fracture_any_years", "fracture_any", group="group", times=times)
    got = km[km["cohort"] == "external"]
    assert np.allclose(got["estimate"].to_numpy(float), direct["estimate"].to_numpy(float), rtol=RTOL)
    assert list(got["n_at_risk"]) == list(direct["n_at_risk"])

    hr = _records(payload, "group_hazard_ratios")
    direct = stats.group_hazard_ratios(sub, "fracture_any_years", "fracture_any", "group", "younger, not accelerated")
    got = hr[hr["cohort"] == "external"]
    assert np.allclose(got["estimate"].to_numpy(float), direct["estimate"].to_numpy(float), rtol=RTOL)

    inc = _records(payload, "incidence_rates")
    got = inc[(inc["cohort"] == "external") & (inc["outcome"] == "death") & (inc["by"] == "all")]
    direct = stats.incidence_rates(df, "death_years", "death")
    assert _close(got["estimate"].iloc[0], direct["estimate"].iloc[0])
    assert _close(got["ci_high"].iloc[0], direct["ci_high"].iloc[0])


def test_frax_regression_subgroups_match_stats(built_report):
    res, payload = built_report.results, built_report.payload
    df = res.cohorts["derivation"].frame
    fr = stats.frax_reclassification(df, event="fracture_any")
    got = _records(payload, "frax_nri")
    got = got[got["cohort"] == "derivation"]
    assert np.allclose(got["estimate"].to_numpy(float), fr.nri["estimate"].to_numpy(float), rtol=RTOL)
    rec = _records(payload, "frax_reclassification")
    assert list(rec[rec["cohort"] == "derivation"]["up"]) == list(fr.reclassification["up"])

    reg = stats.age_gap_regression(df, "pad_years", res.config.regression_covariates)
    got = _records(payload, "age_gap_regression")
    got = got[got["cohort"] == "derivation"]
    assert np.allclose(got["estimate"].to_numpy(float), reg.coefficients["estimate"].to_numpy(float), rtol=RTOL)
    assert _close(got["adj_r2"].iloc[0], reg.adj_r2)

    sg = _records(payload, "subgroup_sex")
    got = sg[(sg["cohort"] == "derivation") & (sg["outcome"] == "fracture_any")]
    direct = stats.subgroup_hazard_ratios(
        df,
        "fracture_any_years",
        "fracture_any",
        "pad_years",
        by="sex",
        covariates=res.config.fracture_models["model 1"],
        sd=float(df["pad_years"].std(ddof=1)),
    )
    assert np.allclose(got["estimate"].to_numpy(float), direct["estimate"].to_numpy(float), rtol=RTOL)
    assert _close(got["p_interaction"].iloc[0], direct["p_interaction"].iloc[0])


def test_truth_is_recovered(built_report):
    """Most planted values fall inside the 95% CI (seeded; 12 comparisons, allow two misses)."""
    t = _records(built_report.payload, "truth_vs_estimate")
    covered = t["covered"].dropna()
    assert len(covered) >= 10
    assert covered.sum() >= len(covered) - 2
    hr = t[t["quantity"] == "hr_per_sd_fracture_any"]
    assert set(hr["cohort"]) == {"derivation", "external"}
    assert (hr["estimate"] > 1).all()
