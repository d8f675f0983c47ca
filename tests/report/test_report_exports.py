"""tables.xlsx and tables.docx beside index.html (issue 16): every number checked against results.json,
headers in words, the DOCX tables as journal tables; figures also as 300 dpi PNG and vector PDF."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from epi_spineage.report import labels as L
from epi_spineage.report.exports import cell_value, sheet_names, table_footnote
from epi_spineage.report.render import format_ci

openpyxl = pytest.importorskip("openpyxl")
docx = pytest.importorskip("docx")

SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and "table-block" in (a.get("class") or ""):
            self.tables.append({"id": a["id"][4:], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            self.tables[-1]["rows"][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def html_tables(built_report):
    p = _HtmlTables()
    p.feed(built_report.index.read_text(encoding="utf-8"))
    return p.tables


@pytest.fixture(scope="module")
def workbook(built_report):
    path = built_report.out / "tables.xlsx"
    assert path.stat().st_size > 5000
    return openpyxl.load_workbook(path, read_only=False)


@pytest.fixture(scope="module")
def document(built_report):
    return docx.Document(str(built_report.out / "tables.docx"))


def _same(expected, got) -> bool:
    if expected is None or expected == "" or (isinstance(expected, float) and not math.isfinite(expected)):
        return got is None  # Excel keeps no empty strings: an empty cell
    if isinstance(expected, bool):
        return got is expected
    if isinstance(expected, (int, float)):
        return (
            isinstance(got, (int, float))
            and not isinstance(got, bool)
            and math.isclose(float(got), float(expected), rel_tol=1e-12, abs_tol=0)
        )
    return got == str(expected)


def test_xlsx_every_number_matches_results_json(built_report, workbook):
    tables = built_report.payload["tables"]
    names = sheet_names(list(tables))
    assert workbook.sheetnames[0] == "README"
    assert set(workbook.sheetnames[1:]) == set(names.values())
    checked = numbers = 0
    for name, records in tables.items():
        ws = workbook[names[name]]
        rows = list(ws.iter_rows(values_only=True))
        cols = list(pd.read_csv(built_report.out / "tables" / f"{name}.csv", nrows=0).columns)
        assert list(rows[0]) == [L.column(c) for c in cols], name
        assert len(rows) - 1 == len(records), name
        for rec, got in zip(records, rows[1:]):
            for c, g in zip(cols, got):
                exp = rec[c]
                if isinstance(exp, (list, dict)):
                    continue  # shown as text
                assert _same(exp, g), (name, c, exp, g)
                checked += 1
                numbers += isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp is not None
    assert checked > 2000 and numbers > 1000


def test_xlsx_readme_lists_every_sheet(built_report, workbook):
    text = "\n".join(
        " ".join(str(v) for v in row if v is not None) for row in workbook["README"].iter_rows(values_only=True)
    )
    for name in built_report.payload["tables"]:
        assert f"tables/{name}.csv" in text
    assert "full precision" in text


def _docx_rows(table) -> list[list[str]]:
    return [[c.text for c in row.cells] for row in table.rows]


def test_docx_tables_are_the_report_tables(html_tables, document):
    assert len(document.tables) == len(html_tables) >= 20
    for h, t in zip(html_tables, document.tables):
        assert _docx_rows(t) == h["rows"], h["id"]


def test_docx_numbers_match_results_json(built_report, document, html_tables):
    """The HRs per SD of PAD and the AUROCs printed in the DOCX are results.json's, rounded."""
    by_id = {h["id"]: i for i, h in enumerate(html_tables)}
    text = "\n".join(" | ".join(r) for r in _docx_rows(document.tables[by_id["cox_fracture"]]))
    cox = pd.DataFrame(built_report.payload["tables"]["cox_fracture"])
    pad = cox[cox["term"] == "pad_years"]
    assert len(pad) >= 6
    for _, r in pad.iterrows():
        assert format_ci(r["estimate"], r["ci_low"], r["ci_high"]) in text
        assert f"{int(r['n']):,}/{int(r['events']):,}" in text
    text = "\n".join(" | ".join(r) for r in _docx_rows(document.tables[by_id["discrimination"]]))
    disc = pd.DataFrame(built_report.payload["tables"]["discrimination"])
    for _, r in disc.iterrows():
        assert format_ci(r["estimate"], r["ci_low"], r["ci_high"], 3) in text


def test_docx_three_rules_and_footnotes(document):
    from docx.oxml.ns import qn

    t = document.tables[0]

    def edges(cell):
        b = cell._tc.tcPr.find(qn("w:tcBorders")) if cell._tc.tcPr is not None else None
        return {} if b is None else {e.tag.split("}")[1]: e.get(qn("w:val")) for e in b}

    head, last = t.rows[0].cells, t.rows[-1].cells
    assert all(edges(c).get("top") == "single" and edges(c).get("bottom") == "single" for c in head)
    assert all(edges(c).get("bottom") == "single" for c in last)
    assert all("left" not in edges(c) and "right" not in edges(c) for row in t.rows for c in row.cells)
    body = [p.text for p in document.paragraphs]
    assert any(p.startswith("Table 1.") for p in body)
    assert any("Confidence intervals at 95%" in p for p in body)
    assert any(re.search(r"N = [\d,]+", p) for p in body)


def test_docx_wide_tables_on_landscape_pages(document, html_tables):
    from docx.enum.section import WD_ORIENT

    body = document.element.body
    # the section a table belongs to ends at the first section break (sectPr) after it
    order = [
        el
        for el in body.iterchildren()
        if el.tag.endswith(("}tbl", "}sectPr")) or (el.tag.endswith("}p") and el.find(".//{*}sectPr") is not None)
    ]
    section_of, sec = {}, 0
    pending = []
    for el in order:
        if el.tag.endswith("}tbl"):
            pending.append(el)
        else:
            for tbl in pending:
                section_of[tbl] = sec
            pending, sec = [], sec + 1
    by_id = {h["id"]: i for i, h in enumerate(html_tables)}
    cox = document.tables[by_id["cox_fracture"]]._tbl
    flow = document.tables[by_id["cohort_flow"]]._tbl
    assert document.sections[section_of[cox]].orientation == WD_ORIENT.LANDSCAPE
    assert document.sections[section_of[flow]].orientation == WD_ORIENT.PORTRAIT


def test_no_snake_case_identifier_in_headers(html_tables, workbook, document):
    bad = [(h["id"], c) for h in html_tables for c in h["rows"][0] if SNAKE.search(c)]
    bad += [
        (ws.title, c)
        for ws in workbook.worksheets[1:]
        for c in next(ws.iter_rows(values_only=True))
        if c and SNAKE.search(str(c))
    ]
    bad += [("docx", c.text) for t in document.tables for c in t.rows[0].cells if SNAKE.search(c.text)]
    assert bad == []


def test_footnote_and_cells_units():
    f = pd.DataFrame({"n": [100, 250], "ci_level": [0.95, 0.95], "ci_low": [1, 2], "method": ["Cox (Efron)", None]})
    assert table_footnote(f) == "N = 100 to 250 per row. Confidence intervals at 95%. Method: Cox (Efron)."
    assert table_footnote(f.head(1), "Complete cases.").startswith("Complete cases. N = 100.")
    assert cell_value(float("nan")) is None and cell_value(3) == 3 and cell_value(True) is True
    names = sheet_names(["a" * 40, "a" * 40 + "b", "x:y"])
    assert len(set(names.values())) == 3 and all(len(v) <= 31 for v in names.values()) and names["x:y"] == "x_y"


def test_figures_for_print(built_report):
    from PIL import Image

    pdir = built_report.out / "figures" / "print"
    pngs = sorted(p.stem for p in pdir.glob("*.png"))
    assert (
        pngs
        == sorted(p.stem for p in pdir.glob("*.pdf"))
        == sorted(p.stem for p in (built_report.out / "figures").glob("*.png"))
    )
    for stem in pngs:
        assert (pdir / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        dpi = Image.open(pdir / f"{stem}.png").info.get("dpi")
        assert dpi and round(dpi[0]) == 300, (stem, dpi)


#: the study configuration (setting names are the TOML keys) and package names are code, not labels
CODE_TABLES = {"study_config", "software"}


def test_no_snake_case_identifier_in_table_cells(html_tables, document):
    bad = [
        (h["id"], m)
        for h in html_tables
        if h["id"] not in CODE_TABLES
        for row in h["rows"][1:]
        for c in row
        for m in SNAKE.findall(c)
    ]
    assert bad == []
    shown = [h["id"] for h in html_tables]
    bad = [
        (name, m)
        for name, t in zip(shown, document.tables)
        if name not in CODE_TABLES
        for row in t.rows[1:]
        for c in row.cells
        for m in SNAKE.findall(c.text)
    ]
    assert bad == []


def test_words_for_identifiers():
    assert L.words("missing tscore_femoral_neck") == "missing T-score, femoral neck"
    assert L.words("fracture_any") == "any fracture" and L.words("nri_total") == "NRI, total"
    assert L.words("an odd_name here") == "an odd name here"
    f = pd.DataFrame({"cohort": ["derivation"], "outcome": ["fracture_any"], "n": [3]})
    assert L.humanize_cells(f).iloc[0].tolist() == ["derivation (test set)", "any fracture", 3]


def test_xlsx_cells_of_every_kind(tmp_path):
    """Timestamps (time-zoned or missing), lists, booleans and missing numbers as a database report has them."""
    from epi_spineage.report.exports import write_xlsx

    frame = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "started_at": [pd.Timestamp("2024-05-01 10:00", tz="UTC"), pd.NaT],
            "n_scored": [10, 0],
            "mean_spine_age_years": [61.5, float("nan")],
            "drift_flag": [True, False],
            "groups": [["a", "b"], []],
        }
    )
    path = write_xlsx(tmp_path / "t.xlsx", {"qc_runs": frame})
    ws = openpyxl.load_workbook(path)["qc_runs"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("run", "started", "scored", "mean spine age, y", "flagged", "groups")
    assert rows[1][1].year == 2024 and rows[2][1] is None
    assert rows[1][2] == 10 and isinstance(rows[1][2], int) and rows[2][3] is None
    assert rows[1][4] is True and rows[1][5] == "['a', 'b']"
