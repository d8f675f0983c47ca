"""Migration 4: ``scores.decoder`` records which image decoder produced the pixels behind each score."""

from __future__ import annotations

import duckdb

from epi_spineage.db import migrations
from epi_spineage.db.results import now_utc, to_table
from epi_spineage.db.schema import apply_schema
from epi_spineage.db.store import load_results
from tests.db.conftest import V1_COUNTS, V1_KEY


def _score_row(content_hash: str, decoder: str | None) -> dict:
    return {
        "run_id": "r4",
        "source_path": f"/x/{content_hash}.dcm",
        "status": "scored",
        "content_hash": content_hash,
        "model_id": "m",
        "weights_hash": "w",
        "preprocess_config_hash": "p",
        "package_version": "t",
        "device": "cuda-bf16",
        "decoder": decoder,
        "spine_age_years": 61.5,
        "spine_age_sd_years": 3.0,
        "recorded_at": now_utc(),
    }


def test_the_0_1_0_database_gains_a_null_decoder_and_new_scores_record_theirs(v1_db):
    con = duckdb.connect(str(v1_db))
    try:
        apply_schema(con, key=V1_KEY)
        assert migrations.schema_version(con) >= 4
        columns = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'"
            ).fetchall()
        }
        assert "decoder" in columns
        # Scores from before version 4 came from the CPU reader but did not say so: left NULL.
        old = con.execute("SELECT count(*), count(decoder) FROM scores").fetchall()[0]
        assert old == (V1_COUNTS["scores"], 0)
        con.execute("BEGIN TRANSACTION").fetchall()
        load_results(con, to_table([_score_row("h-gpu", "gpu:nvimgcodec"), _score_row("h-cpu", "cpu:pydicom")]))
        con.execute("COMMIT").fetchall()
        got = dict(con.execute("SELECT content_hash, decoder FROM scores WHERE run_id = 'r4'").fetchall())
        assert got == {"h-gpu": "gpu:nvimgcodec", "h-cpu": "cpu:pydicom"}
    finally:
        con.close()


def test_a_spool_file_written_before_the_decoder_column_still_loads(tmp_path):
    con = duckdb.connect(str(tmp_path / "new.duckdb"))
    try:
        apply_schema(con)
        table = to_table([_score_row("h-old", None)]).drop(["decoder"])  # an older writer's shard
        con.execute("BEGIN TRANSACTION").fetchall()
        counts = load_results(con, table)
        con.execute("COMMIT").fetchall()
        assert counts.scored == 1
        assert con.execute("SELECT decoder FROM scores").fetchall() == [(None,)]
    finally:
        con.close()
