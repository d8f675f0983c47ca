"""The docs name every shared column, tool and table, and the README's quick start is the two commands.

The schema and tools pages are generated from ``epi_spineage.schema`` when the site is built, so these
tests read the built HTML: a name added to the code but dropped by the generator (or a page that stops
asking for the table) fails here.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from epi_spineage.schema import COHORT_COLUMN_NAMES, DB_TABLES, MANIFEST_COLUMNS, TOOLS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    from tests.docs_site import build_site

    return build_site(tmp_path_factory.mktemp("docs"))


def _codes(page: Path) -> set[str]:
    """Every ``<code>`` text of a built page."""
    text = page.read_text(encoding="utf-8")
    return {html.unescape(m) for m in re.findall(r"<code>([^<]*)</code>", text)}


def test_every_cohort_and_manifest_column_is_documented(site):
    codes = _codes(site / "reference" / "schema.html")
    assert [c for c in (*COHORT_COLUMN_NAMES, *MANIFEST_COLUMNS) if c not in codes] == []


def test_every_tool_is_documented(site):
    codes = _codes(site / "reference" / "tools.html")
    assert [t for t in TOOLS if t not in codes or f"python -m epi_spineage.{t}" not in codes] == []


def test_every_database_table_is_documented(site):
    codes = _codes(site / "reference" / "database.html")
    assert [t for t in DB_TABLES if t not in codes] == []


def test_quick_start_is_two_commands_and_ci_calls_the_test_one():
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)


def test_readme_is_short_and_its_links_into_the_docs_exist():
    assert len(README.splitlines()) < 200
    links = re.findall(r"\]\(((?:docs/)[^)#\s]+)(#[^)\s]*)?\)", README)
    assert len(links) >= 10
    assert [path for path, _ in links if not (ROOT / path).exists()] == []
