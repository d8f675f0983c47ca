"""index.html is self-contained and well formed; report.qmd renders with pandoc."""

from __future__ import annotations

import html
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from epi_spineage.report.render import pandoc_command

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
URL_ATTRS = {"src", "href", "srcset", "data", "poster", "action"}


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.imgs: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in URL_ATTRS and v is not None:
                self.urls.append((tag, k, v))
            if k == "id":
                self.ids.append(v)
        if tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(
                f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}> at line {self.getpos()[0]}"
            )
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def check_html(text: str) -> _Checker:
    c = _Checker()
    c.feed(text)
    c.close()
    return c


def test_checker_catches_problems():
    bad = check_html('<html><body><div><p>x</div><img src="https://example.org/a.png"></body></html>')
    assert bad.errors
    assert any(v.startswith("https://") for _, _, v in bad.urls)


def test_index_is_self_contained_and_balanced(built_report):
    text = built_report.index.read_text(encoding="utf-8")
    c = check_html(text)
    assert c.errors == []
    assert c.stack == []
    assert text.lstrip().startswith("<!DOCTYPE html>")
    external = [(t, k, v) for t, k, v in c.urls if not (v.startswith("#") or v.startswith("data:"))]
    assert external == [], external[:5]
    for attr in ("src=", "href="):
        assert f'{attr}"http' not in text and f"{attr}'http" not in text
    assert len(c.imgs) >= 6 and all(src.startswith("data:image/png;base64,") for src in c.imgs)
    assert len(c.ids) == len(set(c.ids)), "duplicate element ids"
    # every link in the table of contents points at a section that exists
    anchors = [v[1:] for t, k, v in c.urls if t == "a" and v.startswith("#")]
    assert anchors and set(anchors) <= set(c.ids)


def test_banner_and_sections_in_study_order(built_report):
    text = html.unescape(built_report.index.read_text(encoding="utf-8"))
    order = [
        'id="cohorts"',
        'id="agreement"',
        'id="discrimination"',
        'id="accelerated"',
        'id="cox"',
        'id="mortality"',
        'id="rates"',
        'id="competing"',
        'id="subgroups"',
        'id="frax"',
        'id="agegap"',
        'id="truth"',
        'id="quality"',
        'id="methods"',
    ]
    pos = [text.index(s) for s in order]
    assert pos == sorted(pos)
    assert text.count('class="banner-inline"') >= len(order) - 1
    for convention in ("Efron", "log-log", "type7", "Student", "Yates"):
        assert convention in text, convention


def test_qmd_is_static_markdown(built_report):
    qmd = (built_report.out / "report.qmd").read_text(encoding="utf-8")
    assert qmd.startswith("---\ntitle:")
    assert "```{python}" not in qmd and "```{r}" not in qmd
    for line in qmd.splitlines():
        if line.startswith("!["):
            target = line.split("](", 1)[1].split(")", 1)[0]
            assert (built_report.out / target).is_file(), target
    assert "| cohort |" in qmd


@pytest.mark.skipif(shutil.which("pandoc") is None, reason="pandoc not installed")
def test_qmd_renders_with_pandoc(built_report, tmp_path):
    out = tmp_path / "pandoc.html"
    cmd = pandoc_command(built_report.out / "report.qmd", out)
    proc = subprocess.run(cmd, cwd=built_report.out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    c = check_html(text)
    assert c.imgs and all(src.startswith("data:image/png;base64,") for src in c.imgs)
    assert "<table" in text and "Hazard ratio" in text
    external = [v for t, k, v in c.urls if t in ("img", "script", "link") and v.startswith(("http://", "https://"))]
    assert external == []


@pytest.mark.skipif(shutil.which("quarto") is None, reason="quarto not installed")
def test_qmd_renders_with_quarto(built_report, tmp_path):
    work = tmp_path / "q"
    shutil.copytree(built_report.out, work)
    proc = subprocess.run(
        ["quarto", "render", "report.qmd", "--to", "html"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "report.html").is_file()
