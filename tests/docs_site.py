"""Builds the documentation site once per test session (used by test_docs.py and test_readme.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "generate.py"

_built: dict[str, Path] = {}


def build_site(out: Path) -> Path:
    """``mkdocs build --strict`` into ``out/site`` (once per session); fails with mkdocs' own output."""
    if "site" in _built:
        return _built["site"]
    site = out / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    _built["site"] = site
    return site


def load_hook() -> ModuleType:
    """The MkDocs hook module (docs/hooks/generate.py), imported from its file."""
    spec = importlib.util.spec_from_file_location("epi_spineage_docs_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
