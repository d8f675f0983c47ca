"""Writes the report: ``index.html`` (Jinja2, self-contained: CSS inline, figures base64), ``report.qmd``
(static Quarto source with Markdown tables and image links), ``tables/*.csv``, ``results.json`` and the
manuscript exports ``tables.xlsx`` / ``tables.docx`` (``exports.py``).

The document model is small: a list of ``Section`` holding paragraphs, ``FigureItem`` and ``TableItem``.
Numbers are rounded here, at display time only; CSV and JSON keep full precision.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from epi_spineage import __version__
from epi_spineage.report.exports import write_exports
from epi_spineage.report.figures import png_size
from epi_spineage.report.labels import humanize_cells, humanize_columns
from epi_spineage.report.layout import table_classes


@dataclass
class FigureItem:
    name: str
    caption: str
    png: bytes
    width: int = 900
    number: int = 0


@dataclass
class TableItem:
    """A table shown in the report. ``frame`` is the tidy table (written as CSV); ``display`` is what
    the reader sees (strings, rounded); when ``display`` is None the tidy table is formatted generically."""

    name: str
    caption: str
    frame: pd.DataFrame
    display: pd.DataFrame | None = None
    note: str = ""
    number: int = 0
    show: bool = True


@dataclass
class CodeItem:
    """A block of code shown as written (e.g. the study config as TOML): never wrapped into a table."""

    name: str
    caption: str
    text: str
    language: str = "toml"


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)
    tables: list[TableItem] = field(default_factory=list)
    code: list[CodeItem] = field(default_factory=list)
    #: shown in red above the section's text (e.g. a weak model in the scoring QC)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- display formatting
_P_COLUMNS = ("p_value", "p_interaction", "p_delong", "p_logrank", "ph_p_value", "global_ph_p_value")
_INT_COLUMNS = ("n", "events", "n_excluded", "n_at_risk", "count", "n_cases", "n_controls")


def format_p(p: Any) -> str:
    """p < 0.001, else three decimals; NA when missing."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        return "" if p is None else str(p)
    if not math.isfinite(p):
        return "NA"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_number(v: Any, digits: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "" if math.isnan(float(v)) else str(v)
        if float(v).is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        return f"{float(v):.{digits}f}"
    return str(v)


def format_ci(est: float, lo: float, hi: float, digits: int = 2) -> str:
    """``1.74 (1.46-2.07)``; negative bounds get ' to ' so the minus sign stays readable."""
    vals = [est, lo, hi]
    if any(v is None or not np.isfinite(float(v)) for v in vals):
        return "NA" if est is None or not np.isfinite(float(est)) else f"{float(est):.{digits}f}"
    sep = " to " if min(lo, hi) < 0 else "-"
    return f"{est:.{digits}f} ({lo:.{digits}f}{sep}{hi:.{digits}f})"


def format_frame(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Generic display: p values as p, counts as integers, other floats to ``digits`` decimals."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if col in _P_COLUMNS or col.endswith("p_value"):
            out[col] = [format_p(v) for v in s]
        elif col in _INT_COLUMNS and pd.api.types.is_numeric_dtype(s):
            out[col] = ["" if pd.isna(v) else f"{int(v):,}" for v in s]
        elif pd.api.types.is_float_dtype(s):
            out[col] = [format_number(v, digits) for v in s]
        else:
            out[col] = [
                "" if (v is None or (isinstance(v, float) and math.isnan(v))) else format_number(v, digits) for v in s
            ]
    return out


_NUMERIC_CELL = re.compile(r"^\s*[-−<>≤≥+]?\s*\d")


def numeric_columns(df: pd.DataFrame) -> list[bool]:
    """Columns whose (non-empty) cells mostly start with a number: right-aligned in the HTML."""
    out = []
    for col in df.columns:
        cells = [str(v) for v in df[col] if v is not None and str(v).strip() != ""]
        out.append(bool(cells) and sum(bool(_NUMERIC_CELL.match(c)) for c in cells) >= 0.5 * len(cells))
    return out


def _display(t: TableItem) -> pd.DataFrame:
    return t.display if t.display is not None else format_frame(humanize_cells(t.frame))  # row labels: labels.py


# ---------------------------------------------------------------- JSON
def to_jsonable(obj: Any) -> Any:
    """Numpy/pandas scalars and frames to plain JSON types; NaN and inf become null."""
    if isinstance(obj, pd.DataFrame):
        return [{k: to_jsonable(v) for k, v in row.items()} for row in obj.to_dict(orient="records")]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp, _dt.datetime, _dt.date)):
        return obj.isoformat()
    return str(obj)


# ---------------------------------------------------------------- numbering
_TABLE_REF = re.compile(r"\{table:([A-Za-z0-9_]+)\}")


def table_ref(name: str) -> str:
    """Text that becomes "Table N" of the table ``name`` once the tables are numbered (``number_items``):
    a section can name a table of another section without knowing its number."""
    return "{table:" + name + "}"


def number_items(sections: list[Section]) -> None:
    """Number the figures and shown tables in order, and fill in every ``table_ref``."""
    fi = ti = 0
    numbers: dict[str, int] = {}
    for s in sections:
        for f in s.figures:
            fi += 1
            f.number = fi
        for t in s.tables:
            if t.show:
                ti += 1
                t.number = ti
                numbers.setdefault(t.name, ti)

    def fill(text: str) -> str:
        return _TABLE_REF.sub(lambda m: f"Table {numbers[m[1]]}" if m[1] in numbers else "the table", text)

    for s in sections:
        s.paragraphs = [fill(p) for p in s.paragraphs]
        s.bullets = [fill(b) for b in s.bullets]
        for t in s.tables:
            t.caption, t.note = fill(t.caption), fill(t.note)
        for f in s.figures:
            f.caption = fill(f.caption)
        for c in s.code:
            c.caption = fill(c.caption)


# ---------------------------------------------------------------- HTML
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("epi_spineage.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(
    sections: list[Section], *, title: str, banner: str | None, meta: dict[str, Any], footer: str = ""
) -> str:
    """The self-contained HTML page as a string."""
    ctx_sections = []
    for s in sections:
        # never wider than drawn (a one-panel figure is not blown up): figures.png_size
        figs = [
            {
                "name": f.name,
                "caption": f.caption,
                "number": f.number,
                "width": min(f.width, png_size(f.png)[0] or f.width),
                "b64": base64.b64encode(f.png).decode("ascii"),
            }
            for f in s.figures
        ]
        tabs = []
        for t in s.tables:
            if not t.show:
                continue
            d = humanize_columns(_display(t))  # headers in words: labels.py
            tabs.append(
                {
                    "name": t.name,
                    "caption": t.caption,
                    "number": t.number,
                    "note": t.note,
                    "columns": [str(c) for c in d.columns],
                    "numeric": numeric_columns(d),
                    "rows": [["" if v is None else str(v) for v in row] for row in d.itertuples(index=False)],
                }
            )
            tabs[-1]["classes"] = table_classes(d)  # print layout (landscape page for wide tables): layout.py
        ctx_sections.append(
            {
                "id": s.id,
                "title": s.title,
                "paragraphs": s.paragraphs,
                "bullets": s.bullets,
                "warnings": s.warnings,
                "figures": figs,
                "tables": tabs,
                "code": [{"name": c.name, "caption": c.caption, "text": c.text} for c in s.code],
            }
        )
    banner_short = "Synthetic data" if banner else ""
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            title=title,
            banner=banner,
            banner_short=banner_short,
            sections=ctx_sections,
            meta=meta,
            footer=footer or f"epi_spineage {__version__}. Tables as CSV in tables/, every number in results.json.",
        )
    )


# ---------------------------------------------------------------- Quarto / Markdown
def _md_cell(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A pipe table (pandoc and Quarto read it); first column left-aligned, the rest right-aligned."""
    cols = [str(c) for c in df.columns]
    lines = [
        "| " + " | ".join(_md_cell(c) for c in cols) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell("" if v is None else v) for v in row) + " |")
    return "\n".join(lines)


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # JSON strings are valid YAML scalars


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$@=:&])")


def md_escape(text: str) -> str:
    """Plain text for a Markdown field (pandoc reads the YAML title as Markdown): punctuation backslash-
    escaped, line breaks flattened, so a config title cannot add markup, links or HTML."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return) get a leading ``'``
    so that a spreadsheet shows them instead of running them as formulas; numbers are left alone."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v
            )
    return out


def render_qmd(sections: list[Section], *, title: str, banner: str | None, meta: dict[str, Any]) -> str:
    """Static Quarto source: results written in, figures linked from ``figures/``; no code to run."""
    out = [
        "---",
        f"title: {_yaml_str(md_escape(title))}",
        "subtitle: " + _yaml_str(f"Generated {meta.get('generated_utc', '')} by epi_spineage {__version__}"),
        "format:",
        "  html:",
        "    embed-resources: true",
        "    toc: true",
        "    number-sections: true",
        "---",
        "",
    ]
    if banner:
        out += ["::: {.callout-warning}", banner, ":::", ""]
    for s in sections:
        out += [f"## {s.title} {{#{s.id}}}", ""]
        for p in s.paragraphs:
            out += [p, ""]
        if s.warnings:
            out += ["::: {.callout-important}", *[f"- {w}" for w in s.warnings], ":::", ""]
        if s.bullets:
            out += [f"- {b}" for b in s.bullets] + [""]
        for f in s.figures:
            out += [f"![**Figure {f.number}.** {f.caption}](figures/{f.name}.png){{#fig-{f.name}}}", ""]
        for t in s.tables:
            if not t.show:
                continue
            out += [
                markdown_table(humanize_columns(_display(t))),
                "",
                f": **Table {t.number}.** {t.caption} (tables/{t.name}.csv) {{#tbl-{t.name}}}",
                "",
            ]
            if t.note:
                out += [f"*{t.note}*", ""]
        for c in s.code:
            fence = "~~~~" if "```" in c.text else "```"
            out += [c.caption, "", f"{fence}{c.language}", c.text.rstrip("\n"), fence, ""]
    return "\n".join(out)


# ---------------------------------------------------------------- everything
def is_previous_report(out_dir: Path) -> bool:
    """True when ``out_dir`` holds a report this package wrote (so its outputs may be replaced)."""
    try:
        meta = json.loads((out_dir / "results.json").read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta, dict) and "version" in meta and "software" in meta


def write_report(
    out_dir: Path,
    sections: list[Section],
    *,
    title: str,
    banner: str | None,
    results_json: dict[str, Any],
    meta: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    timings: dict[str, float] | None = None,
) -> Path:
    """Write index.html, report.qmd, tables/*.csv and results.json under ``out_dir``; return index.html.

    ``timings`` (when given) receives the seconds spent on each kind of file.
    """
    clock = _Clock(timings)
    out_dir.mkdir(parents=True, exist_ok=True)
    tdir = out_dir / "tables"
    if is_previous_report(out_dir) and tdir.is_dir():
        # stale CSVs from a previous run would look like current results; only ours are removed
        for old in tdir.glob("*.csv"):
            old.unlink()
    tdir.mkdir(exist_ok=True)
    for name, frame in tables.items():
        csv_safe(frame).to_csv(tdir / f"{name}.csv", index=False)
    number_items(sections)
    clock("tables (CSV)")
    (out_dir / "results.json").write_text(
        json.dumps(to_jsonable(results_json), indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    clock("results.json")
    (out_dir / "report.qmd").write_text(render_qmd(sections, title=title, banner=banner, meta=meta), encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(render_html(sections, title=title, banner=banner, meta=meta), encoding="utf-8")
    clock("index.html and report.qmd")
    # manuscript exports (tables.xlsx, tables.docx) from the same tables: report/exports.py
    write_exports(out_dir, tables, sections, title=title, ci_level=(results_json.get("config") or {}).get("ci_level"))
    clock("tables.xlsx and tables.docx")
    return index


class _Clock:
    """Seconds since the previous mark, stored under each mark's name (no-op without a dict)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = now - self.t
        self.t = now


def pandoc_command(qmd: Path, html: Path) -> list[str] | None:
    """The pandoc call that renders ``report.qmd`` self-contained (flag name depends on the version)."""
    exe = shutil.which("pandoc")
    if exe is None:
        return None
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.split()
    try:
        major, minor = (int(x) for x in version[1].split(".")[:2])
    except (IndexError, ValueError):
        major, minor = 2, 0
    flag = "--embed-resources" if (major, minor) >= (2, 19) else "--self-contained"
    return [
        exe,
        str(qmd),
        "-f",
        "markdown",
        "-t",
        "html",
        "--standalone",
        flag,
        "-o",
        str(html),
        "--metadata",
        "pagetitle=epi_spineage report",
    ]
