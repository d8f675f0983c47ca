"""MkDocs hook: renders the reference tables from the code and the SQL at build time.

A page asks for a table with a placeholder comment on a line of its own:

    <!-- schema:cohort -->      the cohort columns (``epi_spineage.schema.COHORT_COLUMNS``)
    <!-- schema:manifest -->    the image manifest (``MANIFEST_COLUMNS``, ``REQUIRED_MANIFEST_COLUMNS``)
    <!-- schema:tools -->       the tools (``TOOLS`` with the dispatcher's one-line help)
    <!-- schema:db-tables -->   the tables of ``sql/schema.sql`` (comments and columns), checked against ``DB_TABLES``
    <!-- schema:db-views -->    every view ``sql/v_*.sql``: its leading comment and its columns
    <!-- schema:sql-tests -->   the data tests ``sql/tests/*.sql``
    <!-- schema:derived -->     the columns ``epi_spineage.tables.derive_variables`` adds (``DERIVED_COLUMNS``)

Generated, so that the docs cannot drift from the code: a name added to ``schema.py`` or a column
added to a view appears here on the next ``make docs``. Where the code holds no description (the
manifest meanings), the hook holds it and logs a warning for any name it cannot describe, which
``mkdocs build --strict`` turns into a failed build.

This module never imports torch (``tests/test_docs.py`` checks it): it reads ``epi_spineage.schema``
and the dispatcher, and builds the views in an in-memory DuckDB to list their columns.
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "sql"

# Under the "mkdocs" logger, so that --strict counts our warnings.
log = logging.getLogger("mkdocs.hooks.epi_spineage")

PLACEHOLDER = re.compile(r"^<!--[ \t]*schema:([a-z-]+)[ \t]*-->[ \t]*$", re.M)

#: The manifest's meanings (schema.py holds the names only).
MANIFEST_MEANINGS = {
    "image": "a path, or `ARCHIVE::MEMBER` for a member of a zip/tar archive",
    "participant_id": "links to the cohort table",
    "age_years": "chronological age at the image (the training label)",
    "modality": "`radiograph` or `vfa`",
    "split": "`train` / `val` / `test`; when present, training uses it instead of making its own split",
}

#: Old citations of a methods file outside the repository, mapped onto this site's anchors.
METHODS_SECTIONS = {
    "1": "preprocessing",
    "2": "bias-correction",
    "3": "pearson",
    "4": "auroc",
    "5": "kaplan-meier",
    "6": "cox",
    "7": "accelerated",
    "8": "frax",
    "9": "age-gap-regression",
    "10": "table-1",
    "11": "grad-cam",
}

KIND_LABEL = {"str": "text", "float": "number", "binary": "0/1"}


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def _methods_links(text: str, page_depth: int) -> str:
    """Turn "METHODS.md section 7" or "docs/methods.md#cox" in SQL comments into links on this site."""
    prefix = "../" * page_depth

    def methods(m: re.Match[str]) -> str:
        anchor = METHODS_SECTIONS.get(m.group(1), "")
        return f"[methods]({prefix}methods.md#{anchor})" if anchor else f"[methods]({prefix}methods.md)"

    text = re.sub(r"METHODS(?:\.md)?,? (?:section |§ ?)?(\d+)", methods, text)
    text = re.sub(
        r"`?docs/([a-z_/]+)\.md(#[a-z0-9-]+)?`?",
        lambda m: f"[{m.group(1)}{m.group(2) or ''}]({prefix}{m.group(1)}.md{m.group(2) or ''})",
        text,
    )
    return text.replace("SCHEMA.md", "the schema")


# ---------------------------------------------------------------------------------------------------- cohort


def render_cohort() -> str:
    from epi_spineage import schema

    rows = []
    for c in schema.COHORT_COLUMNS:
        valid = ""
        if c.allowed:
            valid = ", ".join(f"`{a}`" for a in c.allowed)
        elif c.valid_range:
            valid = f"{_fmt_number(c.valid_range[0])} to {_fmt_number(c.valid_range[1])}"
        rows.append([f"`{c.name}`", KIND_LABEL.get(c.kind, c.kind), "yes" if c.required else "", c.description, valid])
    return _table(["column", "type", "required", "meaning", "valid values"], rows)


def render_manifest() -> str:
    from epi_spineage import schema

    required = set(getattr(schema, "REQUIRED_MANIFEST_COLUMNS", ()))
    rows = []
    for name in schema.MANIFEST_COLUMNS:
        meaning = MANIFEST_MEANINGS.get(name)
        if meaning is None:
            log.warning("docs hook: manifest column %r has no description in docs/hooks/generate.py", name)
            meaning = ""
        rows.append([f"`{name}`", "yes" if name in required else "", meaning])
    return _table(["column", "required", "meaning"], rows)


# ---------------------------------------------------------------------------------------------------- tools


def _tool_help() -> dict[str, str]:
    """The dispatcher's one-line descriptions, wherever the dispatcher lives now."""
    for module_name in (
        "epi_spineage.__main__",
        "epi_spineage.cli",
        "epi_spineage.cli.__main__",
        "epi_spineage.cli.dispatch",
    ):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - a moved or torch-needing module: try the next place
            continue
        for attr in ("_HELP", "HELP", "TOOL_HELP"):
            found = getattr(module, attr, None)
            if isinstance(found, dict) and found:
                return {str(k): str(v) for k, v in found.items()}
    return {}


def _docstring_summary(tool: str) -> str:
    """First line of the tool module's docstring, read without importing it (no torch)."""
    for path in (
        ROOT / "epi_spineage" / "cli" / f"{tool}.py",
        ROOT / "epi_spineage" / f"{tool}.py",
        ROOT / "epi_spineage" / tool / "__main__.py",
        ROOT / "epi_spineage" / tool / "__init__.py",
    ):
        if path.is_file():
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            if doc:
                return doc.strip().splitlines()[0]
    return ""


def render_tools(page_depth: int = 1) -> str:
    from epi_spineage import schema

    helps = _tool_help()
    rows = []
    for tool in schema.TOOLS:
        text = helps.get(tool) or _docstring_summary(tool)
        if not text:
            log.warning("docs hook: tool %r has no description (dispatcher help or module docstring)", tool)
        guide = TOOL_GUIDES.get(tool)
        link = f"[guide]({'../' * page_depth}{guide})" if guide else ""
        rows.append([f"`{tool}`", f"`python -m epi_spineage.{tool}`", text, link])
    return _table(["tool", "run as", "does", "guide"], rows)


#: Where each tool is explained (tests/test_docs.py checks every tool has an entry and the page exists).
TOOL_GUIDES = {
    "synth": "guides/synth.md",
    "preprocess": "guides/preprocess.md",
    "train": "guides/train.md",
    "predict": "guides/train.md#predict",
    "explain": "guides/train.md#explain",
    "score": "guides/score.md",
    "ingest": "guides/score.md#ingest",
    "cohort": "guides/cohort.md",
    "frax": "guides/frax.md",
    "report": "guides/report.md",
    "demo": "quickstart.md#demo",
}


# ---------------------------------------------------------------------------------------------------- SQL


def _leading_comment(sql: str) -> str:
    lines = []
    for line in sql.splitlines():
        if line.startswith("--"):
            lines.append(line[2:].strip())
        elif line.strip():
            break
    return " ".join(lines)


def _parse_tables(sql: str) -> list[dict[str, Any]]:
    """The CREATE TABLE statements of schema.sql: name, the comment above it, columns with comments."""
    tables = []
    pattern = re.compile(r"((?:^--[^\n]*\n)*)CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.M | re.S)
    for m in pattern.finditer(sql):
        comment = " ".join(line[2:].strip() for line in m.group(1).splitlines() if line.startswith("--"))
        columns = []
        for line in m.group(3).splitlines():
            body, _, note = line.partition("--")
            body = body.strip().rstrip(",")
            if not body or body.upper().startswith(("PRIMARY KEY", "UNIQUE", "CHECK", "FOREIGN KEY")):
                continue
            parts = body.split(None, 2)
            if len(parts) < 2:
                continue
            columns.append(
                {
                    "name": parts[0],
                    "type": parts[1],
                    "constraints": parts[2] if len(parts) > 2 else "",
                    "note": note.strip(),
                }
            )
        tables.append({"name": m.group(2), "comment": comment, "columns": columns})
    return tables


def _database() -> Any:
    """An in-memory DuckDB with the package's tables and views (the package's own code where it can)."""
    import duckdb

    con = duckdb.connect()
    for module_name in ("epi_spineage.db", "epi_spineage.db.schema", "epi_spineage.score.db"):
        try:
            apply = importlib.import_module(module_name).apply_schema
            apply(con)
            return con
        except Exception:  # noqa: BLE001 - moved or renamed: fall back to reading the files below
            con.close()
            con = duckdb.connect()
    con.execute((SQL_DIR / "schema.sql").read_text(encoding="utf-8")).fetchall()
    pending = sorted(SQL_DIR.glob("v_*.sql"))
    while pending:  # views depend on each other: retry until every one is created
        failed = []
        for path in pending:
            try:
                con.execute(path.read_text(encoding="utf-8")).fetchall()
            except duckdb.Error:
                failed.append(path)
        if len(failed) == len(pending):
            raise RuntimeError(f"docs hook: cannot create views {[p.name for p in failed]}")
        pending = failed
    return con


def _columns(con: Any, name: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{name}"').fetchall()]


def render_db_tables(page_depth: int = 1) -> str:
    from epi_spineage import schema

    tables = _parse_tables((SQL_DIR / "schema.sql").read_text(encoding="utf-8"))
    con = _database()
    try:
        live = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        }
        out = []
        named = {t["name"] for t in tables}
        for missing in sorted(set(schema.DB_TABLES) - named):
            log.warning("docs hook: table %r of schema.DB_TABLES is not created in sql/schema.sql", missing)
        for t in tables:
            notes = {c["name"]: c for c in t["columns"]}
            cols = _columns(con, t["name"]) if t["name"] in live else [(c["name"], c["type"]) for c in t["columns"]]
            rows = []
            for name, typ in cols:
                c = notes.get(name, {})
                rows.append([f"`{name}`", typ, c.get("constraints", ""), _methods_links(c.get("note", ""), page_depth)])
            out.append(
                f"### `{t['name']}` {{#table-{t['name']}}}\n\n{_methods_links(t['comment'], page_depth)}\n\n"
                + _table(["column", "type", "constraints", "note"], rows)
            )
        # Tables the package creates outside schema.sql (e.g. by a migration) are listed too.
        for name in sorted(live - named):
            rows = [[f"`{c}`", typ, "", ""] for c, typ in _columns(con, name)]
            out.append(
                f"### `{name}` {{#table-{name}}}\n\nCreated by the package's database code, not in "
                "`sql/schema.sql`.\n\n" + _table(["column", "type", "constraints", "note"], rows)
            )
        return "\n\n".join(out)
    finally:
        con.close()


def render_db_views(page_depth: int = 1) -> str:
    con = _database()
    try:
        out = []
        for path in sorted(SQL_DIR.glob("v_*.sql")):
            name = path.stem
            comment = _methods_links(_leading_comment(path.read_text(encoding="utf-8")), page_depth)
            rows = [[f"`{c}`", typ] for c, typ in _columns(con, name)]
            out.append(
                f"### `{name}` {{#view-{name}}}\n\n{comment}\n\nDefined in `sql/{path.name}`.\n\n"
                + _table(["column", "type"], rows)
            )
        return "\n\n".join(out)
    finally:
        con.close()


def render_sql_tests(page_depth: int = 1) -> str:
    rows = []
    for path in sorted((SQL_DIR / "tests").glob("*.sql")):
        rows.append([f"`{path.stem}`", _methods_links(_leading_comment(path.read_text(encoding="utf-8")), page_depth)])
    return _table(["data test (`sql/tests/`)", "checks (must return zero rows)"], rows)


def render_derived() -> str:
    derived = None
    for module_name in ("epi_spineage.tables", "epi_spineage.tables.cohort"):
        try:
            derived = getattr(importlib.import_module(module_name), "DERIVED_COLUMNS", None)
        except ImportError:
            continue
        if derived:
            break
    if not derived:  # moved: say so in the build (a warning fails --strict)
        log.warning("docs hook: cannot find DERIVED_COLUMNS in epi_spineage.tables")
        return ""
    return _table(["column", "meaning"], [[f"`{k}`", v] for k, v in derived.items()])


RENDERERS = {
    "derived": lambda depth: render_derived(),
    "cohort": lambda depth: render_cohort(),
    "manifest": lambda depth: render_manifest(),
    "tools": render_tools,
    "db-tables": render_db_tables,
    "db-views": render_db_views,
    "sql-tests": render_sql_tests,
}


def render_all() -> dict[str, str]:
    """Every generated block (used by the tests; the build renders per page)."""
    return {name: fn(1) for name, fn in RENDERERS.items()}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    depth = page.file.src_uri.count("/")

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in RENDERERS:
            log.warning("docs hook: unknown placeholder schema:%s in %s", name, page.file.src_uri)
            return m.group(0)
        return RENDERERS[name](depth)

    return PLACEHOLDER.sub(replace, markdown)
