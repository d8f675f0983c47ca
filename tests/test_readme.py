"""The README documents the shared names, and its quick start is the two commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

from epi_spineage.schema import COHORT_COLUMN_NAMES, MANIFEST_COLUMNS, TOOLS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_cohort_and_manifest_column_is_documented():
    missing = [c for c in (*COHORT_COLUMN_NAMES, *MANIFEST_COLUMNS) if f"`{c}`" not in README]
    assert missing == []


def test_every_tool_is_documented():
    assert [t for t in TOOLS if f"`{t}" not in README] == []


def test_quick_start_is_two_commands_and_ci_calls_the_test_one():
    block = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)
