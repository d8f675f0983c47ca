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
    wide = pd.DataFrame({f"model {i} n/events": ["1,234/56"] for i in range(12)}
                        | {f"model {i}": ["1.74 (1.46-2.07)"] for i in range(6)})
    assert PORTRAIT_CHARS < printed_width(wide)
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
