"""Batch scoring of image archives into DuckDB (the nightly job), ingest, drift and scale-out.

``python -m epi_spineage.score ARCHIVE... --model CKPT_DIR --db FILE.duckdb``. Importing this
package does not import torch; the pipeline does, when it runs.
"""

from __future__ import annotations

from epi_spineage._lazy import lazy_exports

_EXPORTS = {
    "score_archives": "pipeline",
    "ScoreSummary": "pipeline",
    "drift_summary": "drift",
    "ingest_folder": "spool",
    "apply_schema": "epi_spineage.db.schema",
    "load_results": "epi_spineage.db.store",
    "ScorerLock": "epi_spineage.db.locking",
    "DatabaseBusy": "epi_spineage.db.locking",
    "lateral_spine_problem": "qc",
}

__all__ = sorted([*_EXPORTS, "main"])


def main(argv=None) -> int:
    """``python -m epi_spineage.score``: see ``--help``."""
    from epi_spineage.cli.score import main as _main

    return _main(argv)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
