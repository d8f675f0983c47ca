"""Figures of the report (matplotlib, Agg): each function takes tidy frames and returns a Figure.

Publication conventions: 10-11 pt fonts, confidence bands drawn, numbers at risk under Kaplan-Meier
plots, colour-blind-safe palette (Okabe-Ito). ``save_figure`` writes PNG + SVG (and 300 dpi PNG + vector
PDF under ``print/``) and returns the PNG bytes so the HTML can embed them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from epi_spineage.report.plotdata import thin_steps  # noqa: E402

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
    return plt.rc_context(_RC)  # type: ignore[arg-type]  # matplotlib's stubs want literal rc keys


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
            fig.savefig(
                out_dir / "print" / f"{name}.png",
                format="png",
                dpi=PRINT_DPI,
                bbox_inches="tight",
                metadata={"Software": None},
            )
            fig.savefig(
                out_dir / "print" / f"{name}.pdf",
                format="pdf",
                bbox_inches="tight",
                metadata={"CreationDate": None, "ModDate": None},
            )
    plt.close(fig)
    return png


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p = NA"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def age_scatter(panels: list[dict]):
    """Chronological vs spine age, one panel per cohort, drawn from 1-year cells of counts.

    ``panels``: dicts with ``title``; ``cells`` (``report.plotdata.age_histogram``: age_low, age_high,
    spine_low, spine_high, n); ``line`` (intercept, slope of the least-squares line); ``r``,
    ``ci_low``, ``ci_high``. The figure's cost and size do not depend on the number of participants.
    """
    from matplotlib.colors import LogNorm

    with _style():
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            cells = panel["cells"]
            n = int(cells["n"].sum()) if len(cells) else 0
            if len(cells):
                grid, ex, ey = _cell_grid(cells)
                mesh = ax.pcolormesh(
                    ex, ey, grid.T, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(2.0, float(np.nanmax(grid))))
                )
                mesh.set_rasterized(True)
                lo, hi = float(min(ex[0], ey[0])), float(max(ex[-1], ey[-1]))
                ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="identity")
                icept, slope = panel.get("line", (np.nan, np.nan))
                if np.isfinite(slope):
                    ax.plot(
                        [lo, hi],
                        [icept + slope * lo, icept + slope * hi],
                        color=PALETTE[3],
                        lw=1.5,
                        label="least-squares line",
                    )
                ax.set_xlim(ex[0], ex[-1])
                ax.set_ylim(ey[0], ey[-1])
            ax.set_title(panel["title"])
            ax.set_xlabel("chronological age (years)")
            ax.set_ylabel("spine age (years)")
            ax.text(
                0.03,
                0.97,
                f"r = {panel['r']:.2f} ({panel['ci_low']:.2f}-{panel['ci_high']:.2f})\nn = {n:,}",
                transform=ax.transAxes,
                va="top",
                ha="left",
                fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.8"},
            )
            ax.legend(loc="lower right", frameon=False)
        fig.tight_layout()
    return fig


def _cell_grid(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty cells back on their regular grid: counts (NaN where empty) and the two edge arrays."""
    axes = []
    for lo_col, hi_col in (("age_low", "age_high"), ("spine_low", "spine_high")):
        lo = cells[lo_col].to_numpy(float)
        w = float((cells[hi_col] - cells[lo_col]).iloc[0])
        start = float(lo.min())
        idx = np.rint((lo - start) / w).astype(int)
        axes.append((idx, start + w * np.arange(int(idx.max()) + 2)))
    (ix, ex), (iy, ey) = axes
    grid = np.full((len(ex) - 1, len(ey) - 1), np.nan)
    grid[ix, iy] = cells["n"].to_numpy(float)
    return grid, ex, ey


def roc_panels(
    curves: pd.DataFrame, aucs: pd.DataFrame, panel_order: list[tuple[str, str]], titles: dict[tuple[str, str], str]
):
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
                c = thin_steps(c, "fpr", "tpr", keys=())  # bounded drawing at any n
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
    # one y scale for all panels, so cohorts compare at a glance; set by the curves (a CI band in the sparse
    # tail may run off the top) with room for the legend
    tops = [
        float(np.nanmax(p["curves"]["estimate"].to_numpy(float)))
        for p in panels
        if len(p["curves"]) and np.isfinite(p["curves"]["estimate"].to_numpy(float)).any()
    ]
    ymax = min(1.0, max(tops) * 1.12 + 0.03) if tops else None
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
                c = thin_steps(c, "time_years", "estimate", keys=())  # bounded drawing at any n
                if c.empty:
                    continue
                color = PALETTE[i % len(PALETTE)]
                ax.step(
                    c["time_years"],
                    c["estimate"],
                    where="post",
                    color=color,
                    lw=1.7,
                    label=panel.get("labels", {}).get(g, g),
                )
                ax.fill_between(
                    c["time_years"], c["ci_low"], c["ci_high"], step="post", color=color, alpha=0.13, linewidth=0
                )
            ax.set_title(panel["title"])
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, ymax) if ymax else ax.set_ylim(bottom=0)
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
                        tab.text(
                            row["time_years"], i, f"{int(row['n_at_risk']):,}", ha="center", va="center", fontsize=7.8
                        )
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
            # one O(m) pass thins every curve of the panel before the per-curve selections below
            curves = thin_steps(panel["curves"].sort_values("time_years", kind="stable"), "time_years", "estimate")
            for i, g in enumerate(panel["groups"]):
                color = PALETTE[i % len(PALETTE)]
                for method, ls in (("1 - KM", "--"), ("Aalen-Johansen", "-")):
                    c = curves[(curves["group"] == g) & (curves["method"] == method)].sort_values("time_years")
                    c = thin_steps(c, "time_years", "estimate", keys=())  # bounded drawing at any n
                    if c.empty:
                        continue
                    ax.step(
                        c["time_years"], c["estimate"], where="post", color=color, ls=ls, lw=1.5, label=f"{g}, {method}"
                    )
                    if method == "Aalen-Johansen" and "ci_low" in c and c["ci_low"].notna().any():
                        ax.fill_between(
                            c["time_years"],
                            c["ci_low"],
                            c["ci_high"],
                            step="post",
                            color=color,
                            alpha=0.12,
                            linewidth=0,
                        )
            ax.set_title(panel["title"])
            ax.set_xlabel("years since index image")
            ax.set_ylabel("cumulative incidence of fracture")
            ax.set_ylim(bottom=0)
            ax.set_xlim(left=0)
            ax.legend(loc="upper left", frameon=False, fontsize=7.5)
        fig.tight_layout()
    return fig


def forest(
    table: pd.DataFrame,
    *,
    label: str = "label",
    title: str = "",
    xlabel: str = "hazard ratio (95% CI)",
    group: str | None = None,
    headings: Sequence[str] = (),
    estimate_header: str = "HR (95% CI)",
):
    """Forest plot on a log axis, with the numbers beside it in aligned columns.

    ``table`` columns: ``label``, estimate, ci_low, ci_high; optional ``n`` and ``events`` (an n / events
    column is drawn when present) and ``group`` (colours). ``headings``: columns whose values head blocks of
    rows (e.g. cohort, then outcome): a row label then reads just "model 1" under "external / any fracture"
    instead of repeating both on every row.
    """
    t = table.reset_index(drop=True)
    headings = [h for h in headings if h in t.columns]
    # the rows from top to bottom: ("head", text, level) or ("row", index)
    items: list[tuple] = []
    prev: list = [object()] * len(headings)
    for i in range(len(t)):
        keys = [t.loc[i, h] for h in headings]
        for lev, k in enumerate(keys):
            if k != prev[lev] or any(keys[j] != prev[j] for j in range(lev)):
                items.append(("head", str(k), lev))
        prev = keys
        items.append(("row", i))
    has_counts = "n" in t.columns and "events" in t.columns
    est = t["estimate"].to_numpy(float)
    lo = t["ci_low"].to_numpy(float)
    hi = t["ci_high"].to_numpy(float)
    ok = np.isfinite(est) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
    colors = [PALETTE[0]] * len(t)
    if group is not None:
        levels = list(dict.fromkeys(t[group]))
        colors = [PALETTE[levels.index(v) % len(PALETTE)] for v in t[group]]
    n_items = len(items)
    label_w = max(
        [len(str(v)) + 2 * len(headings) for v in t[label]]
        + [len(x[1]) + 2 * x[2] for x in items if x[0] == "head"]
        + [8]
    )
    left = min(max(1.3, 0.075 * label_w), 3.8)
    right = 1.85 + (0.95 if has_counts else 0.0)
    with _style():
        fig = plt.figure(figsize=(left + 3.4 + right, 0.27 * n_items + 1.15))
        gs = fig.add_gridspec(
            1,
            3,
            width_ratios=[left, 3.4, right],
            wspace=0.02,
            left=0.02,
            right=0.98,
            top=1 - 0.42 / (0.27 * n_items + 1.15),
            bottom=0.55 / (0.27 * n_items + 1.15),
        )
        lab_ax, ax, txt_ax = (fig.add_subplot(gs[0, j]) for j in range(3))
        ax.patch.set_alpha(0)  # a long heading may reach into the plot's margin
        ys = np.arange(n_items)[::-1].astype(float)
        for a in (lab_ax, ax, txt_ax):
            a.set_ylim(-0.6, n_items - 0.4)
        for a in (lab_ax, txt_ax):
            a.set_xlim(0, 1)
            a.axis("off")
        for y, it in zip(ys, items):
            if it[0] == "head":
                lab_ax.text(
                    0.02 + 0.06 * it[2],
                    y,
                    it[1],
                    va="center",
                    ha="left",
                    fontsize=8.8,
                    fontweight="bold" if it[2] == 0 else "normal",
                    style="italic" if it[2] else "normal",
                )
                continue
            i = it[1]
            lab_ax.text(0.02 + 0.06 * len(headings), y, str(t.loc[i, label]), va="center", ha="left", fontsize=8.5)
            if ok[i]:
                ax.plot([lo[i], hi[i]], [y, y], color=colors[i], lw=1.6)
                ax.plot([est[i]], [y], "s", color=colors[i], ms=5)
            text = f"{est[i]:.2f} ({lo[i]:.2f}-{hi[i]:.2f})" if ok[i] else "not estimable"
            txt_ax.text(0.98, y, text, va="center", ha="right", fontsize=8.5, family="DejaVu Sans Mono")
            if has_counts:
                n, e = t.loc[i, "n"], t.loc[i, "events"]
                ne = f"{int(n):,}/{int(e):,}" if pd.notna(n) and pd.notna(e) else ""
                txt_ax.text(
                    0.30 if right > 2 else 0.02,
                    y,
                    ne,
                    va="center",
                    ha="right" if right > 2 else "left",
                    fontsize=8.5,
                    family="DejaVu Sans Mono",
                )
        top = n_items - 0.4
        txt_ax.text(0.98, top, estimate_header, va="bottom", ha="right", fontsize=8.8, fontweight="bold")
        if has_counts:
            txt_ax.text(0.30, top, "n/events", va="bottom", ha="right", fontsize=8.8, fontweight="bold")
        ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
        _log_hr_axis(ax)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
        if ok.any():
            x0, x1 = min(0.8, np.nanmin(lo[ok]) * 0.9), max(1.25, np.nanmax(hi[ok]) * 1.1)
            ax.set_xlim(x0, x1)
            if x1 / x0 > 5:  # a wide range: doublings only, so the tick labels do not collide
                from matplotlib.ticker import FixedLocator, FuncFormatter

                ax.xaxis.set_major_locator(FixedLocator([0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32]))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        for y, it in zip(ys, items):  # faint separators above each top-level block
            if it[0] == "head" and it[2] == 0 and y < n_items - 1:
                for a in (lab_ax, ax, txt_ax):
                    a.axhline(y + 0.5, color="0.85", lw=0.6)
    return fig


def drift_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The drift table pooled over runs: one row per (model, manufacturer, study month), with the number of
    images, the n-weighted mean delta (years) and the flag; a cell is flagged when any of its runs is."""
    if frame is None or not len(frame) or "delta_years" not in frame.columns:
        return pd.DataFrame(
            columns=["model_id", "manufacturer", "study_month", "n_images", "delta_years", "bound_years", "drift_flag"]
        )
    f = frame.copy()
    f["study_month"] = pd.to_datetime(f["study_month"], errors="coerce")
    n = f["n_images"] if "n_images" in f.columns else pd.Series(1, index=f.index)
    f["_n"] = pd.to_numeric(n, errors="coerce").fillna(0)
    f["_w"] = f["_n"] * pd.to_numeric(f["delta_years"], errors="coerce")
    f["_nd"] = f["_n"].where(f["delta_years"].notna(), 0)
    f["drift_flag"] = f["drift_flag"].fillna(False).astype(bool) if "drift_flag" in f.columns else False
    bound = f["bound_years"] if "bound_years" in f.columns else pd.Series(np.nan, index=f.index)
    f["bound_years"] = pd.to_numeric(bound, errors="coerce")
    keys = [k for k in ("model_id", "manufacturer", "study_month") if k in f.columns]
    g = (
        f.groupby(keys, dropna=False, sort=True)
        .agg(
            n_images=("_n", "sum"),
            _w=("_w", "sum"),
            _nd=("_nd", "sum"),
            bound_years=("bound_years", "max"),
            drift_flag=("drift_flag", "any"),
        )
        .reset_index()
    )
    g["delta_years"] = np.where(g["_nd"] > 0, g["_w"] / g["_nd"].where(g["_nd"] > 0, 1), np.nan)
    g["n_images"] = g["n_images"].astype(int)
    return g.drop(columns=["_w", "_nd"])


def flagged_drift(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the flagged month x manufacturer cells, for the report's table: model, manufacturer, month
    (YYYY-MM), images, change (years) and the bound."""
    cells = drift_cells(frame)
    flagged = cells[cells["drift_flag"]]
    return pd.DataFrame(
        {
            "model": flagged["model_id"].astype(str) if "model_id" in flagged else "",
            "manufacturer": flagged["manufacturer"].astype(str),
            "month": [m.strftime("%Y-%m") if pd.notna(m) else "(no date)" for m in flagged["study_month"]],
            "images": flagged["n_images"].astype(int),
            "change, y": flagged["delta_years"].astype(float).round(2),
            "bound, y": flagged["bound_years"].astype(float),
        }
    ).reset_index(drop=True)


def drift_small_multiples(frame: pd.DataFrame, *, ncols: int = 3):
    """Drift as small multiples: one panel per manufacturer, mean change (years; PAD where the cohort gives
    age, else spine age) against study month, one line per model, flagged cells in red, the bound shaded."""
    cells = drift_cells(frame)
    mans = list(dict.fromkeys(cells["manufacturer"].astype(str))) or ["(none)"]
    n = len(mans)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    models = list(dict.fromkeys(cells["model_id"].astype(str))) if "model_id" in cells else [""]
    bound = float(np.nanmax(cells["bound_years"])) if len(cells) and cells["bound_years"].notna().any() else np.nan
    d = cells["delta_years"].to_numpy(float)
    lim = np.nanmax(np.abs(d[np.isfinite(d)])) if np.isfinite(d).any() else 1.0
    lim = max(lim, bound if np.isfinite(bound) else 0.0) * 1.15 + 0.2
    with _style():
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.3 * ncols, 2.3 * nrows + 0.5), squeeze=False, sharex=True, sharey=True
        )
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        for ax, man in zip(axes.ravel(), mans):
            sub = cells[cells["manufacturer"].astype(str) == man]
            if np.isfinite(bound):
                ax.axhspan(-bound, bound, color="0.93", lw=0)
            ax.axhline(0, color="0.6", lw=0.7)
            for j, m in enumerate(models):
                c = sub[sub["model_id"].astype(str) == m].sort_values("study_month") if "model_id" in sub else sub
                if c.empty:
                    continue
                ax.plot(
                    c["study_month"],
                    c["delta_years"],
                    color=PALETTE[j % len(PALETTE)],
                    lw=1.1,
                    marker="o",
                    ms=2.5,
                    label=m if len(models) > 1 else None,
                )
                fl = c[c["drift_flag"]]
                ax.plot(fl["study_month"], fl["delta_years"], "o", color=PALETTE[3], ms=5, mfc="none", mew=1.4)
            ax.set_title(f"{man} (n = {int(sub['n_images'].sum()):,})", fontsize=9.5)
            ax.set_ylim(-lim, lim)
            ax.tick_params(axis="x", labelsize=7.5, labelrotation=30)
        for ax in axes[:, 0]:
            ax.set_ylabel("change vs reference, y")
        if len(models) > 1:
            axes[0, 0].legend(frameon=False, fontsize=7.5, loc="upper left")
        fig.tight_layout()
    return fig


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return (0, 0)
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


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
        ax.errorbar(
            t["estimate"],
            ys,
            xerr=[t["estimate"] - t["ci_low"], t["ci_high"] - t["estimate"]],
            fmt="s",
            color=PALETTE[0],
            ms=5,
            lw=1.4,
            label="estimate (95% CI)",
        )
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
