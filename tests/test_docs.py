"""The documentation site builds with warnings as errors, opens offline, and keeps its promises.

Promises other files rely on: every tool has a guide (``TOOL_GUIDES`` of the hook), and the methods
page has the anchors that code comments cite as ``docs/methods.md#<anchor>``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from epi_spineage.schema import TOOLS
from tests.docs_site import HOOK, ROOT, build_site, load_hook

#: Anchors of docs/methods.md that code and SQL comments may cite. Add, never remove.
METHODS_ANCHORS = (
    "preprocessing",
    "network",
    "loss",
    "targets",
    "calibration",
    "bias-correction",
    "beheshti",
    "cole",
    "zhang",
    "out-of-fold",
    "bias-pitfalls",
    "pearson",
    "auroc",
    "delong",
    "delong-fast",
    "auc-ci",
    "delong-test",
    "kaplan-meier",
    "greenwood",
    "km-ci",
    "four-groups",
    "logrank",
    "incidence",
    "cox",
    "cox-ties",
    "hr-per-sd",
    "cox-terms",
    "cox-models",
    "complete-cases",
    "concordance",
    "ph-test",
    "cox-subgroups",
    "accelerated",
    "frax",
    "frax-ingest",
    "frax-reclassification",
    "age-gap-regression",
    "table-1",
    "grad-cam",
    "competing-risks",
    "references",
)
#: Anchors of docs/conventions.md.
CONVENTIONS_ANCHORS = ("units", "pad", "rounding", "cut-rule", "ci-level", "tidy-results", "errors", "identifiers")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (mkdocs-material)")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed (mkdocstrings)")
    return build_site(tmp_path_factory.mktemp("docs"))


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


def test_site_builds_strict_with_every_page(site):
    nav = re.findall(r":\s+([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert len(nav) >= 20
    assert [p for p in nav if not (site / p.replace(".md", ".html")).is_file()] == []
    # The placeholders were all replaced (an unknown one would have failed the strict build).
    leftovers = [p.name for p in site.rglob("*.html") if "<!-- schema:" in p.read_text(encoding="utf-8")]
    assert leftovers == []


def test_site_loads_nothing_from_the_network(site):
    remote = re.compile(
        r"<script[^>]+src=\"(?:https?:)?//|<link[^>]+href=\"(?:https?:)?//|<img[^>]+src=\"(?:https?:)?//"
        r"|fonts\.googleapis|fonts\.gstatic|url\((?:['\"])?(?:https?:)?//|@import\s+(?:url\()?['\"]?https?:"
    )
    offenders = []
    for path in site.rglob("*"):
        if path.suffix in (".html", ".css") and remote.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(site)))
    assert offenders == []
    # Search works from file:// (the offline plugin inlines the index).
    assert (site / "search" / "search_index.js").is_file()


def test_every_tool_has_a_guide(site):
    hook = load_hook()
    assert sorted(hook.TOOL_GUIDES) == sorted(TOOLS)
    for tool, target in hook.TOOL_GUIDES.items():
        page, _, anchor = target.partition("#")
        html_page = site / page.replace(".md", ".html")
        assert html_page.is_file(), tool
        if anchor:
            assert anchor in _ids(html_page), target
        assert f"epi_spineage.{tool}" in html_page.read_text(encoding="utf-8"), f"{page} never shows how to run {tool}"


def test_methods_and_conventions_have_the_promised_anchors(site):
    assert [a for a in METHODS_ANCHORS if a not in _ids(site / "methods.html")] == []
    assert [a for a in CONVENTIONS_ANCHORS if a not in _ids(site / "conventions.html")] == []
    # Old "METHODS section N" citations in SQL comments are rewritten onto these anchors.
    assert set(load_hook().METHODS_SECTIONS.values()) <= set(METHODS_ANCHORS)


def test_readme_links_land_on_built_pages_and_anchors(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []
    for path, anchor in re.findall(r"\]\(docs/([^)#\s]+\.md)(?:#([^)\s]+))?\)", readme):
        page = site / path.replace(".md", ".html")
        if not page.is_file() or (anchor and anchor not in _ids(page)):
            missing.append(f"{path}#{anchor}")
    assert missing == []


def test_api_reference_is_rendered_from_docstrings(site):
    pages = sorted((ROOT / "docs" / "api").glob("*.md"))
    assert len(pages) >= 9
    for page in pages:
        module = page.read_text(encoding="utf-8").split(":::", 1)[1].split()[0]
        built = (site / "api" / f"{page.stem}.html").read_text(encoding="utf-8")
        assert f'id="{module}"' in built, module
        assert built.count('class="doc doc-heading"') >= 2, f"{module}: nothing documented"


def test_generated_tables_follow_the_code_and_never_import_torch():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('hook', {str(HOOK)!r})\n"
        "hook = importlib.util.module_from_spec(spec); spec.loader.exec_module(hook)\n"
        "blocks = hook.render_all()\n"
        "from epi_spineage import schema\n"
        "assert all(f'`{c.name}`' in blocks['cohort'] for c in schema.COHORT_COLUMNS)\n"
        "assert all(f'`{t}`' in blocks['db-tables'] for t in schema.DB_TABLES)\n"
        "assert 'v_cohort_scores' in blocks['db-views'] and 'pad_corrected_years' in blocks['db-views']\n"
        "assert 'torch' not in sys.modules, 'the docs hook imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_sql_comment_citations_become_links_to_this_site():
    hook = load_hook()
    text = hook._methods_links(
        "cut (METHODS.md section 7); Beheshti (METHODS 2); see `docs/conventions.md#cut-rule`", 1
    )
    assert "[methods](../methods.md#accelerated)" in text
    assert "[methods](../methods.md#bias-correction)" in text
    assert "[conventions#cut-rule](../conventions.md#cut-rule)" in text
    assert "METHODS" not in text


def test_headings_after_a_generated_table_survive(site):
    # A placeholder swallowing the blank line after it would glue the next heading onto the table.
    assert {"tables", "views", "sql-tests", "view-v_cohort_scores"} <= _ids(site / "reference" / "database.html")
    assert {"cohort", "manifest"} <= _ids(site / "reference" / "schema.html")
    assert "rounding" in _ids(site / "conventions.html")


def test_code_cites_this_repository_not_files_beside_it():
    # The methods, schema and style files beside the project are not shipped; code and SQL cite docs/ instead.
    pattern = re.compile(
        r"METHODS(\.md|'|,? (section |§ ?)?\d)|SCHEMA\.md|PUBLISHED(\.md| Table)|STYLE\.md|\.\./shared"
    )
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for d in ("epi_spineage", "sql", "benchmarks")
        for p in sorted((ROOT / d).rglob("*"))
        if p.suffix in {".py", ".sql"} and p.is_file()
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
