"""The analyses of the study, one function each, in the study's order (``STEPS``).

Each step reads the prepared cohorts from ``StudyResults`` and writes tidy tables (``results.tables``),
plot data (``results.curves``) and headline numbers (``results.numbers``). Every stats call is the
public ``epi_spineage.stats`` function with the conventions of ``StudyConfig``; the tests call the
same functions directly and compare.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from epi_spineage import stats
from epi_spineage.report.analyses import (
    ACCEL_COLUMN, AGE_PREDICTOR, GROUP_COLUMN, ROC_OUTCOMES, SPINE_PREDICTOR, StudyResults, _concat, _tag,
    has_outcome,
)
from epi_spineage.schema import OUTCOMES, PAD_COLUMN
from epi_spineage.stats.grouping import REFERENCE_GROUP

SPINE_USED = "spine_age_used_years"


def _cut_rule(results: StudyResults) -> str:
    return results.config.accelerated_rule


# ---------------------------------------------------------------------------------- Table 1
def table1(results: StudyResults) -> None:
    cfg = results.config
    frames = []
    for role, c in results.cohorts.items():
        df = c.frame
        by = OUTCOMES[cfg.km_outcome][0]
        if by not in df.columns:
            continue
        variables = [v for v in cfg.table1_variables if v in df.columns and df[v].notna().any()]
        frames.append(_tag(stats.table_one(df, by=by, variables=variables), cohort=role, by=by))
    results.tables["table1"] = _concat(frames)


# ---------------------------------------------------------------------------------- agreement
def agreement(results: StudyResults) -> None:
    level = results.config.ci_level
    rows, summaries = [], []
    for role, c in results.cohorts.items():
        df = c.frame
        df[SPINE_USED] = df["age_years"] + df[PAD_COLUMN]
        r = stats.pearson(df["age_years"], df["spine_age_years"], ci_level=level,
                          term="chronological age ~ spine age (uncorrected)")
        rows.append(_tag(r.to_frame(), cohort=role))
        summaries.append(_tag(stats.pad_summary(df, pad=PAD_COLUMN, ci_level=level), cohort=role,
                              pad=c.pad_kind))
        results.numbers.setdefault("pearson_r", {})[role] = r.estimate
        results.numbers.setdefault("pad_mean_years", {})[role] = float(df[PAD_COLUMN].mean())
        results.numbers.setdefault("pad_sd_years", {})[role] = float(df[PAD_COLUMN].std(ddof=1))
        results.numbers.setdefault("n_analysed", {})[role] = c.n
        results.numbers.setdefault("pad_used", {})[role] = c.pad_kind
        step = max(1, len(df) // 20000)  # plot data: a thinned copy is enough for a scatter
        results.curves[f"scatter_{role}"] = df[["age_years", "spine_age_years"]].iloc[::step].reset_index(drop=True)
    results.tables["agreement_pearson"] = _concat(rows)
    results.tables["pad_summary"] = _concat(summaries)


# ---------------------------------------------------------------------------------- discrimination
def discrimination(results: StudyResults) -> None:
    """AUROC of spine age vs chronological age for prevalent VF and osteoporosis, paired DeLong."""
    level = results.config.ci_level
    frames, curves = [], []
    for role, c in results.cohorts.items():
        df = c.frame
        spine = df["age_years"] + df[PAD_COLUMN]
        for outcome in ROC_OUTCOMES:
            if outcome not in df.columns or df[outcome].nunique(dropna=True) < 2:
                continue
            y = pd.to_numeric(df[outcome], errors="coerce").astype(float)
            res = stats.delong_test(y, spine, df["age_years"], names=(SPINE_PREDICTOR, AGE_PREDICTOR), ci_level=level)
            frames.append(_tag(res.to_frame(), cohort=role, outcome=outcome))
            results.numbers.setdefault("auroc", {}).setdefault(role, {})[outcome] = {
                SPINE_PREDICTOR: res.auc_a.estimate, AGE_PREDICTOR: res.auc_b.estimate, "p_delong": res.p_value}
            for pred, score in ((SPINE_PREDICTOR, spine), (AGE_PREDICTOR, df["age_years"])):
                roc = stats.roc_curve(y, score)
                curves.append(_tag(roc[["fpr", "sensitivity"]].rename(columns={"sensitivity": "tpr"}),
                                   cohort=role, outcome=outcome, predictor=pred))
    results.tables["discrimination"] = _concat(frames)
    results.curves["roc"] = _concat(curves)


# ---------------------------------------------------------------------------------- groups and KM
def _cut_source(cfg, ref_role: str, ref) -> str:
    """Where the accelerated-ageing cut came from, in words, for every place the report states it."""
    if cfg.fixed_cut_years is not None:
        return "a fixed cut set in the study config"
    what = f"top tertile (quantile {cfg.tertile_method})"
    if ref_role != "derivation":
        return f"{what} of the {ref_role} cohort itself (there is no derivation cohort to learn it on)"
    split = cfg.derivation_split
    if split and "split" in ref.columns and len(ref) and (ref["split"] == split).all():
        return f"{what} of the derivation {split} set, applied unchanged to the other cohorts"
    return (f"{what} of all derivation rows (no '{split}' split to learn it on), applied unchanged to the "
            "other cohorts")


def groups_km(results: StudyResults) -> None:
    """Tertile cut from the derivation (test) set, applied to every cohort; four groups; KM; HRs."""
    cfg = results.config
    ref_role = "derivation" if "derivation" in results.cohorts else next(iter(results.cohorts))
    ref = results.cohorts[ref_role].frame
    if cfg.fixed_cut_years is not None:
        cut = stats.TertileCuts(float("nan"), float(cfg.fixed_cut_years), "fixed", 0, "config")
    else:
        cut = stats.tertile_cuts(ref[PAD_COLUMN], method=cfg.tertile_method,
                                 source=f"{ref_role} {cfg.derivation_split}".strip())
    results.tables["tertile_cuts"] = cut.to_frame()
    results.numbers["accelerated_cut_years"] = cut.upper
    results.numbers["accelerated_cut_source"] = _cut_source(cfg, ref_role, ref)
    results.numbers["accelerated_rule"] = f"PAD {cfg.accelerated_rule} cut"
    event, time_col = OUTCOMES[cfg.km_outcome]
    km_at, km_full, lr, hrs, counts = [], [], [], [], []
    for role, c in results.cohorts.items():
        df = c.frame
        median_age = float(df["age_years"].median())
        results.numbers.setdefault("median_age_years", {})[role] = median_age
        df[GROUP_COLUMN] = stats.four_groups(df, age_median=median_age, cut=cut, cut_rule=_cut_rule(results))
        df[ACCEL_COLUMN] = stats.accelerated(df[PAD_COLUMN], cut, cut_rule=_cut_rule(results)).astype("float")
        cnt = df[GROUP_COLUMN].value_counts(sort=False).rename_axis("group").reset_index(name="n")
        counts.append(_tag(cnt, cohort=role, median_age_years=median_age))
        if not has_outcome(df, cfg.km_outcome):
            continue
        sub = df[df[GROUP_COLUMN].notna()].copy()
        sub[GROUP_COLUMN] = sub[GROUP_COLUMN].astype(str)
        tmax = float(sub[time_col].max())
        times = [t for t in cfg.km_times_years if t <= tmax]
        km_at.append(_tag(stats.km_cumulative_failure(sub, time_col, event, group=GROUP_COLUMN, times=times,
                                                      ci=cfg.km_ci, ci_level=cfg.ci_level), cohort=role,
                          outcome=cfg.km_outcome))
        km_full.append(_tag(stats.km_curves(sub, time_col, event, group=GROUP_COLUMN, ci=cfg.km_ci,
                                            ci_level=cfg.ci_level), cohort=role, outcome=cfg.km_outcome))
        lr.append(_tag(stats.logrank(sub, time_col, event, group=GROUP_COLUMN), cohort=role, outcome=cfg.km_outcome))
        hrs.append(_tag(_group_hrs(df, time_col, event, cfg), cohort=role, outcome=cfg.km_outcome))
    results.tables["group_counts"] = _concat(counts)
    results.tables["km_failure"] = _concat(km_at)
    results.tables["logrank"] = _concat(lr)
    results.tables["group_hazard_ratios"] = _concat(hrs)
    results.curves["km"] = _concat(km_full)


def _group_hrs(df: pd.DataFrame, time_col: str, event: str, cfg) -> pd.DataFrame:
    sub = df[df[GROUP_COLUMN].notna()].assign(**{GROUP_COLUMN: lambda d: d[GROUP_COLUMN].astype(str)})
    return stats.group_hazard_ratios(sub, time_col, event, GROUP_COLUMN, REFERENCE_GROUP, ties=cfg.ties,
                                     ci_level=cfg.ci_level)


# ---------------------------------------------------------------------------------- Cox
def _fit_models(results: StudyResults, family: str, outcomes: list[str], models: dict[str, list[str]]):
    cfg = results.config
    summaries, cindex, ph = [], [], []
    for role, c in results.cohorts.items():
        df = c.frame
        sd = float(df[PAD_COLUMN].std(ddof=1))
        for outcome in outcomes:
            if not has_outcome(df, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            for model, covs in models.items():
                absent = [v for v in covs if v not in df.columns or df[v].isna().all()]
                if absent:
                    results.warnings.append(f"{family} {model} ({role}, {outcome}) not fitted: no "
                                            f"{', '.join(absent)} in the data")
                    continue
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", UserWarning)
                        res = stats.cox_per_sd(df, time_col, event, PAD_COLUMN, covs, ties=cfg.ties, sd=sd,
                                               ci_level=cfg.ci_level, model=model, analysis=f"cox_{family}")
                except stats.cox.CoxModelError as exc:  # one model failing keeps the others
                    results.warnings.append(f"{family} {model} ({role}, {outcome}) not fitted: {exc}")
                    continue
                for w in caught:  # say which model a convergence warning belongs to
                    if issubclass(w.category, UserWarning):
                        results.warnings.append(f"{family} {model} ({role}, {outcome}): {w.message}")
                    else:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                results.cox[(family, role, outcome, model)] = res
                tags = dict(cohort=role, outcome=outcome, model=model)
                summaries.append(_tag(res.summary, **tags))
                glob = res.ph_test.loc[res.ph_test["term"] == "GLOBAL", "p_value"]
                cindex.append({**tags, "analysis": f"cox_{family}", "concordance": res.concordance,
                               "n": res.n, "events": res.events, "n_excluded": res.n_excluded,
                               "ph_global_p_value": float(glob.iloc[0]) if len(glob) else np.nan,
                               "converged": res.converged, "ties": res.ties})
                ph.append(_tag(res.ph_test, **tags))
                pad_row = res.summary[res.summary["term"] == PAD_COLUMN].iloc[0]
                results.numbers.setdefault(f"hr_per_sd_{family}", {}).setdefault(role, {}).setdefault(
                    outcome, {})[model] = {"estimate": pad_row["estimate"], "ci_low": pad_row["ci_low"],
                                           "ci_high": pad_row["ci_high"], "p_value": pad_row["p_value"],
                                           "n": int(res.n), "events": int(res.events)}
    return _concat(summaries), pd.DataFrame(cindex), _concat(ph)


def cox_fracture(results: StudyResults) -> None:
    cfg = results.config
    summary, cidx, ph = _fit_models(results, "fracture", cfg.fracture_outcomes, cfg.fracture_models)
    results.tables["cox_fracture"] = summary
    results.tables["c_index_fracture"] = cidx
    results.tables["ph_test_fracture"] = ph


def cox_mortality(results: StudyResults) -> None:
    cfg = results.config
    summary, cidx, ph = _fit_models(results, "mortality", [cfg.mortality_outcome], cfg.mortality_models)
    results.tables["cox_mortality"] = summary
    results.tables["c_index_mortality"] = cidx
    results.tables["ph_test_mortality"] = ph
    # accelerated vs not, unadjusted (the study's mortality HR for the top tertile)
    frames = []
    event, time_col = OUTCOMES[cfg.mortality_outcome]
    for role, c in results.cohorts.items():
        df = c.frame
        if not has_outcome(df, cfg.mortality_outcome) or ACCEL_COLUMN not in df.columns:
            continue
        sub = df[df[ACCEL_COLUMN].notna()].assign(
            acceleration=lambda d: d[ACCEL_COLUMN].map({1.0: "accelerated", 0.0: "not accelerated"}))
        frames.append(_tag(stats.group_hazard_ratios(sub, time_col, event, "acceleration", "not accelerated",
                                                     ties=cfg.ties, ci_level=cfg.ci_level),
                           cohort=role, outcome=cfg.mortality_outcome))
    results.tables["mortality_accelerated"] = _concat(frames)


def subgroups(results: StudyResults) -> None:
    """HR per SD of PAD by sex (model 1 covariates), with the interaction p value."""
    cfg = results.config
    first_model = next(iter(cfg.fracture_models.values()))
    frames = []
    for role, c in results.cohorts.items():
        df = c.frame
        for outcome in [*cfg.fracture_outcomes, cfg.mortality_outcome]:
            if not has_outcome(df, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            covs = [v for v in first_model if v in df.columns]
            res = stats.subgroup_hazard_ratios(df, time_col, event, PAD_COLUMN, by="sex", covariates=covs,
                                               ties=cfg.ties, sd=float(df[PAD_COLUMN].std(ddof=1)),
                                               ci_level=cfg.ci_level)
            frames.append(_tag(res, cohort=role, outcome=outcome))
    results.tables["subgroup_sex"] = _concat(frames)


# ---------------------------------------------------------------------------------- rates
def rates(results: StudyResults) -> None:
    """Incidence per 1,000 person-years (overall, by group, by accelerated) and median follow-up."""
    cfg = results.config
    inc, fu = [], []
    outcomes = [*cfg.fracture_outcomes, cfg.mortality_outcome]
    for role, c in results.cohorts.items():
        df = c.frame
        for outcome in outcomes:
            if not has_outcome(df, outcome):
                continue
            event, time_col = OUTCOMES[outcome]
            inc.append(_tag(stats.incidence_rates(df, time_col, event, ci_level=cfg.ci_level), cohort=role,
                            outcome=outcome, by="all"))
            for by in (ACCEL_COLUMN, GROUP_COLUMN):
                if by in df.columns:
                    sub = df[df[by].notna()].copy()
                    sub[by] = sub[by].astype(str) if by == GROUP_COLUMN else sub[by].map({1.0: "accelerated", 0.0: "not accelerated"})
                    inc.append(_tag(stats.incidence_rates(sub, time_col, event, group=by, ci_level=cfg.ci_level),
                                    cohort=role, outcome=outcome, by=by))
            fu.append(_tag(stats.median_followup(df, time_col, event), cohort=role, outcome=outcome))
            if outcome == cfg.km_outcome:
                results.numbers.setdefault("incidence_per_1000py", {})[role] = float(
                    stats.incidence_rates(df, time_col, event)["estimate"].iloc[0])
                results.numbers.setdefault("median_followup_years", {})[role] = float(fu[-1]["estimate"].iloc[0])
                results.numbers.setdefault("events", {})[role] = int(pd.to_numeric(df[event]).sum())
    results.tables["incidence_rates"] = _concat(inc)
    results.tables["median_followup"] = _concat(fu)


# ---------------------------------------------------------------------------------- competing risk
def competing_risk(results: StudyResults) -> None:
    """Aalen-Johansen cumulative incidence of fracture (death competing) vs 1 - KM, by accelerated."""
    cfg = results.config
    frac, death = cfg.km_outcome, cfg.mortality_outcome
    at, curves = [], []
    for role, c in results.cohorts.items():
        df = c.frame
        if not (has_outcome(df, frac) and has_outcome(df, death)) or ACCEL_COLUMN not in df.columns:
            continue
        cr = stats.survival.competing_event_type(df, fracture=OUTCOMES[frac][0], death=OUTCOMES[death][0],
                                                 fracture_time=OUTCOMES[frac][1], death_time=OUTCOMES[death][1])
        cr = cr[cr[ACCEL_COLUMN].notna() & cr["cr_event"].notna()].copy()
        cr["acceleration"] = cr[ACCEL_COLUMN].map({1.0: "accelerated", 0.0: "not accelerated"})
        tmax = float(cr["cr_years"].max())
        times = [t for t in cfg.km_times_years if t <= tmax]
        aj = stats.aalen_johansen(cr, "cr_years", "cr_event", group="acceleration", cause=1, times=times,
                                  ci=cfg.km_ci, ci_level=cfg.ci_level)
        km = stats.km_cumulative_failure(cr, OUTCOMES[frac][1], OUTCOMES[frac][0], group="acceleration",
                                         times=times, ci=cfg.km_ci, ci_level=cfg.ci_level)
        at.append(_tag(aj, cohort=role, method_label="Aalen-Johansen"))
        at.append(_tag(km, cohort=role, method_label="1 - KM"))
        ajc = stats.aalen_johansen(cr, "cr_years", "cr_event", group="acceleration", cause=1, ci=cfg.km_ci,
                                   ci_level=cfg.ci_level)
        kmc = stats.km_curves(cr, OUTCOMES[frac][1], OUTCOMES[frac][0], group="acceleration", ci=cfg.km_ci,
                              ci_level=cfg.ci_level)
        curves.append(_tag(ajc[["group", "time", "estimate", "ci_low", "ci_high"]], cohort=role,
                           method="Aalen-Johansen"))
        curves.append(_tag(kmc[["group", "time", "estimate", "ci_low", "ci_high"]], cohort=role, method="1 - KM"))
    results.tables["competing_risk"] = _concat(at)
    results.curves["cuminc"] = _concat(curves)


# ---------------------------------------------------------------------------------- FRAX
FRAX_COLUMNS = ("frax_mof_pct", "frax_hip_pct", "frax_mof_spine_pct", "frax_hip_spine_pct")


def frax(results: StudyResults) -> None:
    """Reclassification of FRAX high risk with spine age in place of age, NRI and AUROC comparison."""
    cfg = results.config
    parts: dict[str, list] = {k: [] for k in ("crosstab", "reclassification", "performance", "nri", "auroc")}
    for role, c in results.cohorts.items():
        df = c.frame
        if not all(col in df.columns and df[col].notna().any() for col in FRAX_COLUMNS):
            continue
        event = OUTCOMES[cfg.km_outcome][0]
        res = stats.frax_reclassification(df, event=event, mof_threshold=cfg.frax_mof_threshold_pct,
                                          hip_threshold=cfg.frax_hip_threshold_pct, ci_level=cfg.ci_level)
        parts["crosstab"].append(_tag(res.crosstab, cohort=role))
        parts["reclassification"].append(_tag(res.reclassification, cohort=role))
        parts["performance"].append(_tag(res.performance, cohort=role))
        parts["nri"].append(_tag(res.nri, cohort=role))
        parts["auroc"].append(_tag(res.delong, cohort=role))
        nri = res.nri.set_index("term")["estimate"]
        results.numbers.setdefault("frax_nri_total", {})[role] = float(nri.get("nri_total", np.nan))
        results.numbers.setdefault("frax_n", {})[role] = {"n": res.n, "events": res.events,
                                                         "n_excluded": res.n_excluded}
        results.numbers["frax_notes"] = list(res.notes)
    for k, v in parts.items():
        results.tables[f"frax_{k}"] = _concat(v)


# ---------------------------------------------------------------------------------- age-gap regression
def age_gap(results: StudyResults) -> None:
    cfg = results.config
    frames = []
    for role, c in results.cohorts.items():
        df = c.frame
        covs = [v for v in cfg.regression_covariates if v in df.columns and df[v].notna().any()]
        missing = [v for v in cfg.regression_covariates if v not in covs]
        res = stats.age_gap_regression(df, PAD_COLUMN, covs, ci_level=cfg.ci_level)
        frames.append(_tag(res.to_frame(), cohort=role))
        results.numbers.setdefault("age_gap_adj_r2", {})[role] = res.adj_r2
        if missing:
            results.warnings.append(f"age-gap regression ({role}): left out covariate(s) not in the data: "
                                    f"{', '.join(missing)}")
    results.tables["age_gap_regression"] = _concat(frames)


STEPS = [
    ("table 1", table1),
    ("agreement", agreement),
    ("discrimination", discrimination),
    ("four groups and Kaplan-Meier", groups_km),
    ("Cox models, fracture", cox_fracture),
    ("Cox models, mortality", cox_mortality),
    ("incidence rates", rates),
    ("competing risk", competing_risk),
    ("subgroups by sex", subgroups),
    ("FRAX reclassification", frax),
    ("age-gap regression", age_gap),
]
