"""Batch scoring of image archives into DuckDB (the nightly job), ingest, drift and scale-out.

``python -m epi_spineage.score ARCHIVE... --model CKPT_DIR --db FILE.duckdb``. Importing this
package does not import torch; the pipeline does, when it runs.
"""

from __future__ import annotations

import importlib

__all__ = ["main", "score_archives", "ScoreSummary", "drift_summary", "ingest_folder", "apply_schema",
           "load_results", "ScorerLock", "DatabaseBusy", "lateral_spine_problem"]

_LAZY = {
    "score_archives": "epi_spineage.score.pipeline",
    "ScoreSummary": "epi_spineage.score.pipeline",
    "drift_summary": "epi_spineage.score.drift",
    "ingest_folder": "epi_spineage.score.spool",
    "apply_schema": "epi_spineage.db.schema",
    "load_results": "epi_spineage.db.store",
    "ScorerLock": "epi_spineage.db.locking",
    "DatabaseBusy": "epi_spineage.db.locking",
    "lateral_spine_problem": "epi_spineage.score.qc",
}


def main(argv=None) -> int:
    """``python -m epi_spineage.score``: see ``--help``."""
    from epi_spineage.cli.score import main as _main

    return _main(argv)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'epi_spineage.score' has no attribute {name!r}")
