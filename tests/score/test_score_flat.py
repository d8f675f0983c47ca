"""Issue 11 item 2, scoring side: a flat (degenerate) model's run ends with a warning line, and the
report's scoring QC lists weak models and flat runs; its drift minimum count can be overridden."""

from __future__ import annotations

import json
import logging

import duckdb
import numpy as np
import pytest

from epi_spineage.score.drift import PredictionSpread, end_of_run_warnings

from .conftest import TEST_KEY, make_checkpoint, phantom_dicoms, write_zip


def test_prediction_spread_and_the_closing_warnings():
    flat, varied = PredictionSpread(), PredictionSpread()
    for i in range(12):
        flat.add(66.12)
        varied.add(50.0 + 3 * i)
    flat.add(None)
    flat.add(float("nan"))
    assert flat.n == 12 and flat.sd == 0.0 and flat.is_flat()
    assert varied.sd == pytest.approx(np.std(50.0 + 3 * np.arange(12), ddof=1)) and not varied.is_flat()
    few = PredictionSpread()
    for _ in range(9):
        few.add(70.0)
    assert not few.is_flat()  # 9 images are too few to call a run flat
    weak_meta = {"quality": {"verdict": "weak", "reasons": ["flat predictor: prediction SD 0.00 years"]}}
    lines = end_of_run_warnings("r1", "m1", weak_meta, flat)
    assert len(lines) == 2 and "WEAK MODEL" in lines[0] and "near-zero spread" in lines[1] and "66.12" in lines[1]
    assert end_of_run_warnings("r1", "m1", {"quality": {"verdict": "ok"}}, varied) == []


@pytest.fixture
def flat_checkpoint(tmp_path):
    """A checkpoint whose last layer's weights are zero (constant output), flagged weak in its meta."""
    import torch
    from safetensors.torch import load_file, save_file

    out = make_checkpoint(tmp_path / "flat")
    weights = load_file(out / "model.safetensors")
    last = max(k for k in weights if k.startswith("head.") and k.endswith(".weight"))
    weights[last] = torch.zeros_like(weights[last])
    save_file(weights, out / "model.safetensors", metadata={"format": "epi_spineage.model/1"})
    from epi_spineage.model.checkpoint import sha256_file

    meta = json.loads((out / "meta.json").read_text())
    meta["weights_sha256"] = sha256_file(out / "model.safetensors")
    meta["quality"] = {"verdict": "weak", "reasons": ["flat predictor: prediction SD 0.00 years"], "allowed_weak": True}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def test_scoring_a_flat_model_warns_at_the_end_and_qc_lists_it(tmp_path, flat_checkpoint, key_env, caplog):
    from epi_spineage.report.scoring_qc import scoring_qc
    from epi_spineage.score.pipeline import score_archives

    archive = write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(10, seed=3)})
    db_path = tmp_path / "s.duckdb"
    with caplog.at_level(logging.WARNING, logger="epi_spineage"):
        summary = score_archives(
            [archive], flat_checkpoint, db_path, key=TEST_KEY, batch_size=8, workers=0, device="cpu"
        )
    assert summary.n_scored == 10
    text = caplog.text
    assert "near-zero spread" in text and "WEAK MODEL" in text
    qc = scoring_qc(str(db_path))
    assert qc.weak_models == [summary.model_id]
    assert qc.flat_runs.run_id.tolist() == [summary.run_id] and qc.flat_runs.n.iloc[0] == 10
    assert qc.flat_runs.sd_years.iloc[0] < 0.5
    assert any("WEAK MODEL" in n for n in qc.notes) and any("near-zero spread" in n for n in qc.notes)
    con = duckdb.connect(str(db_path), read_only=True)
    assert con.execute("SELECT bool_and(flat_run) FROM v_drift").fetchall()[0][0] is True
    con.close()
    assert qc.drift_min_count == 30
    assert scoring_qc(str(db_path), drift_min_count=5).drift_min_count == 5
