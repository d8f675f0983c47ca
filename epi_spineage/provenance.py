"""Where data came from: the provenance of scores and runs, and recognising the simulator's output.

Scores and runs carry who scored what, with which weights and settings (``new_run_id``, ``host_name``,
``model_provenance``).

The simulator writes ``truth.json`` (with ``"synthetic": true``) beside its cohort tables, and its
phantom DICOMs carry a Manufacturer containing ``SYNTHETIC``. ``cohort load`` records the first as a
comment on the DuckDB table; the report reads both back and shows the synthetic banner.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from epi_spineage import __version__ as PACKAGE_VERSION

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


def new_run_id() -> str:
    """Sortable and unique: UTC time plus 8 random hex digits, e.g. ``20260101T020000Z-1a2b3c4d``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def host_name() -> str:
    """The host recorded on runs (``EPI_SPINEAGE_HOST`` overrides the machine name, e.g. in containers)."""
    return os.environ.get("EPI_SPINEAGE_HOST") or socket.gethostname()


def model_provenance(loaded: Any, device: str) -> dict[str, Any]:
    """The per-score provenance columns that come from the model and the run environment."""
    return {
        "model_id": loaded.model_id,
        "weights_hash": loaded.weights_hash,
        "preprocess_config_hash": loaded.preprocess_config.config_hash(),
        "package_version": PACKAGE_VERSION,
        "device": device,
    }
