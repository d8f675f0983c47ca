"""Report sections that appear only when their inputs exist: FRAX, Grad-CAM, scoring QC, synthetic truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from epi_spineage.report import figures as F
from epi_spineage.report import labels as L
from epi_spineage.report.render import format_ci, format_p


def frax_section(d) -> None:
    cfg = d.r.config
    rec = d.t("frax_reclassification")
    if not len(rec):
        return
    s = d.section("frax", "FRAX reclassification with spine age")
    s.paragraphs.append(
        f"FRAX 10-year probabilities computed twice by the official tool (Korea, without BMD): with chronological "
        f"age and with spine age in its place. High risk: MOF >= {cfg.frax_mof_threshold_pct:g}% or hip >= "
        f"{cfg.frax_hip_threshold_pct:g}%. Correct reclassification is up (low to high) among participants with an "
        "incident fracture and down among those without.")
    if d.r.numbers.get("frax_notes"):
        s.paragraphs.extend(d.r.numbers["frax_notes"])
    ct = d.t("frax_crosstab")
    ct = ct[ct["stratum"] == "all"]
    if len(ct):
        disp = pd.DataFrame({
            "cohort": ct["cohort"].map(L.cohort), "FRAX with age": ct["chronological"],
            "FRAX with spine age": ct["spine"], "n": ct["n"].map("{:,}".format), "fractures": ct["events"].map("{:,}".format),
            "observed risk, % (95% CI)": [format_ci(100 * e, 100 * lo, 100 * hi, 1) if n else "" for e, lo, hi, n in
                                          zip(ct["estimate"] if "estimate" in ct else ct["observed_risk"], ct["ci_low"],
                                              ct["ci_high"], ct["n"])]})
        d.table(s, "frax_crosstab", "High/low FRAX risk with chronological age vs with spine age, and the observed "
                "risk of incident fracture in each cell (Wilson CI).", disp)
    disp = pd.DataFrame({"cohort": rec["cohort"].map(L.cohort), "stratum": rec["stratum"],
                         "n": rec["n"].map("{:,}".format), "up (low→high)": rec["up"].map("{:,}".format),
                         "down (high→low)": rec["down"].map("{:,}".format),
                         "unchanged": rec["unchanged"].map("{:,}".format), "net correct": rec["net_correct"]})
    d.table(s, "frax_reclassification", "Reclassification among participants with and without incident fracture.", disp)
    nri = d.t("frax_nri")
    if len(nri):
        disp = pd.DataFrame({"cohort": nri["cohort"].map(L.cohort), "term": nri["term"].map(L.words),
                             "NRI (95% CI)": [format_ci(e, lo, hi, 3) for e, lo, hi in
                                              zip(nri["estimate"], nri["ci_low"], nri["ci_high"])],
                             "p": nri["p_value"].map(format_p)})
        d.table(s, "frax_nri", "Categorical net reclassification index.", disp)
    perf = d.t("frax_performance")
    if len(perf):
        p = perf[perf["model"].isin(["chronological", "spine"])].copy()
        p["cell"] = [format_ci(e, lo, hi, 3) for e, lo, hi in zip(p["estimate"], p["ci_low"], p["ci_high"])]
        wide = p.pivot_table(index=["cohort", "term"], columns="model", values="cell", aggfunc="first", sort=False)
        mc = perf[perf["model"] == "spine vs chronological"].set_index(["cohort", "term"])["p_value"]
        disp = pd.DataFrame({
            "cohort": [L.cohort(c) for c, _ in wide.index],
            "measure": [{"ppv": "PPV", "npv": "NPV", "odds_ratio": "odds ratio"}.get(m, m) for _, m in wide.index],
            "FRAX with age": wide.get("chronological", pd.Series("", index=wide.index)).to_list(),
            "FRAX with spine age": wide.get("spine", pd.Series("", index=wide.index)).to_list(),
            "p (McNemar)": [format_p(mc.get(k)) if k in mc.index else "" for k in wide.index]})
        d.table(s, "frax_performance", "High-risk classification against incident fracture: sensitivity, "
                "specificity, PPV, NPV (Wilson CIs) and odds ratio (Woolf CI).", disp)
    au = d.t("frax_auroc")
    if len(au):
        rows = []
        for (cohort, outcome), blk in au.groupby(["cohort", "outcome"], sort=False):
            for i in range(0, len(blk), 3):
                a, b, dd = blk.iloc[i], blk.iloc[i + 1], blk.iloc[i + 2]
                rows.append({"cohort": L.cohort(cohort), "outcome": L.outcome(outcome), "comparison": dd["term"],
                             "AUROC, age": format_ci(a["estimate"], a["ci_low"], a["ci_high"], 3),
                             "AUROC, spine age": format_ci(b["estimate"], b["ci_low"], b["ci_high"], 3),
                             "p (DeLong)": format_p(dd["p_value"])})
        d.table(s, "frax_auroc", "AUROC of FRAX probabilities with chronological age vs with spine age (paired DeLong).",
                pd.DataFrame(rows))


def gradcam_section(d, gallery) -> None:
    if gallery is None:
        return
    s = d.section("gradcam", "Grad-CAM gallery")
    if isinstance(gallery, str):
        s.paragraphs.append(f"No Grad-CAM gallery: {gallery}")
        return
    s.paragraphs.append("Grad-CAM of the expected age (Selvaraju 2017) at the backbone's last feature map: regions "
                        "that raise the predicted spine age. Images are the model inputs after preprocessing.")
    d.figure(s, "gradcam_gallery", F.image_gallery(gallery), "Grad-CAM heat maps over the preprocessed images.", 900)


def scoring_section(d, qc) -> None:
    if qc is None:
        return
    s = d.section("scoring", "Scoring quality control and drift")
    s.paragraphs.append("From the scoring database: runs, read errors by type, score distributions by model, "
                        "modality and manufacturer, linkage to the cohort, and drift of mean PAD (or spine age) by "
                        "month and manufacturer against the model's first 12 months.")
    s.paragraphs.extend(qc.notes)
    captions = {"qc_linkage": "Linkage of scores to the cohort.", "qc_runs": "Scoring runs.",
                "qc_errors": "Images that could not be scored, by error type.",
                "qc_scores": "Spine-age distribution by model, modality and manufacturer.",
                "qc_drift": "Drift watch (flag: |delta| above the bound)."}
    for name in ("qc_linkage", "qc_runs", "qc_errors", "qc_scores", "qc_drift"):
        t = qc.tables.get(name)
        if t is not None and len(t):
            d.r.tables[name] = t
            d.table(s, name, captions[name], frame=t, show=name != "qc_drift")  # drift: shown just below
    _drift(d, s, qc.tables.get("qc_drift"))
    if not any(len(t) for t in qc.tables.values()):
        s.paragraphs.append("The database holds no scoring runs yet.")


def _drift(d, s, frame) -> None:
    """Drift as small multiples (month x manufacturer) and a table of the flagged cells only; every cell
    stays in tables/qc_drift.csv."""
    if frame is None or not len(frame) or "delta_years" not in frame.columns:
        return
    cells = F.drift_cells(frame)
    d.figure(s, "drift", F.drift_small_multiples(frame), "Drift: mean change against the model's reference "
             "period by study month, one panel per manufacturer (grey band: the bound; red rings: flagged cells).")
    flagged = F.flagged_drift(frame)
    s.paragraphs.append(f"{len(flagged):,} of {len(cells):,} month x manufacturer cells flagged"
                        + (" (listed below)." if len(flagged) else "."))
    if len(flagged):
        d.table(s, "qc_drift_flagged", "Flagged drift cells: images and change against the reference.",
                flagged.assign(**{"change, y": flagged["change, y"].map("{:+.2f}".format)}), frame=flagged)


def truth_section(d) -> None:
    t = d.t("truth_vs_estimate")
    if not len(t):
        return
    s = d.section("truth", "Synthetic demo: planted truth vs estimate")
    cov = t["covered"].dropna()
    s.paragraphs.append(
        "The simulator planted these values (truth.json); the pipeline estimated them from the simulated data alone. "
        f"{int(cov.sum())} of {len(cov)} planted values lie inside the estimate's 95% CI (about 95% expected). "
        "Hazard ratios here use the generating covariates and the planted SD, so they differ from Table 2's models.")
    hr = t[t["quantity"].str.startswith("hr_per_sd_") & t["ci_low"].gt(0)]
    if len(hr):
        d.figure(s, "truth_vs_estimate", F.truth_vs_estimate(hr), "Planted hazard ratio per SD of PAD (open "
                 "diamonds) and the pipeline's estimate with its 95% CI.", width=760)
    disp = pd.DataFrame({"quantity": t["label"], "planted": t["truth"].map("{:.3f}".format),
                         "estimate (95% CI)": [format_ci(e, lo, hi, 3) for e, lo, hi in
                                               zip(t["estimate"], t["ci_low"], t["ci_high"])],
                         "inside CI": t["covered"].map({True: "yes", False: "no"}).fillna(""),
                         "n": t["n"].map("{:,}".format), "how estimated": t["method"]})
    d.table(s, "truth_vs_estimate", "Planted truth vs estimate.", disp)
