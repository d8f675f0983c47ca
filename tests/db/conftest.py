"""The 0.1.0 database fixture, unpacked fresh for each test (tests write to it)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "v1_release_0_1_0.duckdb.gz"
#: What release 0.1.0 wrote into the fixture (tests/db/fixtures/make_v1_db.py).
V1_COUNTS = {"images": 12, "scores": 12, "runs": 1, "errors": 1, "models": 1, "cohort": 20, "cutpoints": 0}
#: The key the fixture's participant ids were hashed with.
V1_KEY = b"fixture-key-for-the-v1-database-0123456789"


@pytest.fixture
def v1_db(tmp_path) -> Path:
    pytest.importorskip("duckdb")
    out = tmp_path / "v1.duckdb"
    with gzip.open(FIXTURE, "rb") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return out
