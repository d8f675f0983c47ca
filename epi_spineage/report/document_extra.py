"""Report sections that appear only when their inputs exist: FRAX, Grad-CAM, scoring QC, synthetic truth."""

from __future__ import annotations

import pandas as pd

from epi_spineage.report import figures as F
from epi_spineage.report import labels as L
from epi_spineage.report.render import format_ci, format_p, table_ref
from epi_spineage.report.results import FraxResult

FRAX_CAVEAT = (
    "Partial follow-up: FRAX gives 10-year probabilities, but follow-up here is shorter for many "
    "participants and censoring is ignored, so every FRAX metric below (classification, NRI, AUROC) "
    "compares probabilities with events observed so far, not with 10-year risk."
)


def frax_source_text(d) -> str:
    """Where the FRAX probabilities came from, stated from the data (never assumed to be the official tool)."""
    truth = d.r.truth or {}
    name = (truth.get("frax") or {}).get("name") if isinstance(truth, dict) else None
    if name:
        return (
            f"FRAX-like 10-year probabilities from {name}, the simulator's documented surrogate (not FRAX: "
            "FRAX is proprietary and cannot be shipped), computed twice: with chronological age and with "
            "spine age in its place."
        )
    src = (d.r.frax.source if d.r.frax else {}) or {}
    if src:
        where = "; ".join(f"{L.cohort(r)}: {v}" for r, v in src.items())
        return (
            f"FRAX 10-year probabilities as supplied with the cohort (frax_source: {where}), with chronological "
            "age and with spine age in its place."
        )
    return (
        "FRAX 10-year probabilities as supplied with the cohort table; the table does not say how they were "
        "computed (add a frax_source column, e.g. 'FRAXplus bulk, Korea, without BMD', to state it here)."
    )


def frax_section(d) -> None:
    cfg = d.r.config
    fx = d.r.frax or FraxResult()
    rec = fx.reclassification
    if not len(rec):
        return
    s = d.section("frax", "FRAX reclassification with spine age")
    s.paragraphs.append(
        frax_source_text(d) + f" High risk: MOF >= {cfg.frax_mof_threshold_pct:g}% or hip >= "
        f"{cfg.frax_hip_threshold_pct:g}%. Correct reclassification is up (low to high) among participants with an "
        "incident fracture and down among those without."
    )
    s.paragraphs.append(FRAX_CAVEAT)
    s.paragraphs.extend(fx.notes)
    n_tests = (
        int(
            len(fx.nri)
            + (fx.performance["model"] == "spine vs chronological").sum()
            + (len(fx.auroc) // 3 if len(fx.auroc) else 0)
        )
        if len(fx.performance)
        else 0
    )
    if n_tests:
        s.paragraphs.append(
            f"The p values of this section (NRI, McNemar, DeLong) are exploratory: {n_tests} tests, "
            "not adjusted for multiplicity."
        )
    ct = fx.crosstab
    ct = ct[ct["stratum"] == "all"] if len(ct) else ct
    if len(ct):
        disp = pd.DataFrame(
            {
                "cohort": ct["cohort"].map(L.cohort),
                "FRAX with age": ct["chronological"],
                "FRAX with spine age": ct["spine"],
                "n": ct["n"].map("{:,}".format),
                "fractures": ct["events"].map("{:,}".format),
                "observed risk, % (95% CI)": [
                    format_ci(100 * e, 100 * lo, 100 * hi, 1) if n else ""
                    for e, lo, hi, n in zip(
                        ct["estimate"] if "estimate" in ct else ct["observed_risk"],
                        ct["ci_low"],
                        ct["ci_high"],
                        ct["n"],
                    )
                ],
            }
        )
        d.table(
            s,
            "frax_crosstab",
            "High/low FRAX risk with chronological age vs with spine age, and the observed "
            "risk of incident fracture in each cell (Wilson CI; partial follow-up).",
            disp,
            frame=fx.crosstab,
        )
    disp = pd.DataFrame(
        {
            "cohort": rec["cohort"].map(L.cohort),
            "stratum": rec["stratum"],
            "n": rec["n"].map("{:,}".format),
            "up (low→high)": rec["up"].map("{:,}".format),
            "down (high→low)": rec["down"].map("{:,}".format),
            "unchanged": rec["unchanged"].map("{:,}".format),
            "net correct": rec["net_correct"],
        }
    )
    d.table(
        s,
        "frax_reclassification",
        "Reclassification among participants with and without incident fracture (partial follow-up).",
        disp,
        frame=rec,
    )
    nri = fx.nri
    if len(nri):
        disp = pd.DataFrame(
            {
                "cohort": nri["cohort"].map(L.cohort),
                "term": nri["term"].map(L.words),
                "NRI (95% CI)": [
                    format_ci(e, lo, hi, 3) for e, lo, hi in zip(nri["estimate"], nri["ci_low"], nri["ci_high"])
                ],
                "p": nri["p_value"].map(format_p),
            }
        )
        d.table(
            s, "frax_nri", "Categorical net reclassification index (partial follow-up; p exploratory).", disp, frame=nri
        )
    perf = fx.performance
    if len(perf):
        p = perf[perf["model"].isin(["chronological", "spine"])].copy()
        p["cell"] = [format_ci(e, lo, hi, 3) for e, lo, hi in zip(p["estimate"], p["ci_low"], p["ci_high"])]
        wide = p.pivot_table(index=["cohort", "term"], columns="model", values="cell", aggfunc="first", sort=False)
        mc = perf[perf["model"] == "spine vs chronological"].set_index(["cohort", "term"])["p_value"]
        disp = pd.DataFrame(
            {
                "cohort": [L.cohort(c) for c, _ in wide.index],
                "measure": [{"ppv": "PPV", "npv": "NPV", "odds_ratio": "odds ratio"}.get(m, m) for _, m in wide.index],
                "FRAX with age": wide.get("chronological", pd.Series("", index=wide.index)).to_list(),
                "FRAX with spine age": wide.get("spine", pd.Series("", index=wide.index)).to_list(),
                "p (McNemar)": [format_p(mc.get(k)) if k in mc.index else "" for k in wide.index],
            }
        )
        d.table(
            s,
            "frax_performance",
            "High-risk classification against incident fracture: sensitivity, "
            "specificity, PPV, NPV (Wilson CIs) and odds ratio (Woolf CI); partial follow-up; McNemar p "
            "exploratory.",
            disp,
            frame=perf,
        )
    au = fx.auroc
    if len(au):
        rows = []
        for (cohort, outcome), blk in au.groupby(["cohort", "outcome"], sort=False):
            for i in range(0, len(blk), 3):
                a, b, dd = blk.iloc[i], blk.iloc[i + 1], blk.iloc[i + 2]
                rows.append(
                    {
                        "cohort": L.cohort(cohort),
                        "outcome": L.outcome(outcome),
                        "comparison": dd["term"],
                        "AUROC, age": format_ci(a["estimate"], a["ci_low"], a["ci_high"], 3),
                        "AUROC, spine age": format_ci(b["estimate"], b["ci_low"], b["ci_high"], 3),
                        "p (DeLong)": format_p(dd["p_value"]),
                    }
                )
        d.table(
            s,
            "frax_auroc",
            "AUROC of FRAX probabilities with chronological age vs with spine age (paired "
            "DeLong), including the MOF probability for hip fracture where hip fractures are recorded; ignores "
            "censoring (partial follow-up); p exploratory.",
            pd.DataFrame(rows),
            frame=au,
        )


def gradcam_section(d, gallery) -> None:
    if gallery is None:
        return
    s = d.section("gradcam", "Grad-CAM gallery")
    if isinstance(gallery, str):
        s.paragraphs.append(f"No Grad-CAM gallery: {gallery}")
        return
    s.paragraphs.append(
        "Grad-CAM of the expected age (Selvaraju 2017) at the backbone's last feature map: regions "
        "that raise the predicted spine age. Images are the model inputs after preprocessing."
    )
    d.figure(s, "gradcam_gallery", F.image_gallery(gallery), "Grad-CAM heat maps over the preprocessed images.", 900)


def scoring_section(d, qc) -> None:
    if qc is None:
        return
    s = d.section("scoring", "Scoring quality control and drift")
    s.paragraphs.append(
        "From the scoring database: runs, read errors by type, score distributions by model, "
        "modality and manufacturer, linkage to the cohort, and drift of mean PAD (or spine age) by "
        "month and manufacturer against the model's first 12 months."
    )
    s.paragraphs.extend(qc.notes)
    for line in scoring_warnings(qc):
        s.warnings.append(line)
    captions = {
        "qc_linkage": "Linkage of scores to the cohort.",
        "qc_runs": "Scoring runs.",
        "qc_errors": "Images that could not be scored, by error type.",
        "qc_scores": "Spine-age distribution by model, modality and manufacturer.",
        "qc_drift": "Drift watch (flag: |delta| above the bound).",
    }
    for name in ("qc_linkage", "qc_runs", "qc_errors", "qc_scores", "qc_drift"):
        t = qc.tables.get(name)
        if t is not None and len(t):
            d.table(s, name, captions[name], frame=t, show=name != "qc_drift")  # drift: shown just below
    flat = getattr(qc, "flat_runs", None)
    if flat is not None and len(flat):
        d.table(s, "qc_flat_runs", "Runs whose predictions have near-zero spread (a degenerate model?).", frame=flat)
    _drift(d, s, qc.tables.get("qc_drift"))
    _domain_shift(d, s, qc)
    if not any(len(t) for t in qc.tables.values()):
        s.paragraphs.append("The database holds no scoring runs yet.")


def _num(x, fmt: str = "{:.2f}") -> str:
    return "" if x is None or pd.isna(x) else fmt.format(float(x))


def _domain_shift(d, s, qc) -> None:
    """Agreement per manufacturer and modality, and the age/sex-adjusted test of a PAD shift
    (docs/methods.md#domain-shift), with one sentence per test and the bias correction used."""
    agr = qc.tables.get("qc_agreement")
    shift = qc.tables.get("qc_pad_shift")
    if (agr is None or not len(agr)) and (shift is None or not len(shift)):
        return
    which = getattr(qc, "bias_correction", "pooled")
    s.paragraphs.append(
        "Domain shift across scanners: agreement of spine age with age per manufacturer and modality (the "
        "database view v_agreement_by_manufacturer), and whether PAD differs between manufacturers once age "
        "and sex are held fixed (OLS with an F test; each manufacturer's adjusted difference from the largest). "
        + (
            "Bias correction used: per manufacturer, fitted on the calibration set "
            f"{getattr(qc, 'bias_calibration_set', None)} (its participants have no corrected value)."
            if which == "per_manufacturer"
            else "Bias correction used: pooled (one line for every scanner)."
        )
    )
    if agr is not None and len(agr):
        disp = pd.DataFrame(
            {
                "model": agr["model_id"].astype(str),
                "manufacturer": agr["manufacturer"].astype(str),
                "modality": agr["modality"].astype(str),
                "n": agr["n"].map("{:,}".format),
                "mean PAD, y": agr["pad_mean_years"].map(_num),
                "SD, y": agr["pad_sd_years"].map(_num),
                "MAE, y": agr["mae_years"].map(_num),
                "r (95% CI)": [
                    format_ci(r, lo, hi, 3) if pd.notna(lo) else _num(r, "{:.3f}")
                    for r, lo, hi in zip(agr["pearson_r"], agr["r_ci_low"], agr["r_ci_high"])
                ],
                "mean PAD, pooled correction, y": agr["pad_corrected_mean_years"].map(_num),
                "mean PAD, per-manufacturer correction, y": agr["pad_corrected_by_manufacturer_mean_years"].map(_num),
            }
        )
        d.table(
            s,
            "qc_agreement",
            "Agreement per model, manufacturer and modality: uncorrected PAD (spine age - age), its SD, MAE, "
            "Pearson r of spine age with age (Fisher-z CI), and mean PAD after each correction (blank where none).",
            disp,
            frame=agr,
        )
    if shift is not None and len(shift):
        s.paragraphs.extend(getattr(qc, "shift_readings", []))
        terms = shift[shift["test"] == "t"]
        if len(terms):
            disp = pd.DataFrame(
                {
                    "model": terms["model_id"].astype(str),
                    "PAD": terms["pad"].astype(str),
                    "manufacturer": terms["level"].astype(str),
                    "reference": terms["reference"].astype(str),
                    "adjusted difference, y (95% CI)": [
                        format_ci(e, lo, hi, 2)
                        for e, lo, hi in zip(terms["estimate"], terms["ci_low"], terms["ci_high"])
                    ],
                    "p": terms["p_value"].map(format_p),
                    "n": terms["n_level"].map("{:,}".format),
                }
            )
            d.table(
                s,
                "qc_pad_shift",
                "PAD shift between manufacturers adjusted for age and sex: each manufacturer's mean PAD minus the "
                "reference's (OLS; t intervals); the F test over all manufacturers is in the sentences above.",
                disp,
                frame=shift,
            )


def _drift(d, s, frame) -> None:
    """Drift as small multiples (month x manufacturer) and a table of the flagged cells only; every cell
    stays in tables/qc_drift.csv."""
    if frame is None or not len(frame) or "delta_years" not in frame.columns:
        return
    cells = F.drift_cells(frame)
    d.figure(
        s,
        "drift",
        F.drift_small_multiples(frame),
        "Drift: mean change against the model's reference "
        "period by study month, one panel per manufacturer (grey band: the bound; red rings: flagged cells).",
    )
    flagged = F.flagged_drift(frame)
    s.paragraphs.append(
        f"{len(flagged):,} of {len(cells):,} month x manufacturer cells flagged"
        + (" (listed below)." if len(flagged) else ".")
    )
    if len(flagged):
        d.table(
            s,
            "qc_drift_flagged",
            "Flagged drift cells: images and change against the reference.",
            flagged.assign(**{"change, y": flagged["change, y"].map("{:+.2f}".format)}),
            frame=flagged,
        )


def truth_section(d) -> None:
    t = d.r.truth_table
    if t is None or not len(t):
        return
    s = d.section("truth", "Synthetic demo: planted truth vs estimate")
    cov = t["covered"].dropna()
    s.paragraphs.append(
        "The simulator planted these values (truth.json); the pipeline estimated them from the simulated data alone. "
        f"{int(cov.sum())} of {len(cov)} planted values lie inside the estimate's 95% CI (about 95% expected). "
        "Hazard ratios here use the generating covariates and the planted SD, so they differ from the models of "
        f"{table_ref('cox_fracture')}."
    )
    hr = t[t["quantity"].str.startswith("hr_per_sd_") & t["ci_low"].gt(0)]
    if len(hr):
        d.figure(
            s,
            "truth_vs_estimate",
            F.truth_vs_estimate(hr),
            "Planted hazard ratio per SD of PAD (open diamonds) and the pipeline's estimate with its 95% CI.",
            width=760,
        )
    disp = pd.DataFrame(
        {
            "quantity": t["label"],
            "planted": t["truth"].map("{:.3f}".format),
            "estimate (95% CI)": [
                format_ci(e, lo, hi, 3) for e, lo, hi in zip(t["estimate"], t["ci_low"], t["ci_high"])
            ],
            "inside CI": t["covered"].map({True: "yes", False: "no"}).fillna(""),
            "n": t["n"].map("{:,}".format),
            "how estimated": t["method"],
        }
    )
    d.table(s, "truth_vs_estimate", "Planted truth vs estimate.", disp, frame=t)


def scoring_warnings(qc) -> list[str]:
    """Red warnings from the scoring QC (weak models, flat runs, raw paths), where the QC reports them."""
    if qc is None:
        return []
    out = []
    weak = list(getattr(qc, "weak_models", []) or [])
    if weak:
        out.append(
            f"weak model: {', '.join(map(str, weak))} scored images although its quality check said 'weak' "
            "(trained with --allow-weak-model); its spine ages are not fit for analysis"
        )
    flat = getattr(qc, "flat_runs", None)
    if flat is not None and len(flat):
        out.append(
            f"{len(flat)} scoring run(s) gave predictions with near-zero spread (see the table): a flat "
            "predictor makes every PAD analysis meaningless"
        )
    if getattr(qc, "raw_paths_stored", False):
        out.append(
            "some rows were scored with --store-paths: raw file paths (which may hold identifiers) are stored "
            "in the database"
        )
    return out


def imputation_section(d) -> None:
    """Complete cases vs multiple imputation side by side; what was imputed (docs/methods.md#multiple-imputation)."""
    from epi_spineage.report.results import ImputationResult

    mi = d.r.imputation or ImputationResult(enabled=d.r.config.multiple_imputation)
    s = d.section("imputation", "Sensitivity analysis: multiple imputation of missing covariates")
    if not mi.enabled:
        s.paragraphs.append(
            "Switched off in the study config ([sensitivity] multiple_imputation = false): the Cox models use "
            "complete cases only."
        )
        return
    for role in mi.nothing_missing:
        s.paragraphs.append(
            f"{L.cohort(role).capitalize()}: no missing value in PAD or any covariate of the models, so nothing "
            "to impute (the complete-case estimates are the only ones)."
        )
    comp = mi.comparison
    if not len(comp):
        if not mi.nothing_missing:
            s.paragraphs.append("Not available (no model with an incomplete covariate could be fitted).")
        return
    s.paragraphs.append(
        "The Cox models with clinical covariates drop every participant with a missing covariate (complete "
        f"cases). Here they are refitted after multiple imputation: {mi.method}; seed {mi.seed}. Each cohort has "
        "one imputation model holding PAD, every covariate of the refitted models and each outcome. Estimates "
        "are pooled by Rubin's rules with the Barnard-Rubin small-sample degrees of freedom, taking the "
        "complete-data degrees of freedom as events minus the number of coefficients (what mice::pool uses for "
        "a Cox model); intervals use Student's t with the pooled df. PAD is per the same SD as the complete-case "
        "models."
    )
    for role, m in mi.m_used.items():
        if m != mi.m:
            s.paragraphs.append(
                f"{L.cohort(role).capitalize()}: {d.r.cohorts[role].n:,} rows, more than {mi.large_n:,}, so "
                f"{m} imputed sets instead of {mi.m} ([sensitivity] mi_imputations_large), to bound the time; "
                f"the relative efficiency 1 / (1 + FMI / m) is {1 / (1 + 0.3 / m):.0%} or more for a fraction of "
                "missing information (FMI) up to 0.3."
            )
    timing = "; ".join(f"{L.cohort(r)} {t:.1f} s" for r, t in mi.seconds.items())
    if timing:
        s.paragraphs.append(f"Time taken (imputation and refits): {timing}.")
    rows = []
    keys = ["cohort", "family", "outcome", "model"]
    for key, blk in comp.groupby(keys, sort=False):
        cohort, _family, outcome, model = key
        row = {"cohort": L.cohort(cohort), "outcome": L.outcome(outcome), "model": model}
        for analysis, label in (("complete cases", "complete cases"), ("multiple imputation", "multiple imputation")):
            r = blk[blk["analysis"] == analysis]
            if not len(r):
                row[f"{label}: HR per SD (95% CI)"], row[f"{label}: n/events"] = "not fitted", ""
                continue
            r = r.iloc[0]
            if r.get("note") == "no missing values":
                row[f"{label}: HR per SD (95% CI)"] = "no missing values: same as complete cases"
                row[f"{label}: n/events"] = ""
                continue
            row[f"{label}: HR per SD (95% CI)"] = _ci_text(r)
            has_n = pd.notna(r.get("n")) and pd.notna(r.get("events"))
            row[f"{label}: n/events"] = f"{int(r['n']):,}/{int(r['events']):,}" if has_n else ""
        r = blk[blk["analysis"] == "multiple imputation"]
        fmi = r["fmi"].iloc[0] if len(r) and "fmi" in r.columns else float("nan")
        dfcom = r["dfcom"].iloc[0] if len(r) and "dfcom" in r.columns else float("nan")
        row["fraction of missing information"] = f"{fmi:.2f}" if pd.notna(fmi) else ""
        row["complete-data df"] = f"{dfcom:.0f}" if pd.notna(dfcom) else ""
        rows.append(row)
    sets = "/".join(str(v) for v in dict.fromkeys(mi.m_used.values())) or str(mi.m)
    rule = d.r.config.min_events_per_parameter or 0
    d.table(
        s,
        "mi_comparison",
        "Hazard ratio (95% CI) per SD of PAD, complete cases vs multiple imputation (pooled over "
        f"{sets} imputed sets); 'not estimable': fewer than {rule:g} events "
        "per model parameter, or an infinite CI.",
        pd.DataFrame(rows),
        frame=comp,
    )
    miss = mi.missing
    if len(miss):
        disp = pd.DataFrame(
            {
                "cohort": miss["cohort"].map(L.cohort),
                "variable": miss["variable"].map(L.var),
                "imputed": miss["n_missing"].map("{:,}".format),
                "of": miss["n"].map("{:,}".format),
                "share imputed": miss["share_missing"].map("{:.1%}".format),
            }
        )
        d.table(s, "mi_missing", "Number and share of values imputed per variable.", disp, frame=miss)


def _ci_text(row) -> str:
    note = row.get("note")
    if isinstance(note, str) and note.startswith("not estimable"):
        return "not estimable (" + note.split(":", 1)[-1].strip() + ")"
    if not pd.notna(row["estimate"]):
        return "not estimable"
    return format_ci(float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"]), 2)
