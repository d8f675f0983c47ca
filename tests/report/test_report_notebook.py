"""analysis/report.qmd: its Python cells run, in order, against a scored database.

Quarto and Jupyter are not installed here, so the test executes the cells itself with a minimal
stand-in for ``IPython.display`` (display only collects what it is given).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "analysis" / "report.qmd"


def _cells(text: str) -> list[str]:
    return re.findall(r"```\{python\}\n(.*?)```", text, flags=re.S)


def _fake_ipython(shown: list):
    display_mod = types.ModuleType("IPython.display")
    display_mod.display = lambda *objs: shown.extend(objs)
    display_mod.Markdown = lambda text: ("markdown", text)
    display_mod.HTML = lambda text: ("html", text)
    display_mod.Image = lambda data=None, **kw: ("image", data)
    pkg = types.ModuleType("IPython")
    pkg.display = display_mod
    pkg.get_ipython = lambda: None  # matplotlib asks whether it runs inside IPython
    pkg.version_info = (8, 0, 0)
    return {"IPython": pkg, "IPython.display": display_mod}


def test_notebook_cells_run_against_db(scored_db, tmp_path, monkeypatch):
    db, df = scored_db
    cells = _cells(NOTEBOOK.read_text(encoding="utf-8"))
    assert cells[0].lstrip().startswith("#| tags: [parameters]")
    import epi_spineage.report.document  # noqa: F401  (matplotlib must see the real environment first)

    shown: list = []
    for name, mod in _fake_ipython(shown).items():
        monkeypatch.setitem(sys.modules, name, mod)
    ns: dict = {}
    exec(compile(cells[0], "params", "exec"), ns)
    ns.update(db=str(db), out=str(tmp_path / "nb"))  # as `quarto render -P db:... -P out:...` would
    for i, cell in enumerate(cells[1:], start=1):
        exec(compile(cell, f"cell {i}", "exec"), ns)
    results = ns["results"]
    assert results.cohorts["external"].n == int((df["cohort"] == "external").sum())
    assert (tmp_path / "nb" / "index.html").is_file()
    assert any(isinstance(o, tuple) and o[0] == "image" and o[1][:4] == b"\x89PNG" for o in shown)
    assert ns["inputs"].synthetic is False
