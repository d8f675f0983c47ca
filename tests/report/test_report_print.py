"""The report printed to PDF keeps every column header and keeps captions with their tables (issue 16).

Prints the reduced demo with headless Chromium (``report.pdf.write_pdf``) and reads the PDF's words and
their positions back with ``pdftotext -bbox`` (Debian poppler-utils): a header that wraps inside its cell
is followed down its column, so "AUROC chronological age" printed as "AUROC c" (the clipping this
replaced) fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from epi_spineage.errors import UserError
from epi_spineage.report import pdf as report_pdf


class _Tables(HTMLParser):
    """Per table block: its id, number ("Table 7."), classes and column headers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._th: str | None = None
        self._cap: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and "table-block" in (a.get("class") or ""):
            self.tables.append({"id": a["id"], "classes": a["class"].split(), "headers": [], "caption": ""})
        elif tag == "figcaption" and "table-caption" in (a.get("class") or ""):
            self._cap = ""
        elif tag == "th":
            self._th = ""

    def handle_endtag(self, tag):
        if tag == "th" and self._th is not None:
            self.tables[-1]["headers"].append(self._th)
            self._th = None
        elif tag == "figcaption" and self._cap is not None:
            self.tables[-1]["caption"] = self._cap
            self._cap = None

    def handle_data(self, data):
        if self._th is not None:
            self._th += data
        if self._cap is not None:
            self._cap += data


def html_tables(index: Path) -> list[dict]:
    p = _Tables()
    p.feed(index.read_text(encoding="utf-8"))
    return p.tables


def pdf_words(pdf: Path) -> list[list[tuple[str, float, float, float, float]]]:
    """Words per page: (text, x_min, y_min, x_max, y_max)."""
    xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    xml = re.sub(r"<!DOCTYPE[^>]*>", "", xml).replace('xmlns="http://www.w3.org/1999/xhtml"', "")
    root = ElementTree.fromstring(xml)
    pages = []
    for page in root.iter("page"):
        pages.append(
            [
                (w.text or "", float(w.get("xMin")), float(w.get("yMin")), float(w.get("xMax")), float(w.get("yMax")))
                for w in page.iter("word")
            ]
        )
    return pages


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def find_phrase(words, phrase: str) -> bool:
    """Whether ``phrase`` is printed on this page as one table cell: its words left to right on a line, and
    where it wraps, continued on the next line(s) within the same column."""
    target = _squash(phrase)
    if not target:
        return True

    def extend(done: str, last, x_lo: float, x_hi: float, depth: int) -> bool:
        if done == target:
            return True
        if depth > 12:
            return False
        _, _, y0, x1, y1 = last
        h = y1 - y0
        for w in words:
            t, wx0, wy0, wx1, _ = w
            if not t or not target.startswith(done + t):
                continue
            same_line = abs(wy0 - y0) < 0.3 * h and x1 - 0.5 < wx0 < x1 + 2.5 * h
            next_line = 0.5 * h < wy0 - y0 < 2.2 * h and wx0 < x_hi + 2 * h and wx1 > x_lo - 2 * h
            if (same_line or next_line) and extend(done + t, w, min(x_lo, wx0), max(x_hi, wx1), depth + 1):
                return True
        return False

    return any(target.startswith(w[0]) and w[0] and extend(w[0], w, w[1], w[3], 0) for w in words)


@pytest.fixture(scope="module")
def printed(built_report, tmp_path_factory):
    if report_pdf.find_chromium() is None:
        pytest.skip("chromium not installed")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian poppler-utils)")
    pdf = report_pdf.write_pdf(built_report.index, tmp_path_factory.mktemp("pdf") / "report.pdf")
    return pdf, pdf_words(pdf)


@pytest.mark.browser
def test_every_column_header_is_printed(built_report, printed):
    _, pages = printed
    tables = html_tables(built_report.index)
    assert len(tables) >= 20
    missing = []
    n_headers = 0
    for t in tables:
        number = re.match(r"Table (\d+)\.", t["caption"]).group(1)
        # the page(s) holding the caption; the header row follows on the same page (caption kept with table)
        on = [i for i, words in enumerate(pages) if find_phrase(words, f"Table {number}.")]
        assert on, f"caption of table {number} not printed"
        for h in t["headers"]:
            n_headers += 1
            if not any(find_phrase(pages[i], h) for i in on):
                missing.append(f"table {number} ({t['id']}): {h!r}")
    assert missing == [], missing
    assert n_headers >= 100


@pytest.mark.browser
def test_wide_tables_print_landscape_and_no_page_is_near_empty(built_report, printed):
    pdf, pages = printed
    tables = html_tables(built_report.index)
    wide = [t for t in tables if "wide" in t["classes"]]
    assert any(t["id"] == "tab-cox_fracture" for t in wide)  # 11 columns: does not fit a portrait line
    info = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", str(len(pages)), str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    sizes = re.findall(r"Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+)", info)
    landscape = {int(p) - 1 for p, w, h in sizes if float(w) > float(h)}
    for t in wide:
        number = re.match(r"Table (\d+)\.", t["caption"]).group(1)
        on = {i for i, words in enumerate(pages) if find_phrase(words, f"Table {number}.")}
        assert on & landscape, f"wide table {number} is not on a landscape page"
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    with_image = {int(line.split()[0]) - 1 for line in images.splitlines()[2:] if line.split()}
    chars = [sum(len(w[0]) for w in words) for words in pages]
    near_empty = [i + 1 for i, c in enumerate(chars[:-1]) if c < 300 and i not in with_image]
    assert near_empty == [], (near_empty, chars)


def test_pdf_without_chromium_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EPI_SPINEAGE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    index = tmp_path / "index.html"
    index.write_text("<html></html>")
    with pytest.raises(UserError, match="--pdf needs Chromium"):
        report_pdf.write_pdf(index)


def test_cli_pdf_flag_exits_2_without_chromium(tmp_path, monkeypatch, capsys):
    from epi_spineage.cli import report as cli

    monkeypatch.setenv("EPI_SPINEAGE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setattr(
        cli,
        "build_report",
        lambda out, **kw: (Path(out).mkdir(parents=True, exist_ok=True), Path(out) / "index.html")[1],
    )
    rc = cli.main(["--out", str(tmp_path / "r"), "--n-derivation", "300", "--n-external", "200", "--pdf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "--pdf needs Chromium" in err[0]


def test_a_pdf_from_an_earlier_report_is_removed(tmp_path):
    import os

    index = tmp_path / "index.html"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-old")
    index.write_text("<html></html>")
    os.utime(pdf, (1_000_000, 1_000_000))
    assert report_pdf.remove_stale_pdf(index) and not pdf.exists()
    pdf.write_bytes(b"%PDF-new")  # newer than index.html: printed from this report
    assert not report_pdf.remove_stale_pdf(index) and pdf.exists()


@pytest.mark.browser
def test_every_printed_page_says_synthetic_and_is_numbered(printed):
    _, pages = printed
    for i, words in enumerate(pages, start=1):
        assert find_phrase(words, "Synthetic data"), f"page {i} lacks the synthetic-data mark"
        assert find_phrase(words, f"{i} / {len(pages)}"), f"page {i} lacks its number"
