"""Declared = imported: the core dependencies are the ones package modules import, and every
third-party module a package module imports is declared (core or an extra)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# distribution name -> import name, where they differ
IMPORT_NAME = {
    "opencv-python-headless": "cv2",
    "pillow": "PIL",
    "scikit-learn": "sklearn",
    "pylibjpeg-libjpeg": "libjpeg",
    "pylibjpeg-openjpeg": "openjpeg",
    "pylibjpeg-rle": "rle",
    "python-docx": "docx",
    "nvidia-nvimgcodec-cu13": "nvidia",
}
# declared for a later issue, or loaded by another package (pydicom's JPEG plugins, timm's torchvision)
NOT_IMPORTED_ON_PURPOSE = {
    "torchvision",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "tomli",
    "polars",
    # the gpu extra's decoders, loaded by nvidia.nvimgcodec itself
    "nvidia-nvjpeg2k-cu13",
    "nvidia-nvjpeg",
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", "")) == "TYPE_CHECKING"


def _package_imports() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "epi_spineage").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # imports under `if TYPE_CHECKING:` are for the type checker only, never at run time
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and _is_type_checking(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "epi_spineage"}


def test_declared_dependencies_are_imported_and_imports_are_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    imported = _package_imports()
    unused_core = {d for d in core - NOT_IMPORTED_ON_PURPOSE if IMPORT_NAME.get(d, d) not in imported}
    assert not unused_core, f"core dependencies no package module imports: {sorted(unused_core)}"
    declared = {IMPORT_NAME.get(d, d) for d in core | extras}
    assert imported <= declared, f"imported but not declared: {sorted(imported - declared)}"
    for only_tests in ("lifelines", "scikit-learn"):
        assert only_tests not in core
