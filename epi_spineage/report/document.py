"""Turns ``StudyResults`` into the report's sections (text, figures, display tables) and writes it.

This is the only place that decides what the reader sees and in which order (the study's order:
cohorts, agreement, discrimination, accelerated ageing, Cox, mortality, rates, competing risk,
subgroups, FRAX, age-gap regression, Grad-CAM, scoring QC, synthetic truth, data quality, methods).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from epi_spineage import __version__
from epi_spineage.progress import Progress
from epi_spineage.report import figures as F
from epi_spineage.report import labels as L
from epi_spineage.report.config import MI_LARGE_N, StudyConfig, config_rows, config_to_toml
from epi_spineage.report.plotdata import compact_curve
from epi_spineage.report.render import CodeItem, FigureItem, Section, TableItem, format_ci, format_p, write_report
from epi_spineage.report.results import (
    AGE_PREDICTOR,
    SPINE_PREDICTOR,
    AgeGapResult,
    AgreementResult,
    CompetingResult,
    CoxFractureResult,
    DiscriminationResult,
    GroupsKMResult,
    MortalityResult,
    RatesResult,
    StudyResults,
    SubgroupResult,
    Table1Result,
)
from epi_spineage.report.steps import CAUSE_SPECIFIC, FINE_GRAY, ORDINARY_COX
from epi_spineage.schema import PAD_COLUMN, SYNTHETIC_NOTICE
from epi_spineage.stats.grouping import FOUR_GROUP_LABELS, REFERENCE_GROUP

log = logging.getLogger(__name__)

KM_AXIS_LABEL = "cumulative incidence (1 - KM, deaths censored)"
MORTALITY_VS_PAPER = (
    "How this differs from the study: the study reports mortality for women vs men and per SD of age beside "
    "PAD; here age is per year and sex is a model term ('men vs women'), with PAD per SD as in the fracture "
    "models. The hazard ratios of sex and age are the same models' terms, only on these scales."
)


class _Doc:
    def __init__(self, results: StudyResults, fig_dir: Path, svg: bool):
        self.r = results
        self.fig_dir = fig_dir
        self.svg = svg
        self.sections: list[Section] = []

    def section(self, id_: str, title: str) -> Section:
        s = Section(id_, title)
        self.sections.append(s)
        return s

    def figure(self, s: Section, name: str, fig, caption: str, width: int = 900) -> None:
        png = F.save_figure(fig, self.fig_dir, name, svg=self.svg)
        s.figures.append(FigureItem(name, caption, png, width))

    def table(
        self,
        s: Section,
        name: str,
        caption: str,
        display: pd.DataFrame | None = None,
        note: str = "",
        *,
        frame: pd.DataFrame | None,
        show: bool = True,
    ) -> None:
        """Show ``display`` (or ``frame``) and write ``frame`` (full precision) as tables/NAME.csv."""
        if frame is None or len(frame) == 0:
            return
        s.tables.append(TableItem(name, caption, frame, display, note, show=show))


def _ci(row, digits=2) -> str:
    """'1.23 (1.01-1.50)', or 'not estimable (reason)' where the fit is not estimable (never 0.00 (0.00-0.00))."""
    note = row.get("note") if hasattr(row, "get") else None
    if isinstance(note, str) and note.startswith("not estimable"):
        return "not estimable (" + note.split(":", 1)[-1].strip() + ")"
    if not np.isfinite(float(row["estimate"])):
        return "not estimable"
    return format_ci(float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"]), digits)


# ------------------------------------------------------------------------------------- sections
def _summary(d: _Doc, synthetic: bool) -> None:
    s = d.section("summary", "Summary")
    agr = d.r.agreement or AgreementResult()
    rates = d.r.rates or RatesResult()
    cox = d.r.cox_fracture or CoxFractureResult()
    groups = d.r.groups
    cfg = d.r.config
    if synthetic:
        s.paragraphs.append(
            "These cohorts are simulated (see the banner). The study design follows Cho, Hong et al., "
            "npj Aging 2025 (doi:10.1038/s41514-025-00271-8); the numbers below are the simulator's, "
            "not the study's findings."
        )
    for role in d.r.roles:
        parts = [f"{L.cohort(role)}: {agr.n_analysed.get(role, d.r.cohorts[role].n):,} participants"]
        if role in rates.events:
            fu = rates.median_followup_years.get(role)
            parts.append(
                f"{rates.events[role]:,} with incident {L.outcome(cfg.km_outcome)} "
                f"({rates.incidence_per_1000py[role]:.1f} per 1,000 person-years"
                + (f"; median follow-up {fu:.1f} y)" if fu is not None else ")")
            )
        if role in agr.pearson_r:
            parts.append(
                f"r(age, spine age) = {agr.pearson_r[role]:.2f}; PAD mean (SD) "
                f"{agr.pad_mean_years[role]:.1f} ({agr.pad_sd_years[role]:.1f}) y, {agr.pad_used[role]}"
            )
        hr = cox.hr_per_sd.get(role, {}).get(cfg.fracture_outcomes[0], {})
        if hr:
            first = next(iter(hr))
            parts.append(f"HR per SD of PAD for {L.outcome(cfg.fracture_outcomes[0])}, {first}: {_ci(hr[first])}")
        side = cox.pad_side_by_side
        if len(side):
            other = side[(side["cohort"] == role) & ~side["analysed"].astype(bool)]
            for _, o in other.iterrows():
                parts.append(f"with {o['pad']} PAD instead: {_ci(o)}")
        s.bullets.append("; ".join(parts) + ".")
    if groups is not None and np.isfinite(groups.cut_years):
        s.bullets.append(
            f"Accelerated spine ageing: PAD {cfg.cut_rule} {groups.cut_years:.2f} y ({groups.cut_source})."
        )


def _cohorts(d: _Doc) -> None:
    s = d.section("cohorts", "Cohorts and baseline characteristics")
    s.paragraphs.append(
        "Participant flow: rows given, rows analysed and why the others were left out. "
        "Each model below also reports how many participants it excluded for missing covariates."
    )
    flow = d.r.flow
    if len(flow):
        disp = flow.assign(
            cohort=flow["cohort"].map(L.cohort),
            n=flow["n"].map("{:,}".format),
            n_excluded=flow["n_excluded"].map(lambda v: f"{v:,}" if v else ""),
        )
        disp.columns = ["cohort", "step", "n", "excluded", "reason"]
        d.table(s, "cohort_flow", "Cohort flow.", disp, frame=flow)
    t1 = (d.r.table1 or Table1Result()).table
    from epi_spineage.stats.table1 import format_table_one

    for role in d.r.roles:
        block = t1[t1["cohort"] == role] if len(t1) else t1
        if not len(block):
            continue
        disp = format_table_one(block, labels=L.VARIABLES, missing=True)
        disp.columns = [
            c.replace("0 (n=", "no fracture (n=").replace("1 (n=", "incident fracture (n=")
            if c not in ("characteristic", "p value")
            else c
            for c in disp.columns
        ]
        d.table(
            s,
            f"table1_{role}",
            f"Baseline characteristics of the {L.cohort(role)} cohort by incident "
            f"{L.outcome(d.r.config.km_outcome)}: mean ± SD (Student t-test) or n (%) (Pearson chi-square "
            "without Yates' correction; Fisher's exact test when an expected count is below 5), of the values "
            "present; n missing: the variable's missing values in the cohort.",
            disp,
            frame=block.reset_index(drop=True),
        )
    fu = (d.r.rates or RatesResult()).followup
    if len(fu):
        disp = pd.DataFrame(
            {
                "cohort": fu["cohort"].map(L.cohort),
                "outcome": fu["outcome"].map(L.outcome),
                "median follow-up, y (IQR)": [
                    f"{e:.1f} ({a:.1f}-{b:.1f})" for e, a, b in zip(fu["estimate"], fu["q1"], fu["q3"])
                ],
                "n": fu["n"].map("{:,}".format),
                "events": fu["events"].map("{:,}".format),
            }
        )
        d.table(s, "median_followup", "Median follow-up by the reverse Kaplan-Meier method.", disp, frame=fu)


def _agreement(d: _Doc) -> None:
    s = d.section("agreement", "Spine age and chronological age")
    agr = d.r.agreement or AgreementResult()
    panels = []
    pear = agr.pearson
    for role in d.r.roles:
        sc = agr.scatter.get(role)
        row = pear[pear["cohort"] == role] if len(pear) else pear
        if sc is None or not len(row):
            continue
        r = row.iloc[0]
        panels.append(
            {
                "title": L.cohort(role),
                "cells": sc,
                "line": agr.scatter_line.get(role, (np.nan, np.nan)),
                "r": r["estimate"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
            }
        )
    if panels:
        d.figure(
            s,
            "age_scatter",
            F.age_scatter(panels),
            "Predicted (uncorrected) spine age against chronological age: participants counted in 1-year "
            "cells (darker: more, log scale), with the identity line and the least-squares line; Pearson r "
            "with its Fisher-z 95% CI.",
            width=860,
        )
    ps = agr.pad_summary
    if len(ps):
        disp = pd.DataFrame(
            {
                "cohort": ps["cohort"].map(L.cohort),
                "PAD": [f"{k} (analysed)" if a else k for k, a in zip(ps["pad"], ps["analysed"].astype(bool))],
                "n": ps["n"].map("{:,}".format),
                "PAD mean (SD), y": [f"{m:.2f} ({sd:.2f})" for m, sd in zip(ps["pad_mean_years"], ps["pad_sd_years"])],
                "MAE, y": ps["mae_years"].map("{:.2f}".format),
                "r (95% CI)": [format_ci(a, b, c) for a, b, c in zip(ps["pearson_r"], ps["ci_low"], ps["ci_high"])],
            }
        )
        d.table(
            s,
            "pad_summary",
            "Predicted age difference (PAD = spine age - chronological age): the PAD the "
            "analyses use, and beside it the other one wherever the cohort has a bias-corrected spine age "
            "(uncorrected and corrected side by side). r and MAE of corrected PAD are inflated by the correction.",
            disp,
            frame=ps,
        )
    if len(pear):
        d.table(
            s,
            "agreement_pearson",
            "Pearson correlation of chronological and uncorrected spine age.",
            frame=pear,
            show=False,
        )


def _discrimination(d: _Doc) -> None:
    s = d.section("discrimination", "Discrimination: prevalent vertebral fracture and osteoporosis")
    disc = d.r.discrimination or DiscriminationResult()
    t = disc.table
    curves = disc.roc
    if not len(t):
        s.paragraphs.append("Not available (no prevalent_vf or osteoporosis in the data).")
        return
    aucs = t[t["term"].isin([SPINE_PREDICTOR, AGE_PREDICTOR])].rename(columns={"term": "predictor"})
    diff = t[~t["term"].isin([SPINE_PREDICTOR, AGE_PREDICTOR])]
    aucs = aucs.merge(
        diff[["cohort", "outcome", "p_value"]].rename(columns={"p_value": "p_delong"}),
        on=["cohort", "outcome"],
        how="left",
    )
    order = list(dict.fromkeys(zip(aucs["cohort"], aucs["outcome"])))
    titles = {k: f"{L.cohort(k[0])}: {L.outcome(k[1])}" for k in order}
    if curves is not None and len(curves):
        d.figure(
            s,
            "roc",
            F.roc_panels(curves, aucs, order, titles),
            "ROC curves of spine age (as analysed: chronological age + PAD) and chronological age; AUROC "
            "with DeLong 95% CI; paired DeLong test of the difference.",
            width=760,
        )
    rows = []
    for (cohort, outcome), blk in t.groupby(["cohort", "outcome"], sort=False):
        a = blk[blk["term"] == SPINE_PREDICTOR].iloc[0]
        b = blk[blk["term"] == AGE_PREDICTOR].iloc[0]
        dd = blk[~blk["term"].isin([SPINE_PREDICTOR, AGE_PREDICTOR])].iloc[0]
        rows.append(
            {
                "cohort": L.cohort(cohort),
                "outcome": L.outcome(outcome),
                "cases / controls": f"{int(a['events']):,} / {int(a['n_controls']):,}",
                "AUROC spine age": _ci(a, 3),
                "AUROC chronological age": _ci(b, 3),
                "difference": format_ci(dd["estimate"], dd["ci_low"], dd["ci_high"], 3),
                "p (DeLong)": format_p(dd["p_value"]),
            }
        )
    d.table(s, "discrimination", "AUROC (95% DeLong CI) and the paired DeLong comparison.", pd.DataFrame(rows), frame=t)


def _km(d: _Doc) -> None:
    cfg = d.r.config
    s = d.section("accelerated", "Accelerated spine ageing: four groups and Kaplan-Meier")
    g = d.r.groups or GroupsKMResult()
    if np.isfinite(g.cut_years):
        s.paragraphs.append(
            f"Accelerated ageing is PAD {cfg.cut_rule} {g.cut_years:.3f} years: "
            f"{g.cut_source}. The four groups split each cohort at its own median age "
            + ", ".join(f"({L.cohort(r)}: {a:.1f} y)" for r, a in g.median_age_years.items())
            + f". Reference group: {REFERENCE_GROUP}."
        )
    km = g.km
    at = g.km_failure
    hrs = g.group_hazard_ratios
    lr = g.logrank
    if km is None or not len(km):
        return
    panels = []
    short = {
        "younger, not accelerated": "young, not acc.",
        "younger, accelerated": "young, acc.",
        "older, not accelerated": "old, not acc.",
        "older, accelerated": "old, acc.",
    }
    for role in d.r.roles:
        c = km[km["cohort"] == role].rename(columns={"time": "time_years"})
        if not len(c):
            continue
        a = (at[at["cohort"] == role] if len(at) else pd.DataFrame(columns=["group", "time", "n_at_risk"])).rename(
            columns={"time": "time_years"}
        )
        h = hrs[hrs["cohort"] == role] if len(hrs) else hrs
        lab = {}
        for grp in FOUR_GROUP_LABELS:
            row = h[h["group"] == grp] if len(h) else h
            if len(row) and grp != REFERENCE_GROUP and np.isfinite(row.iloc[0]["estimate"]):
                lab[grp] = f"{grp}: HR {_ci(row.iloc[0])}"
            else:
                lab[grp] = f"{grp} (reference)" if grp == REFERENCE_GROUP else grp
        lrow = lr[lr["cohort"] == role] if len(lr) else lr
        note = f"log-rank {format_p(lrow.iloc[0]['p_value']).replace('<', 'p < ') if len(lrow) else ''}"
        note = note if "p <" in note else (f"log-rank p = {format_p(lrow.iloc[0]['p_value'])}" if len(lrow) else "")
        panels.append(
            {
                "title": L.cohort(role),
                "curves": c,
                "at_risk": a[["group", "time_years", "n_at_risk"]],
                "groups": list(FOUR_GROUP_LABELS),
                "labels": lab,
                "short": short,
                "note": note,
            }
        )
    if not panels:
        return
    d.figure(
        s,
        "km_four_groups",
        F.km_panels(panels, ylabel=KM_AXIS_LABEL),
        f"Kaplan-Meier cumulative incidence (1 - S) of {L.outcome(cfg.km_outcome)} in the four age x "
        f"acceleration groups with {cfg.km_ci} 95% CIs (Greenwood), unadjusted Cox HRs against the reference "
        "group, the log-rank test, and numbers at risk. Deaths are censored, so 1 - KM overstates the risk "
        "where mortality is high: see the competing-risk section (Aalen-Johansen).",
        width=980,
    )
    if len(hrs):
        order = {g: i for i, g in enumerate(FOUR_GROUP_LABELS)}
        hrs = hrs.assign(_o=hrs["group"].map(order)).sort_values(
            ["cohort", "_o"], kind="stable", key=lambda c: c.map(d.r.roles.index) if c.name == "cohort" else c
        )
        disp = pd.DataFrame(
            {
                "cohort": hrs["cohort"].map(L.cohort),
                "group": hrs["group"],
                "n": hrs["n_group"].map(lambda v: f"{int(v):,}" if pd.notna(v) else ""),
                "events": hrs["events_group"].map(lambda v: f"{int(v):,}" if pd.notna(v) else ""),
                "HR (95% CI)": [("1 (reference)" if r["scale"] == "reference" else _ci(r)) for _, r in hrs.iterrows()],
                "p": hrs["p_value"].map(format_p).replace("NA", ""),
            }
        )
        d.table(
            s,
            "group_hazard_ratios",
            f"Unadjusted hazard ratios of {L.outcome(cfg.km_outcome)} by group.",
            disp,
            frame=g.group_hazard_ratios,
        )
    if len(lr):
        d.table(s, "logrank", "Log-rank test across the four groups.", frame=lr)


def _hr_pivot(summary: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    pad = summary[summary["term"] == PAD_COLUMN]
    rows = []
    for (cohort, outcome), blk in pad.groupby(["cohort", "outcome"], sort=False):
        row = {"cohort": L.cohort(cohort), "outcome": L.outcome(outcome)}
        for m in models:
            r = blk[blk["model"] == m]
            row[m] = _ci(r.iloc[0]) if len(r) else "not fitted"
            if len(r) and "model_label" in r.columns and r.iloc[0]["model_label"] != m:
                row[f"{m} note"] = r.iloc[0]["model_label"].split("; ", 1)[1]
            if len(r):
                row[f"{m} p"] = format_p(r.iloc[0]["p_value"])
                row[f"{m} n/events"] = f"{int(r.iloc[0]['n']):,}/{int(r.iloc[0]['events']):,}"
        rows.append(row)
    return pd.DataFrame(rows)


def _cox(d: _Doc) -> None:
    cfg = d.r.config
    s = d.section("cox", "Incident fracture: hazard ratio per SD of PAD")
    cox = d.r.cox_fracture or CoxFractureResult()
    summ = cox.summary
    if not len(summ):
        s.paragraphs.append("Not available.")
        return
    s.paragraphs.append(
        "Cox proportional-hazards models; HR per 1 SD of PAD (the SD of the analysed cohort, the same for all "
        "models of a cohort). "
        + "; ".join(f"{m}: PAD + {', '.join(L.var(v) for v in covs)}" for m, covs in cfg.fracture_models.items())
        + ". Complete cases per model (n/events shown)."
    )
    d.table(
        s,
        "cox_fracture",
        "Hazard ratio (95% CI) per 1 SD of PAD for incident fracture "
        f"('not estimable': fewer than {cfg.min_events_per_parameter or 0:g} events per model parameter, "
        "or an infinite CI).",
        _hr_pivot(summ, list(cfg.fracture_models)),
        frame=summ,
    )
    side = cox.pad_side_by_side
    if len(side):
        disp = pd.DataFrame(
            {
                "cohort": side["cohort"].map(L.cohort),
                "outcome": side["outcome"].map(L.outcome),
                "model": side["model"],
                "PAD": [f"{k} (analysed)" if a else k for k, a in zip(side["pad"], side["analysed"])],
                "HR per SD (95% CI)": [_ci(r) for _, r in side.iterrows()],
                "n/events": [f"{int(n):,}/{int(e):,}" for n, e in zip(side["n"], side["events"])],
            }
        )
        d.table(
            s,
            "cox_fracture_pad_side_by_side",
            "The headline hazard ratio per SD with uncorrected and corrected "
            "PAD side by side (cohorts with a bias-corrected spine age; each PAD per its own SD).",
            disp,
            frame=side,
        )
    pad = summ[(summ["term"] == PAD_COLUMN) & np.isfinite(summ["estimate"].astype(float))].copy()
    pad = pad.assign(cohort=pad["cohort"].map(L.cohort), outcome=pad["outcome"].map(L.outcome))
    d.figure(
        s,
        "forest_fracture",
        F.forest(pad, label="model", group="model", headings=("cohort", "outcome"), xlabel="HR per SD of PAD (95% CI)"),
        "Hazard ratios per SD of PAD by cohort, outcome and model.",
        width=760,
    )


def _mortality(d: _Doc) -> None:
    cfg = d.r.config
    s = d.section("mortality", "Mortality")
    mort = d.r.mortality or MortalityResult()
    summ = mort.summary
    if not len(summ):
        s.paragraphs.append("Not available (no death outcome in the data).")
        return
    rows = []
    models = list(cfg.mortality_models)
    for cohort, blk in summ.groupby("cohort", sort=False):
        terms = list(dict.fromkeys(blk["term"]))
        for term in terms:
            sub = blk[blk["term"] == term]
            row = {"cohort": L.cohort(cohort), "term": L.term(term, sub.iloc[0]["scale"])}
            for m in models:
                r = sub[sub["model"] == m]
                row[m] = _ci(r.iloc[0]) if len(r) else ""
            rows.append(row)
    s.paragraphs.append(MORTALITY_VS_PAPER)
    d.table(
        s,
        "cox_mortality",
        "Hazard ratios (95% CI) for death: PAD per SD; age per year; biomarkers per SD "
        "decrement (albumin, haemoglobin) or increment (creatinine).",
        pd.DataFrame(rows),
        frame=summ,
    )
    acc = mort.accelerated
    if len(acc):
        a = acc[acc["scale"] != "reference"]
        disp = pd.DataFrame(
            {
                "cohort": a["cohort"].map(L.cohort),
                "comparison": "accelerated vs not",
                "adjustment": a["adjustment"],
                "HR (95% CI)": [_ci(r) for _, r in a.iterrows()],
                "p": a["p_value"].map(format_p),
                "n": a["n"].map("{:,}".format),
                "deaths": a["events"].map("{:,}".format),
            }
        )
        d.table(
            s,
            "mortality_accelerated",
            "Mortality, accelerated vs not accelerated, in the external cohort as "
            "in the study (in the derivation cohort uncorrected PAD falls with age, so an unadjusted contrast "
            "there is confounded by age): unadjusted and age- and sex-adjusted.",
            disp,
            frame=acc,
        )


def _rates(d: _Doc) -> None:
    s = d.section("rates", "Incidence rates, C-indices and proportional hazards")
    rates = d.r.rates or RatesResult()
    inc = rates.incidence
    if len(inc):
        disp = pd.DataFrame(
            {
                "cohort": inc["cohort"].map(L.cohort),
                "outcome": inc["outcome"].map(L.outcome),
                "group": inc["group"],
                "events / n": [f"{int(e):,} / {int(n):,}" for e, n in zip(inc["events"], inc["n"])],
                "person-years": inc["person_years"].map("{:,.0f}".format),
                "per 1,000 py (95% CI)": [
                    format_ci(e, lo, hi, 1) for e, lo, hi in zip(inc["estimate"], inc["ci_low"], inc["ci_high"])
                ],
            }
        )
        d.table(s, "incidence_rates", "Incidence per 1,000 person-years with exact Poisson 95% CIs.", disp, frame=inc)
    for fam in ("fracture", "mortality"):
        fit = d.r.cox(fam)
        c = fit.c_index if fit is not None else pd.DataFrame()
        if len(c):
            disp = pd.DataFrame(
                {
                    "cohort": c["cohort"].map(L.cohort),
                    "outcome": c["outcome"].map(L.outcome),
                    "model": c["model"],
                    "Harrell's C": c["concordance"].map("{:.3f}".format),
                    "n": c["n"].map("{:,}".format),
                    "events": c["events"].map("{:,}".format),
                    "excluded (missing)": c["n_excluded"].map("{:,}".format),
                    "PH global p": c["ph_global_p_value"].map(format_p),
                }
            )
            d.table(
                s,
                f"c_index_{fam}",
                f"Harrell's C of each {fam} model and the global proportional-hazards "
                "test (scaled Schoenfeld residuals vs 1 - KM(t), as cox.zph(transform='km')).",
                disp,
                frame=c,
            )


def _competing(d: _Doc) -> None:
    cfg = d.r.config
    s = d.section("competing", "Competing risk of death")
    comp = d.r.competing or CompetingResult()
    cur = comp.cuminc
    if cur is None or not len(cur):
        s.paragraphs.append("Not available (needs both fracture and death outcomes).")
        return
    s.paragraphs.append(
        "1 - Kaplan-Meier treats deaths as censored and so overstates the risk of fracture where "
        "mortality is high. The Aalen-Johansen estimator counts death as a competing event."
    )
    panels = []
    for role in d.r.roles:
        c = cur[cur["cohort"] == role].rename(columns={"time": "time_years"})
        if len(c):
            panels.append({"title": L.cohort(role), "curves": c, "groups": ["not accelerated", "accelerated"]})
    d.figure(
        s,
        "competing_risk",
        F.cuminc_panels(panels),
        f"Cumulative incidence of {L.outcome(cfg.km_outcome)} by accelerated ageing: Aalen-Johansen with death "
        "as a competing event (solid, 95% CI band) against 1 - KM (dashed).",
        width=900,
    )
    t = comp.table
    if len(t):
        wide = t.pivot_table(
            index=["cohort", "time"], columns=["group", "method_label"], values="estimate", aggfunc="first", sort=False
        )
        disp = pd.DataFrame(
            {"cohort": [L.cohort(c) for c, _ in wide.index], "years": [f"{y:g}" for _, y in wide.index]}
        )
        for g in ("not accelerated", "accelerated"):
            for m in ("1 - KM", "Aalen-Johansen"):
                if (g, m) in wide.columns:
                    disp[f"{g}: {m}"] = [f"{v:.3f}" if pd.notna(v) else "" for v in wide[(g, m)]]
        d.table(s, "competing_risk", "Cumulative incidence at fixed times: 1 - KM vs Aalen-Johansen.", disp, frame=t)
    _gray(d, s, comp)
    _competing_hrs(d, s, comp)


def _gray(d: _Doc, s: Section, comp: CompetingResult) -> None:
    """Gray's test of equal cumulative incidence beside the Aalen-Johansen curves."""
    g = comp.gray
    if not len(g):
        return
    parts = [
        f"{L.cohort(r['cohort'])}: chi-square {r['statistic']:.2f}, {int(r['df'])} df, p = {format_p(r['p_value'])}"
        for _, r in g.iterrows()
    ]
    s.paragraphs.append(
        f"Gray's test of equal cumulative incidence of {L.outcome(d.r.config.km_outcome)}, accelerated vs not "
        "(death competing): " + "; ".join(parts) + "."
    )
    disp = pd.DataFrame(
        {
            "cohort": g["cohort"].map(L.cohort),
            "outcome": g["outcome"].map(L.outcome),
            "comparison": g["comparison"],
            "chi-square": g["statistic"].map("{:.2f}".format),
            "degrees of freedom": g["df"].map("{:d}".format),
            "p": g["p_value"].map(format_p),
            "n": g["n"].map("{:,}".format),
            "fractures": g["events"].map("{:,}".format),
        }
    )
    d.table(s, "competing_risk_gray", "Gray's test (rho = 0) of equal cumulative incidence.", disp, frame=g)


#: how to read each of the three hazard ratios of the competing-risk table (one sentence each)
COMPETING_READING = {
    FINE_GRAY: "the subdistribution HR (Fine-Gray) is the effect of PAD on the cumulative "
    "incidence of fracture in the presence of death: participants who die stay in its risk set, so a higher "
    "sHR means more people with a fracture by a given time, whether through a higher fracture rate or "
    "through longer survival; use it for prediction",
    CAUSE_SPECIFIC: "the cause-specific HR is the effect of PAD on the fracture rate among "
    "participants still alive and fracture-free (deaths censored at death); use it for aetiology",
    ORDINARY_COX: "the ordinary Cox HR of the fracture sections treats death as censoring, so it "
    "estimates the same quantity as the cause-specific HR; on the same rows it is the cause-specific model "
    "itself when fracture follow-up ends at death",
}


def _competing_hrs(d: _Doc, s: Section, comp: CompetingResult) -> None:
    cfg = d.r.config
    h = comp.hazard_ratios
    if not comp.fine_gray:
        s.paragraphs.append(
            "The Fine-Gray regression is switched off in the study config ([sensitivity] fine_gray = false)."
        )
    if not len(h):
        return
    model, covs = next(iter(cfg.fracture_models.items()))
    estimators = list(dict.fromkeys(h["estimator"]))
    s.paragraphs.append(
        "Hazard ratios per SD of PAD with death as a competing event, all with the covariates of the first "
        f"fracture model ({model}: PAD + {', '.join(L.var(v) for v in covs)}) on the same rows (complete cases) "
        "and the same SD of PAD as the Cox sections. How to read them:"
    )
    cs = h[h["estimator"] == CAUSE_SPECIFIC].set_index(["cohort", "outcome"])["estimate"]
    ordinary = h[h["estimator"] == ORDINARY_COX].set_index(["cohort", "outcome"])["estimate"]
    both = pd.concat([cs.rename("cs"), ordinary.rename("cox")], axis=1).dropna()
    same = ""
    if len(both):
        same = (
            " (here they are identical in every cohort and outcome: fracture follow-up ends at death in these data)"
            if np.allclose(both["cs"].astype(float), both["cox"].astype(float), rtol=1e-9, atol=0)
            else " (here they differ where a participant's fracture follow-up runs past their death: the ordinary "
            "model keeps them at risk, the cause-specific one stops at death)"
        )
    for e in estimators:
        text = COMPETING_READING.get(e)
        if text:
            s.bullets.append(text[0].upper() + text[1:] + (same if e == ORDINARY_COX else "") + ".")
    rows = []
    for (cohort, outcome), blk in h.groupby(["cohort", "outcome"], sort=False):
        row = {"cohort": L.cohort(cohort), "outcome": L.outcome(outcome)}
        for e in estimators:
            r = blk[blk["estimator"] == e]
            row[f"{e} (95% CI)"] = _ci(r.iloc[0]) if len(r) else "not estimated"
        first = blk.iloc[0]
        row["n"] = f"{int(first['n']):,}"
        row["fractures"] = f"{int(first['events']):,}"
        row["deaths first"] = f"{int(first['n_competing']):,}"
        model_label = str(first["model"])
        if model_label != model:
            row["note"] = model_label.split("; ", 1)[-1]
        rows.append(row)
    d.table(
        s,
        "competing_risk_hazard_ratios",
        f"Hazard ratios (95% CI) per SD of PAD for incident fracture with death competing, {model} covariates: "
        "Fine-Gray subdistribution HR (sandwich SE, as cmprsk::crr), cause-specific Cox HR and ordinary Cox HR "
        f"(deaths censored); 'not estimable': fewer than {cfg.min_events_per_parameter or 0:g} events per "
        "parameter, no convergence, or an infinite CI.",
        pd.DataFrame(rows),
        frame=h,
    )


def _subgroups(d: _Doc) -> None:
    s = d.section("subgroups", "Subgroups by sex")
    t = (d.r.subgroups or SubgroupResult()).table
    if not len(t):
        s.paragraphs.append("Not available.")
        return
    disp = pd.DataFrame(
        {
            "cohort": t["cohort"].map(L.cohort),
            "outcome": t["outcome"].map(L.outcome),
            "sex": t["level"].map({"F": "women", "M": "men"}).fillna(t["level"]),
            "n / events": [
                f"{int(n):,} / {int(e):,}" if pd.notna(e) else f"{int(n):,} / -" for n, e in zip(t["n"], t["events"])
            ],
            "HR per SD (95% CI)": [_ci(r) for _, r in t.iterrows()],
            "p interaction": t["p_interaction"].map(format_p),
        }
    )
    first = next(iter(d.r.config.fracture_models))
    n_tests = int(t.drop_duplicates(["cohort", "outcome"]).shape[0])
    d.table(
        s,
        "subgroup_sex",
        f"Hazard ratio per SD of PAD within women and men ({first} covariates less sex); "
        "p for the PAD x sex interaction (likelihood-ratio test). Exploratory: "
        f"{n_tests} interaction tests, not adjusted for multiplicity.",
        disp,
        frame=t,
    )
    t = t[np.isfinite(t["estimate"].astype(float))]
    if not len(t):
        return
    lab = t.assign(
        cohort=t["cohort"].map(L.cohort),
        outcome=t["outcome"].map(L.outcome),
        label=t["level"].map({"F": "women", "M": "men"}).fillna(t["level"]),
    )
    d.figure(
        s,
        "forest_sex",
        F.forest(lab, label="label", group="level", headings=("cohort", "outcome"), xlabel="HR per SD of PAD (95% CI)"),
        "Hazard ratio per SD of PAD by sex.",
        width=760,
    )


def _age_gap(d: _Doc) -> None:
    s = d.section("agegap", "What the age gap reflects: regression of PAD")
    t = (d.r.age_gap or AgeGapResult()).table
    if not len(t):
        s.paragraphs.append("Not available.")
        return
    for role in d.r.roles:
        blk = t[t["cohort"] == role]
        if not len(blk):
            continue
        s.paragraphs.append(
            f"{L.cohort(role)}: n = {int(blk['n'].iloc[0]):,} complete cases "
            f"({int(blk['n_excluded'].iloc[0]):,} excluded), R² = {blk['r2'].iloc[0]:.3f}, "
            f"adjusted R² = {blk['adj_r2'].iloc[0]:.3f}."
        )
    disp = pd.DataFrame(
        {
            "cohort": t["cohort"].map(L.cohort),
            "term": t["term"].map(L.var),
            "years (95% CI)": [_ci(r) for _, r in t.iterrows()],
            "p": t["p_value"].map(format_p),
        }
    )
    for role, dropped in d.r.age_gap.dropped.items() if d.r.age_gap else ():
        s.paragraphs.append(
            f"{L.cohort(role)}: dropped (constant or aliased in the complete cases, as R's lm): "
            f"{', '.join(L.var(v) for v in dropped)}."
        )
    d.table(
        s,
        "age_gap_regression",
        "Linear regression of PAD (years) on clinical factors: coefficients with t-based 95% CIs.",
        disp,
        frame=t,
    )


def _quality(d: _Doc, qc=None) -> None:
    s = d.section("quality", "Data quality: exclusions and warnings")
    q = d.r.data_quality
    if len(q):
        d.table(s, "data_quality", "Data-quality items found while preparing and analysing the cohorts.", frame=q)
    from epi_spineage.report.document_extra import scoring_warnings

    s.warnings.extend(scoring_warnings(qc))
    if d.r.warnings:
        s.bullets.extend(d.r.warnings)
    else:
        s.paragraphs.append("No warnings were raised.")


def _bias_statement(cfg) -> str:
    """Which bias correction gave the corrected spine age (docs/methods.md#domain-shift)."""
    if getattr(cfg, "bias_correction", "pooled") == "per_manufacturer":
        return (
            "Bias correction used: per scanner manufacturer, one Beheshti line per manufacturer fitted on the "
            f"calibration set {cfg.bias_calibration_set} (stored with the model; the same lines as the database "
            "view v_cohort_scores); manufacturers with too few calibration images use the pooled line (listed "
            "under Warnings); no calibration participant is analysed."
        )
    return (
        "Bias correction used: pooled (one line for every scanner: the model's own correction where spine ages "
        "come from the database, else the cohort's spine_age_corrected_years)."
    )


def _methods(d: _Doc, meta: dict) -> None:
    cfg = d.r.config
    s = d.section("methods", "Methods and software")
    pads = ", ".join(f"{L.cohort(r)}: {c.pad_kind}" for r, c in d.r.cohorts.items())
    s.bullets.extend(
        [
            f"PAD = spine age - chronological age ({pads} spine age; 'corrected' means the bias-corrected spine age "
            "of spine_age_corrected_years, Beheshti's age-level correction fitted out of fold, where the cohort has "
            "one); PAD is rounded to 1e-9 years before comparison with a cut point. Chronological age stays in every "
            "model because corrected PAD is age-free only in the data the correction was fitted on.",
            _bias_statement(cfg),
            f"Accelerated ageing: PAD {cfg.cut_rule} the cut, here the "
            f"{d.r.groups.cut_source if d.r.groups else 'cut of the study config'} (quantile type 7, R's default, "
            "unless configured).",
            f"Cox models: ties by {cfg.ties.capitalize()}; Wald CIs; HR per 1 SD of PAD "
            "(sample SD of the analysed cohort); complete cases per model; Harrell's C; "
            "PH check by scaled Schoenfeld residuals.",
            f"Kaplan-Meier: cumulative failure 1 - S(t), Greenwood variance, {cfg.km_ci} CIs; "
            "log-rank test across groups.",
            "Table 1: mean ± SD with Student's t-test (equal variances, as scipy and Stata; "
            "R's t.test defaults to Welch); n (%) with Pearson's chi-square without Yates' correction, "
            "Fisher's exact test when an expected count < 5.",
            "AUROC: DeLong CIs and paired DeLong tests (Sun & Xu fast algorithm; ties count one half).",
            "Competing risk: Aalen-Johansen cumulative incidence, death as the competing event; Gray's test; "
            "Fine-Gray subdistribution hazards (as cmprsk::crr) beside cause-specific Cox models "
            "(docs/methods.md#fine-gray).",
            (
                f"Multiple imputation (sensitivity analysis): {cfg.mi_imputations} imputed sets "
                f"({min(cfg.mi_imputations, cfg.mi_imputations_large)} in a cohort of more than {MI_LARGE_N:,} rows) "
                f"of {cfg.mi_iterations} "
                f"chained-equation cycles, seed {cfg.mi_seed}; Rubin's rules with Barnard-Rubin df "
                "(docs/methods.md#multiple-imputation)."
                if cfg.multiple_imputation
                else "Multiple imputation: switched off in the study config; complete cases only."
            ),
            f"FRAX high risk: MOF >= {cfg.frax_mof_threshold_pct:g}% or hip >= {cfg.frax_hip_threshold_pct:g}%; "
            "FRAX AUROC ignores censoring.",
            "Incidence: exact Poisson CIs; median follow-up by reverse Kaplan-Meier.",
            f"Confidence level {cfg.ci_level:.0%}. Numbers are rounded only for display; tables/*.csv and results.json "
            "hold full precision.",
        ]
    )
    sw = pd.DataFrame([{"software": k, "version": v} for k, v in meta["software"].items()])
    d.table(s, "software", "Software versions.", sw.rename(columns={"software": "package"}), frame=sw)
    # the config as the TOML file that reproduces it (complete; reads back to the same config), not a table
    # of Python values; tables/study_config.csv keeps one row per setting, each value in TOML
    s.code.append(
        CodeItem(
            "study_config",
            "Study configuration used, as a --config file (every setting, defaults included; "
            "tables/study_config.csv has one row per setting):",
            config_to_toml(cfg),
        )
    )
    cfg_rows = [{"section": sec, "setting": key, "value": val} for sec, key, val in config_rows(cfg)]
    d.table(s, "study_config", "Study configuration used (--config).", frame=pd.DataFrame(cfg_rows), show=False)


# ------------------------------------------------------------------------------------- entry point
def software_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "epi_spineage": __version__}
    for pkg in ("numpy", "pandas", "scipy", "matplotlib", "jinja2", "duckdb", "lifelines", "statsmodels"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def build_sections(
    results: StudyResults,
    fig_dir: Path,
    *,
    synthetic: bool,
    svg: bool = True,
    qc=None,
    gallery=None,
    meta: dict | None = None,
    timings: dict[str, float] | None = None,
) -> list[Section]:
    """The report's sections in order; ``timings`` (when given) receives each section's seconds."""
    meta = meta or {"software": software_versions()}
    d = _Doc(results, fig_dir, svg)
    for name, func in (
        ("summary", lambda: _summary(d, synthetic)),
        ("cohorts", lambda: _cohorts(d)),
        ("agreement", lambda: _agreement(d)),
        ("discrimination", lambda: _discrimination(d)),
        ("accelerated", lambda: _km(d)),
        ("cox", lambda: _cox(d)),
        ("mortality", lambda: _mortality(d)),
        ("rates", lambda: _rates(d)),
        ("competing", lambda: _competing(d)),
        ("imputation", lambda: _imputation(d)),
        ("subgroups", lambda: _subgroups(d)),
        ("frax", lambda: _frax(d)),
        ("agegap", lambda: _age_gap(d)),
        ("gradcam", lambda: _gradcam(d, gallery)),
        ("scoring", lambda: _scoring(d, qc)),
        ("truth", lambda: _truth(d)),
        ("quality", lambda: _quality(d, qc)),
        ("methods", lambda: _methods(d, meta)),
    ):
        t0 = time.perf_counter()
        func()
        if timings is not None:
            timings[f"section {name}"] = time.perf_counter() - t0
    return [s for s in d.sections if s.paragraphs or s.bullets or s.figures or s.tables or s.code]


def _imputation(d: _Doc) -> None:
    from epi_spineage.report.document_extra import imputation_section

    imputation_section(d)


def _frax(d: _Doc) -> None:
    from epi_spineage.report.document_extra import frax_section

    frax_section(d)


def _gradcam(d: _Doc, gallery) -> None:
    from epi_spineage.report.document_extra import gradcam_section

    gradcam_section(d, gallery)


def _scoring(d: _Doc, qc) -> None:
    from epi_spineage.report.document_extra import scoring_section

    scoring_section(d, qc)


def _truth(d: _Doc) -> None:
    from epi_spineage.report.document_extra import truth_section

    truth_section(d)


def write_study_report(
    out: Path,
    results: StudyResults,
    *,
    config: StudyConfig,
    synthetic: bool,
    source: str = "",
    qc=None,
    gallery=None,
    svg: bool = True,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Figures, tables, results.json, report.qmd and index.html under ``out``; returns index.html.

    ``progress`` (``epi_spineage.progress``) gets the ``WRITE_STEPS`` steps with their times.
    ``timings`` (when given) receives the seconds of each section and of each output file kind
    (``benchmarks/report.py`` prints them).
    """
    steps = progress.step if progress is not None else _untimed
    out = Path(out)
    meta = {
        "version": __version__,
        "generated_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source,
        "synthetic": synthetic,
        "software": software_versions(),
    }
    fig_dir = out / "figures"
    from epi_spineage.report.render import is_previous_report

    if fig_dir.exists() and is_previous_report(out):
        for old in (
            list(fig_dir.glob("*.png"))
            + list(fig_dir.glob("*.svg"))
            + list(fig_dir.glob("print/*.png"))
            + list(fig_dir.glob("print/*.pdf"))
        ):  # print copies: figures.py
            old.unlink()
    with steps("sections and figures"):
        sections = build_sections(
            results, fig_dir, synthetic=synthetic, svg=svg, qc=qc, gallery=gallery, meta=meta, timings=timings
        )
    t0 = time.perf_counter()
    data_dir = fig_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in results.curves.items():  # the typed sections name their plot data
        # summaries only (binned, event times, thinned): the file does not grow with the cohort
        compact_curve(frame).to_csv(data_dir / f"{name}.csv", index=False, float_format="%.6g")
    if timings is not None:
        timings["figure data (CSV)"] = time.perf_counter() - t0
    tables = dict(results.tables)
    for s in sections:  # display-only tables (e.g. per-cohort Table 1) are written too
        for t in s.tables:
            tables.setdefault(t.name, t.frame)
    payload = {"meta": meta, **results.to_json()}
    payload["tables"] = tables
    if qc is not None:
        payload["scoring_qc"] = qc.to_json()
    banner = SYNTHETIC_NOTICE if synthetic else None
    title = config.title + (" (synthetic demo)" if synthetic else "")
    with steps("write HTML, tables and exports"):
        return write_report(
            out, sections, title=title, banner=banner, results_json=payload, meta=meta, tables=tables, timings=timings
        )


#: the steps ``write_study_report`` reports to its progress display
WRITE_STEPS = 2


@contextlib.contextmanager
def _untimed(name: str) -> Iterator[None]:
    yield
