"""The report on a phone (420 and 360 px) and on a wide screen (issue 16): no sideways scrolling of the page
outside the tables' own scroll boxes, captions readable, one-column contents, a banner that scrolls away."""

from __future__ import annotations

import pandas as pd
import pytest

from epi_spineage.report.layout import LANDSCAPE_CHARS, PORTRAIT_CHARS, printed_width, table_classes
from tests.report.test_report_browser import browser  # noqa: F401  (the shared headless Chromium)


def test_table_classes_by_printed_width():
    narrow = pd.DataFrame({"cohort": ["external"], "n": ["1,500"]})
    assert table_classes(narrow) == ""
    wide = pd.DataFrame(
        {f"model {i} n/events": ["1,234/56"] for i in range(12)}
        | {f"model {i}": ["1.74 (1.46-2.07)"] for i in range(6)}
    )
    assert printed_width(wide) > PORTRAIT_CHARS
    assert "wide" in table_classes(wide).split()
    huge = pd.DataFrame({f"c{i}": ["1.74 (1.46-2.07)"] for i in range(14)})
    assert printed_width(huge) > LANDSCAPE_CHARS and "xwide" in table_classes(huge).split()
    long = pd.DataFrame({"a": [str(i) for i in range(40)]})
    assert table_classes(long) == "long"


_LAYOUT = """
const vw = window.innerWidth;
const out = [];
for (const el of document.querySelectorAll('body *')) {
  if (el.closest('.table-wrap')) continue;
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.right > vw + 1) out.push(el.tagName + '.' + el.className + ' ' + Math.round(r.right));
}
const caps = Array.from(document.querySelectorAll('figcaption.table-caption'))
  .filter(c => c.getBoundingClientRect().right > vw + 1).map(c => c.id);
const banner = document.querySelector('.banner');
return {scroll: document.documentElement.scrollWidth, inner: vw, overflow: out.slice(0, 10), caps: caps,
        tocColumns: getComputedStyle(document.querySelector('nav.toc ol')).columnCount,
        bannerPosition: banner ? getComputedStyle(banner).position : '',
        bannerHeight: banner ? banner.getBoundingClientRect().height : 0,
        imgs: Array.from(document.images).filter(i => i.getBoundingClientRect().right > vw + 1).length,
        body: document.body.getBoundingClientRect().width};
"""


def _layout_at(driver, url: str, width: int) -> dict:
    driver.set_window_size(width, 900)
    driver.get(url)
    # the window's outer size includes no chrome in headless mode, but make sure of the viewport we got
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:
        driver.set_window_size(width + (width - inner), 900)
        driver.get(url)
    return driver.execute_script(_LAYOUT)


@pytest.mark.browser
@pytest.mark.parametrize("width", [420, 360])
def test_phone_width_has_no_page_overflow(browser, built_report, width):  # noqa: F811
    got = _layout_at(browser, built_report.index.resolve().as_uri(), width)
    assert got["inner"] == width
    assert got["scroll"] <= got["inner"], got
    assert got["overflow"] == [] and got["imgs"] == 0, got
    assert got["caps"] == [], "table captions run past the screen: " + ", ".join(got["caps"])
    assert got["tocColumns"] in ("1", "auto")
    assert got["bannerPosition"] != "sticky"  # scrolls away instead of covering a tenth of the screen


@pytest.mark.browser
def test_wide_screen_uses_the_room(browser, built_report):  # noqa: F811
    url = built_report.index.resolve().as_uri()
    at_1100 = _layout_at(browser, url, 1100)
    at_1920 = _layout_at(browser, url, 1920)
    assert at_1920["body"] >= 1500 > at_1100["body"]
    assert at_1920["scroll"] <= at_1920["inner"]
    browser.set_window_size(1200, 1500)  # what the other browser tests expect


# ------------------------------------------------------------------------------------------------ figures
def _texts(fig) -> list:
    return [t for ax in fig.axes for t in ax.texts]


def test_forest_groups_rows_with_counts_and_aligned_estimates():
    import matplotlib.pyplot as plt

    from epi_spineage.report import figures as F

    rows = [
        {
            "cohort": c,
            "outcome": o,
            "model": m,
            "estimate": 1.3,
            "ci_low": 1.1,
            "ci_high": 1.5,
            "n": 1500,
            "events": 205,
        }
        for c in ("derivation (test set)", "external")
        for o in ("any fracture", "hip fracture")
        for m in ("model 1", "model 2")
    ]
    rows[0].update(estimate=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    fig = F.forest(pd.DataFrame(rows), label="model", group="model", headings=("cohort", "outcome"))
    texts = [t.get_text() for t in _texts(fig)]
    assert texts.count("external") == 1 and texts.count("hip fracture") == 2  # headings, not repeated per row
    assert texts.count("model 1") == 4
    assert "n/events" in texts and texts.count("1,500/205") == 8
    hr = [t for t in _texts(fig) if t.get_text().startswith("1.30 (") or t.get_text() == "not estimable"]
    assert len(hr) == 8 and len({(t.get_position()[0], t.get_ha()) for t in hr}) == 1  # one right-aligned column
    plt.close(fig)


def test_km_panels_share_the_y_axis():
    import matplotlib.pyplot as plt

    from epi_spineage.report import figures as F

    def panel(top: float) -> dict:
        curves = pd.DataFrame(
            {
                "group": "g",
                "time_years": [0.0, 1.0, 2.0],
                "estimate": [0.0, top / 2, top],
                "ci_low": [0.0, 0.0, top / 2],
                "ci_high": [0.0, top, top * 1.5],
            }
        )
        return {
            "title": "x",
            "curves": curves,
            "groups": ["g"],
            "at_risk": pd.DataFrame({"group": ["g"], "time_years": [0.0], "n_at_risk": [10]}),
        }

    fig = F.km_panels([panel(0.1), panel(0.3)])
    top_axes = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(top_axes) == 2 and top_axes[0].get_ylim() == top_axes[1].get_ylim()
    assert top_axes[0].get_ylim()[1] >= 0.3
    plt.close(fig)


def test_a_figure_is_never_shown_wider_than_drawn():
    import io

    import matplotlib.pyplot as plt

    from epi_spineage.report.figures import png_size
    from epi_spineage.report.render import FigureItem, Section, render_html

    fig, _ = plt.subplots(figsize=(4, 3))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    png = buf.getvalue()
    assert png_size(png) == (400, 300)
    s = Section("a", "A", figures=[FigureItem("one_panel", "c", png, width=980, number=1)])
    assert 'width="400"' in render_html([s], title="t", banner=None, meta={"version": "0", "generated_utc": "x"})


def _drift_frame() -> pd.DataFrame:
    months = pd.date_range("2020-01-01", periods=24, freq="MS")
    rows = []
    for man in ("ACME", "Hologic"):
        for i, m in enumerate(months):
            for run in ("r1", "r2"):
                delta = 3.0 if (man == "ACME" and i == 20) else 0.1
                rows.append(
                    {
                        "model_id": "m1",
                        "run_id": run,
                        "manufacturer": man,
                        "study_month": m.date(),
                        "n_images": 10,
                        "delta_years": delta,
                        "bound_years": 2.0,
                        "drift_flag": abs(delta) > 2,
                    }
                )
    return pd.DataFrame(rows)


def test_drift_small_multiples_and_flagged_cells():
    import matplotlib.pyplot as plt

    from epi_spineage.report import figures as F

    frame = _drift_frame()
    cells = F.drift_cells(frame)
    assert len(cells) == 48 and set(cells["n_images"]) == {20}  # two runs pooled per cell
    flagged = F.flagged_drift(frame)
    assert flagged.to_dict("records") == [
        {"model": "m1", "manufacturer": "ACME", "month": "2021-09", "images": 20, "change, y": 3.0, "bound, y": 2.0}
    ]
    fig = F.drift_small_multiples(frame)
    assert sorted(ax.get_title() for ax in fig.axes if ax.get_visible()) == ["ACME (n = 480)", "Hologic (n = 480)"]
    plt.close(fig)


def test_scoring_section_shows_the_plot_and_only_flagged_cells(tmp_path):
    from types import SimpleNamespace

    from epi_spineage.report.document import _Doc
    from epi_spineage.report.document_extra import scoring_section

    d = _Doc(SimpleNamespace(tables={}), tmp_path, svg=False)
    scoring_section(d, SimpleNamespace(tables={"qc_drift": _drift_frame()}, notes=[]))
    s = d.sections[0]
    assert [f.name for f in s.figures] == ["drift"]
    shown = {t.name: len(t.frame) for t in s.tables if t.show}
    assert shown == {"qc_drift_flagged": 1}
    assert [t.name for t in s.tables if not t.show] == ["qc_drift"]  # every cell still in tables/qc_drift.csv
    assert any("1 of 48" in p for p in s.paragraphs)
