"""Where data came from: recognising the simulator's output, so that everything made from it says so.

The simulator writes ``truth.json`` (with ``"synthetic": true``) beside its cohort tables, and its
phantom DICOMs carry a Manufacturer containing ``SYNTHETIC``. ``cohort load`` records the first as a
comment on the DuckDB table; the report reads both back and shows the synthetic banner.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Written as the DuckDB table comment of a cohort loaded from the simulator's output.
SYNTHETIC_TABLE_COMMENT = "SYNTHETIC: loaded from the epi_spineage simulator output (truth.json beside it)"
#: Every phantom's DICOM Manufacturer contains this word.
SYNTHETIC_MANUFACTURER_MARK = "SYNTHETIC"


def simulator_truth(table_path: str | Path | None) -> dict | None:
    """The simulator's ``truth.json`` beside a cohort file, when it says ``synthetic: true``; else None."""
    if table_path is None:
        return None
    path = Path(table_path).parent / "truth.json"
    if not path.is_file():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return truth if isinstance(truth, dict) and truth.get("synthetic") is True else None
