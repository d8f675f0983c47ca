"""The one stand-in model row the SQL tests register (``db.register_model``), with a given bias correction."""

from __future__ import annotations

import datetime as dt
import json


def stand_in_model_row(bias_correction: dict, model_id: str = "m1") -> dict:
    """A model row with placeholder hashes, the 40-100 age range and ``bias_correction`` in its metadata."""
    return {
        "model_id": model_id,
        "weights_hash": "w" * 64,
        "backbone": "test",
        "min_age_years": 40,
        "max_age_years": 100,
        "temperature": 1.0,
        "preprocess_config_hash": "c" * 64,
        "preprocess_config_json": "{}",
        "metadata_json": json.dumps({"bias_correction": bias_correction}),
        "registered_at": dt.datetime(2025, 1, 1),
    }
