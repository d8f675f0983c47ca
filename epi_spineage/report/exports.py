"""Manuscript exports written beside ``index.html``: ``tables.xlsx`` and ``tables.docx``.

- ``tables.xlsx`` (openpyxl): one sheet per table of ``tables/*.csv``, the same rows at full precision,
  numbers stored as numbers, headers in words (``labels.column``); a README sheet first lists every sheet
  with its CSV name, table number and caption.
- ``tables.docx`` (python-docx): every table the report shows, as the reader sees it (rounded, labelled),
  set as a journal table: three horizontal rules (above and below the header row, below the last row), no
  vertical lines, the caption above and a footnote below with n, the confidence level and the method;
  tables too wide for a portrait page (``layout.table_classes``) on landscape pages.

Both libraries are core dependencies (pure Python apart from lxml, which has wheels everywhere): the report
always writes both files, so what a reader finds in the output folder does not depend on the machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epi_spineage import __version__
from epi_spineage.report import labels as L
from epi_spineage.report.layout import table_classes

XLSX_NAME = "tables.xlsx"
DOCX_NAME = "tables.docx"
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def sheet_names(names: Sequence[str]) -> dict[str, str]:
    """Excel sheet names (at most 31 characters, none of []:*?/\\, unique) for table names."""
    out: dict[str, str] = {}
    used = {"readme"}
    for name in names:
        base = _SHEET_BAD.sub("_", name)[:31] or "table"
        cand, i = base, 2
        while cand.lower() in used:
            suffix = f"~{i}"
            cand, i = base[: 31 - len(suffix)] + suffix, i + 1
        used.add(cand.lower())
        out[name] = cand
    return out


def cell_value(v: Any) -> Any:
    """A value as an Excel cell: numbers as numbers (NaN/inf empty), booleans as booleans, the rest text."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (pd.Timestamp,)):
        return v.to_pydatetime().replace(tzinfo=None)
    if isinstance(v, (list, tuple, dict, set)):
        return str(v)
    return str(v)


def _shown(sections) -> list:
    return [t for s in sections for t in s.tables if t.show]


def write_xlsx(path: Path, tables: dict[str, pd.DataFrame], sections=(), *, title: str = "") -> Path:
    """``tables.xlsx``: a README sheet, then one sheet per table (header row frozen)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    captions = {t.name: (t.number, t.caption) for t in _shown(sections)}
    names = sheet_names(list(tables))
    wb = Workbook()
    readme = wb.active
    readme.title = "README"
    bold = Font(bold=True)
    readme.append([title or "epi_spineage report: tables"])
    readme["A1"].font = Font(bold=True, size=13)
    for line in (
        f"Written by epi_spineage {__version__} with the report (index.html) beside this file.",
        (
            "One sheet per table of tables/*.csv: the same rows at full precision (the report rounds only "
            "for display); numbers are stored as numbers, empty cells are missing values."
        ),
        "Headers are in words; the CSV column names are listed under each sheet's name below.",
        "",
    ):
        readme.append([line])
    readme.append(["sheet", "CSV file", "report table", "caption", "rows", "CSV columns"])
    for c in readme[readme.max_row]:
        c.font = bold
    for name, frame in tables.items():
        number, caption = captions.get(name, (None, "(in results.json; not shown as a table in the report)"))
        readme.append(
            [
                names[name],
                f"tables/{name}.csv",
                f"Table {number}" if number else "",
                caption,
                len(frame),
                ", ".join(map(str, frame.columns)),
            ]
        )
    readme.column_dimensions["A"].width = 26
    readme.column_dimensions["B"].width = 32
    readme.column_dimensions["D"].width = 80
    for name, frame in tables.items():
        ws = wb.create_sheet(names[name])
        ws.append([L.column(c) for c in frame.columns])
        for c in ws[1]:
            c.font = bold
        for row in frame.itertuples(index=False):
            ws.append([cell_value(v) for v in row])
        ws.freeze_panes = "A2"
        for i, col in enumerate(frame.columns, start=1):
            width = max([len(L.column(col))] + [len(str(v)) for v in frame[col].head(200)])
            ws.column_dimensions[ws.cell(1, i).column_letter].width = min(max(8, width + 2), 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


# ------------------------------------------------------------------------------------------------ DOCX
def _border(cell, **edges: str) -> None:
    """Set the given edges (top/bottom) of a table cell to a single black rule; ``none`` clears one."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    tc_pr = cell._tc.get_or_add_tcPr()
    borders = tc_pr.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        tc_pr.append(borders)
    for edge, size in edges.items():
        el = borders.find(qn(f"w:{edge}"))
        if el is None:
            el = OxmlElement(f"w:{edge}")
            borders.append(el)
        if size == "none":
            el.set(qn("w:val"), "nil")
        else:
            el.set(qn("w:val"), "single")
            el.set(qn("w:sz"), size)  # eighths of a point
            el.set(qn("w:space"), "0")
            el.set(qn("w:color"), "000000")


def table_footnote(frame: pd.DataFrame, note: str = "", ci_level: float | None = None) -> str:
    """The footnote under a journal table: n, the confidence level and the method, from the tidy rows."""
    parts = []
    if "n" in frame.columns:
        n = pd.to_numeric(frame["n"], errors="coerce").dropna()
        if len(n):
            lo, hi = int(n.min()), int(n.max())
            parts.append(f"n = {lo:,}" if lo == hi else f"n = {lo:,} to {hi:,} per row")
    level = ci_level
    if "ci_level" in frame.columns:
        lv = pd.to_numeric(frame["ci_level"], errors="coerce").dropna().unique()
        if len(lv) == 1:
            level = float(lv[0])
    if level is not None and ("ci_low" in frame.columns or "ci_level" in frame.columns):
        parts.append(f"confidence intervals at {level:.0%}")
    if "method" in frame.columns:
        methods = [str(m) for m in dict.fromkeys(frame["method"].dropna()) if str(m)]
        if methods:
            shown = "; ".join(methods[:4]) + ("; ..." if len(methods) > 4 else "")
            parts.append(f"method: {shown}")
    text = ". ".join(p[0].upper() + p[1:] for p in parts) + ("." if parts else "")
    return (note + " " + text).strip() if note else text


def _orient(doc, *, landscape: bool) -> None:
    """Start a new section (new page) when the orientation a table needs differs from the current one."""
    from docx.enum.section import WD_ORIENT, WD_SECTION

    cur = doc.sections[-1]
    if (cur.orientation == WD_ORIENT.LANDSCAPE) == landscape:
        return
    new = doc.add_section(WD_SECTION.NEW_PAGE)
    new.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
    w, h = cur.page_width, cur.page_height
    new.page_width, new.page_height = (max(w, h), min(w, h)) if landscape else (min(w, h), max(w, h))


def write_docx(path: Path, sections, *, title: str = "", ci_level: float | None = None) -> Path:
    """``tables.docx``: each shown table with its caption, three rules, and a footnote."""
    from docx import Document
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    from epi_spineage.report.render import _display, numeric_columns

    doc = Document()
    doc.styles["Normal"].font.name = "Arial"
    doc.styles["Normal"].font.size = Pt(10)
    doc.add_heading(title or "Tables", level=1)
    for t in _shown(sections):
        disp = L.humanize_columns(_display(t))
        _orient(doc, landscape="wide" in table_classes(disp).split())  # as in print: layout.py
        cap = doc.add_paragraph()
        cap.paragraph_format.keep_with_next = True
        cap.paragraph_format.space_before = Pt(12)
        cap.add_run(f"Table {t.number}. ").bold = True
        cap.add_run(t.caption)
        numeric = numeric_columns(disp)
        table = doc.add_table(rows=1 + len(disp), cols=len(disp.columns))
        table.alignment = WD_TABLE_ALIGNMENT.CENTER
        size = Pt(7.5 if len(disp.columns) > 8 else 8.5)
        rows = [[str(c) for c in disp.columns]] + [
            ["" if v is None else str(v) for v in r] for r in disp.itertuples(index=False)
        ]
        for i, values in enumerate(rows):
            cells = table.rows[i].cells
            for j, v in enumerate(values):
                p = cells[j].paragraphs[0]
                run = p.add_run(v)
                run.font.size = size
                run.bold = i == 0
                if j > 0 and numeric[j]:
                    p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
                p.paragraph_format.keep_with_next = i < len(rows) - 1
            if i == 0:
                for c in cells:
                    _border(c, top="12", bottom="6")
            if i == len(rows) - 1:
                for c in cells:
                    _border(c, bottom="12")
        foot = doc.add_paragraph()
        foot_text = table_footnote(t.frame, t.note, ci_level)
        if foot_text:
            r = foot.add_run(foot_text)
            r.font.size = Pt(8)
            r.italic = False
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    return path


def write_exports(
    out_dir: Path, tables: dict[str, pd.DataFrame], sections, *, title: str = "", ci_level: float | None = None
) -> list[Path]:
    """Write ``tables.xlsx`` and ``tables.docx`` under ``out_dir`` (call after the tables are numbered)."""
    out_dir = Path(out_dir)
    return [
        write_xlsx(out_dir / XLSX_NAME, tables, sections, title=title),
        write_docx(out_dir / DOCX_NAME, sections, title=title, ci_level=ci_level),
    ]
