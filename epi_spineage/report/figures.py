"""Figures of the report (matplotlib, Agg): each function takes tidy frames and returns a Figure.

Publication conventions: 10-11 pt fonts, confidence bands drawn, numbers at risk under Kaplan-Meier
plots, colour-blind-safe palette (Okabe-Ito). ``save_figure`` writes PNG + SVG (and 300 dpi PNG + vector
PDF under ``print/``) and returns the PNG bytes so the HTML can embed them.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Okabe-Ito, colour-blind safe
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "svg.fonttype": "none",
    "svg.hashsalt": "epi-spineage",  # deterministic SVG ids
}


def _style():
    return plt.rc_context(_RC)


#: resolution of the print copies (figures/print/*.png), as journals ask
PRINT_DPI = 300


def save_figure(fig, out_dir: Path | None, name: str, *, dpi: int = 130, svg: bool = True) -> bytes:
    """Write ``name.png`` (and, unless ``svg`` is False, ``name.svg`` and the print copies
    ``print/name.png`` at 300 dpi and ``print/name.pdf``, vector) under ``out_dir``; return the PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    png = buf.getvalue()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.png").write_bytes(png)
        if svg:
            fig.savefig(out_dir / f"{name}.svg", format="svg", bbox_inches="tight", metadata={"Date": None})
            # for a journal: 300 dpi PNG and vector PDF under figures/print/
            (out_dir / "print").mkdir(exist_ok=True)
            fig.savefig(out_dir / "print" / f"{name}.png", format="png", dpi=PRINT_DPI, bbox_inches="tight",
                        metadata={"Software": None})
            fig.savefig(out_dir / "print" / f"{name}.pdf", format="pdf", bbox_inches="tight",
                        metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
    return png


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p = NA"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def age_scatter(panels: list[dict]):
    """Chronological vs spine age, one panel per cohort.

    ``panels``: dicts with ``title``, ``age`` and ``spine_age`` (arrays), ``r``, ``ci_low``, ``ci_high``.
    Large cohorts are drawn as a 2-D histogram so the figure stays small and readable.
    """
    with _style():
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            x = np.asarray(panel["age"], float)
            y = np.asarray(panel["spine_age"], float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            if len(x) > 4000:
                ax.hexbin(x, y, gridsize=45, cmap="Blues", mincnt=1, bins="log", linewidths=0)
            else:
                ax.scatter(x, y, s=5, alpha=0.35, color=PALETTE[0], linewidths=0, rasterized=True)
            if len(x):
                lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
                ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="identity")
                if len(x) > 2 and np.ptp(x) > 0:
                    slope, icept = np.polyfit(x, y, 1)
                    ax.plot([lo, hi], [icept + slope * lo, icept + slope * hi], color=PALETTE[3], lw=1.5,
                            label="least-squares line")
            ax.set_title(panel["title"])
            ax.set_xlabel("chronological age (years)")
            ax.set_ylabel("spine age (years)")
            ax.text(0.03, 0.97,
                    f"r = {panel['r']:.2f} ({panel['ci_low']:.2f}-{panel['ci_high']:.2f})\nn = {len(x):,}",
                    transform=ax.transAxes, va="top", ha="left", fontsize=9,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"})
            ax.legend(loc="lower right", frameon=False)
        fig.tight_layout()
    return fig


def roc_panels(curves: pd.DataFrame, aucs: pd.DataFrame, panel_order: list[tuple[str, str]],
               titles: dict[tuple[str, str], str]):
    """ROC curves, one panel per (cohort, outcome); one line per predictor with AUROC in the legend.

    ``curves``: columns cohort, outcome, predictor, fpr, tpr. ``aucs``: cohort, outcome, predictor,
    estimate, ci_low, ci_high, and optionally ``p_delong`` per panel.
    """
    n = len(panel_order)
    ncols = min(n, 2)
    nrows = int(np.ceil(n / ncols))
    with _style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.1 * ncols, 3.9 * nrows), squeeze=False)
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        for ax, key in zip(axes.ravel(), panel_order):
            cohort, outcome = key
            sub = curves[(curves["cohort"] == cohort) & (curves["outcome"] == outcome)]
            asub = aucs[(aucs["cohort"] == cohort) & (aucs["outcome"] == outcome)]
            for i, (pred, c) in enumerate(sub.groupby("predictor", sort=False)):
                row = asub[asub["predictor"] == pred]
                label = pred
                if len(row):
                    r = row.iloc[0]
                    label = f"{pred}: {r['estimate']:.2f} ({r['ci_low']:.2f}-{r['ci_high']:.2f})"
                ax.step(c["fpr"], c["tpr"], where="post", color=PALETTE[i % len(PALETTE)], lw=1.6, label=label)
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
            p = asub["p_delong"].dropna() if "p_delong" in asub else pd.Series(dtype=float)
            title = titles.get(key, f"{cohort}: {outcome}")
            ax.set_title(title + (f"\nDeLong {_fmt_p(float(p.iloc[0]))}" if len(p) else ""))
            ax.set_xlabel("1 - specificity")
            ax.set_ylabel("sensitivity")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_aspect("equal")
            ax.legend(loc="lower right", title="AUROC (95% CI)", frameon=False)
        fig.tight_layout()
    return fig


def km_panels(panels: list[dict], *, ylabel: str = "cumulative incidence of fracture"):
    """Kaplan-Meier cumulative failure with CI bands and a numbers-at-risk table under each panel.

    Each panel dict: ``title``; ``curves`` (group, time_years, estimate, ci_low, ci_high; a step
    function starting at time 0); ``at_risk`` (group, time_years, n_at_risk); ``groups`` (order);
    ``labels`` (group -> legend text, e.g. with HR); ``note`` (log-rank line).
    """
    n = len(panels)
    with _style():
        fig = plt.figure(figsize=(5.2 * n, 5.6))
        outer = fig.add_gridspec(2, n, height_ratios=[3.6, 1.25], hspace=0.38, wspace=0.42)
        for j, panel in enumerate(panels):
            ax = fig.add_subplot(outer[0, j])
            tab = fig.add_subplot(outer[1, j], sharex=ax)
            curves, at_risk = panel["curves"], panel["at_risk"]
            groups = panel["groups"]
            tmax = float(curves["time_years"].max()) if len(curves) else 1.0
            for i, g in enumerate(groups):
                c = curves[curves["group"] == g].sort_values("time_years")
                if c.empty:
                    continue
                color = PALETTE[i % len(PALETTE)]
                ax.step(c["time_years"], c["estimate"], where="post", color=color, lw=1.7,
                        label=panel.get("labels", {}).get(g, g))
                ax.fill_between(c["time_years"], c["ci_low"], c["ci_high"], step="post", color=color,
                                alpha=0.13, linewidth=0)
            ax.set_title(panel["title"])
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.set_xlim(0, tmax)
            ax.legend(loc="upper left", frameon=False, fontsize=7.8)
            if panel.get("note"):
                ax.text(0.98, 0.02, panel["note"], transform=ax.transAxes, ha="right", va="bottom", fontsize=8.5)
            plt.setp(ax.get_xticklabels(), visible=True)
            # numbers at risk
            tab.set_ylim(-0.5, len(groups) - 0.5)
            tab.invert_yaxis()
            tab.set_yticks(range(len(groups)))
            tab.set_yticklabels([panel.get("short", {}).get(g, g) for g in groups], fontsize=7.8)
            tab.tick_params(axis="y", pad=16)
            for i, g in enumerate(groups):
                tab.get_yticklabels()[i].set_color(PALETTE[i % len(PALETTE)])
                a = at_risk[at_risk["group"] == g]
                for _, row in a.iterrows():
                    if row["time_years"] <= tmax + 1e-9:
                        tab.text(row["time_years"], i, f"{int(row['n_at_risk']):,}", ha="center", va="center",
                                 fontsize=7.8)
            tab.set_xlabel("years since index image")
            tab.set_title("number at risk", fontsize=8.5, loc="left")
            for side in ("left", "top", "right"):
                tab.spines[side].set_visible(False)
            tab.tick_params(axis="y", length=0)
            ticks = sorted(set(at_risk["time_years"].tolist()))
            ax.set_xticks(ticks)
            tab.set_xticks(ticks)
    return fig


def cuminc_panels(panels: list[dict]):
    """Cumulative incidence of fracture: 1 - KM (dashed) vs Aalen-Johansen with death competing.

    Each panel: ``title``, ``curves`` with columns method ('1 - KM' / 'Aalen-Johansen'), group,
    time_years, estimate (ci_low/ci_high optional), ``groups`` (order).
    """
    n = len(panels)
    with _style():
        fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 4.0), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            curves = panel["curves"]
            for i, g in enumerate(panel["groups"]):
                color = PALETTE[i % len(PALETTE)]
                for method, ls in (("1 - KM", "--"), ("Aalen-Johansen", "-")):
                    c = curves[(curves["group"] == g) & (curves["method"] == method)].sort_values("time_years")
                    if c.empty:
                        continue
                    ax.step(c["time_years"], c["estimate"], where="post", color=color, ls=ls, lw=1.5,
                            label=f"{g}, {method}")
                    if method == "Aalen-Johansen" and "ci_low" in c and c["ci_low"].notna().any():
                        ax.fill_between(c["time_years"], c["ci_low"], c["ci_high"], step="post", color=color,
                                        alpha=0.12, linewidth=0)
            ax.set_title(panel["title"])
            ax.set_xlabel("years since index image")
            ax.set_ylabel("cumulative incidence of fracture")
            ax.set_ylim(bottom=0)
            ax.set_xlim(left=0)
            ax.legend(loc="upper left", frameon=False, fontsize=7.5)
        fig.tight_layout()
    return fig


def forest(table: pd.DataFrame, *, label: str = "label", title: str = "", xlabel: str = "hazard ratio (95% CI)",
           group: str | None = None):
    """Forest plot on a log axis. ``table`` columns: label, estimate, ci_low, ci_high (+ optional group)."""
    t = table.reset_index(drop=True)
    n = len(t)
    with _style():
        fig, ax = plt.subplots(figsize=(6.8, 0.42 * n + 1.3))
        ys = np.arange(n)[::-1]
        colors = [PALETTE[0]] * n
        if group is not None:
            levels = list(dict.fromkeys(t[group]))
            colors = [PALETTE[levels.index(v) % len(PALETTE)] for v in t[group]]
        est = t["estimate"].to_numpy(float)
        lo = t["ci_low"].to_numpy(float)
        hi = t["ci_high"].to_numpy(float)
        ok = np.isfinite(est) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        for y, e, l, h, c, good in zip(ys, est, lo, hi, colors, ok):
            if good:
                ax.plot([l, h], [y, y], color=c, lw=1.6)
                ax.plot([e], [y], "s", color=c, ms=5)
        ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
        _log_hr_axis(ax)
        ax.set_yticks(ys)
        ax.set_yticklabels(t[label], fontsize=8.5)
        text = [f"{e:.2f} ({l:.2f}-{h:.2f})" if g else "NA" for e, l, h, g in zip(est, lo, hi, ok)]
        for y, s in zip(ys, text):
            ax.text(1.02, y, s, transform=ax.get_yaxis_transform(), va="center", fontsize=8.5)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
        if ok.any():
            ax.set_xlim(min(0.8, np.nanmin(lo[ok]) * 0.9), max(1.25, np.nanmax(hi[ok]) * 1.1))
        fig.tight_layout()
    return fig


def _log_hr_axis(ax) -> None:
    """Log x axis with plain tick labels (0.5, 1, 2) instead of powers of ten."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 10, 15, 20]))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(NullFormatter())


def truth_vs_estimate(table: pd.DataFrame, *, xlabel: str = "hazard ratio per SD of PAD", log: bool = True):
    """Planted value vs estimate (with CI) for the synthetic demo. Columns label, truth, estimate, ci_low, ci_high."""
    t = table.reset_index(drop=True)
    n = len(t)
    with _style():
        fig, ax = plt.subplots(figsize=(6.8, 0.42 * n + 1.3))
        ys = np.arange(n)[::-1]
        ax.errorbar(t["estimate"], ys, xerr=[t["estimate"] - t["ci_low"], t["ci_high"] - t["estimate"]],
                    fmt="s", color=PALETTE[0], ms=5, lw=1.4, label="estimate (95% CI)")
        ax.plot(t["truth"], ys, "D", mfc="none", mec=PALETTE[3], ms=7, mew=1.6, label="planted truth")
        ax.set_yticks(ys)
        ax.set_yticklabels(t["label"], fontsize=8.5)
        if log:
            ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
            _log_hr_axis(ax)
        ax.set_xlabel(xlabel)
        ax.legend(loc="lower right", frameon=False)
        ax.set_title("Synthetic demo: does the pipeline recover what was planted?")
        fig.tight_layout()
    return fig


def image_gallery(items: list[dict], *, ncols: int = 4):
    """Grad-CAM gallery: each item has ``image`` (2-D array), optional ``overlay`` (2-D in [0,1]), ``title``."""
    n = max(len(items), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    with _style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 4.0 * nrows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, item in zip(axes.ravel(), items):
            ax.imshow(item["image"], cmap="gray", aspect="equal")
            if item.get("overlay") is not None:
                ax.imshow(item["overlay"], cmap="jet", alpha=0.35, aspect="equal", vmin=0, vmax=1)
            ax.set_title(item.get("title", ""), fontsize=8)
        fig.tight_layout()
    return fig
