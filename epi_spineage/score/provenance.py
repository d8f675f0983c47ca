"""Provenance stamped on every score and run: who scored what, with which weights and settings."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone

from epi_spineage import __version__ as PACKAGE_VERSION


def new_run_id() -> str:
    """Sortable and unique: UTC time plus 8 random hex digits, e.g. ``20260101T020000Z-1a2b3c4d``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def host_name() -> str:
    return os.environ.get("EPI_SPINEAGE_HOST") or socket.gethostname()


def model_provenance(loaded, device: str) -> dict:
    """The per-score provenance columns that come from the model and the run environment."""
    return {
        "model_id": loaded.model_id,
        "weights_hash": loaded.weights_hash,
        "preprocess_config_hash": loaded.preprocess_config.config_hash(),
        "package_version": PACKAGE_VERSION,
        "device": device,
    }
