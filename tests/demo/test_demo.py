"""`make demo` runs the whole product: the chain at a small size, so that it cannot rot."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from epi_spineage.privacy import DEMO_KEY, pseudonymise

pytestmark = [pytest.mark.needs_imaging, pytest.mark.slow]


def test_the_whole_chain_at_a_small_size_and_a_rerun_reuses_it(tmp_path, monkeypatch, capfd):
    pytest.importorskip("torch")
    from epi_spineage.cli.demo import main

    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)
    out = tmp_path / "demo"
    args = [
        "--out",
        str(out),
        "--n-derivation",
        "30",
        "--n-external",
        "24",
        "--train-phantoms",
        "60",
        "--train-epochs",
        "2",
        "--allow-weak-model",
    ]
    assert main(args) == 0
    printed = capfd.readouterr().out
    assert "SYNTHETIC DATA" in printed and "duckdb -readonly" in printed
    # the sizes and why are said up front; every step has its wall and CPU time
    assert "Sizes: 30 derivation + 24 external participants" in printed and "5 events per parameter" in printed
    assert printed.count("(CPU ") >= 6
    # the demo's figures are PNG only, and it says how to get the SVG and print copies
    assert "--no-svg" in printed and "300-dpi print copies" in printed
    for name in (
        "index.html",
        "results.json",
        "demo.duckdb",
        "model/meta.json",
        "archive/phantoms.zip",
        "train.log",
        "demo-timings.json",
    ):
        assert (out / name).exists(), name
    timings = json.loads((out / "demo-timings.json").read_text())
    wanted = {"train", "simulate_and_render", "score", "load_derivation", "load_external", "report"}
    assert set(timings["steps"]) == wanted
    assert timings["settings"]["event_shares"] == "demo"
    con = duckdb.connect(str(out / "demo.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM scores").fetchall()[0][0] == 54
        assert con.execute("SELECT count(*) FROM cohort").fetchall()[0][0] == 54
        # every scored phantom joins its (pseudonymised) cohort row
        scored = "SELECT count(*) FROM v_cohort_scores WHERE spine_age_years IS NOT NULL"
        assert con.execute(scored).fetchall()[0][0] == 54
        # the report saved the cut it learned, so the first query of the docs returns flags
        assert con.execute("SELECT count(*) FROM cutpoints").fetchall()[0][0] >= 1
        assert con.execute("SELECT count(accelerated) FROM v_accelerated").fetchall()[0][0] == 54
        # the database says the data are synthetic and the weak model is flagged
        comment = "SELECT comment FROM duckdb_tables() WHERE table_name = 'cohort'"
        assert "SYNTHETIC" in con.execute(comment).fetchall()[0][0]
        meta = json.loads(con.execute("SELECT metadata_json FROM models").fetchall()[0][0])
        assert meta["quality"]["verdict"] in ("ok", "weak")
        # the gallery explains the most accelerated phantoms of the whole archive, picked from the scores
        top = con.execute(
            "SELECT participant_id FROM v_cohort_scores ORDER BY pad_years DESC, participant_id LIMIT 8"
        ).fetchall()
    finally:
        con.close()
    chosen = pd.read_csv(out / "gallery-images.csv")
    assert [pseudonymise(p, DEMO_KEY) for p in chosen["participant_id"]] == [r[0] for r in top]
    assert "Grad-CAM heat maps" in (out / "index.html").read_text(encoding="utf-8")
    payload = json.loads((out / "results.json").read_text())
    assert payload["meta"]["synthetic"] is True

    # a rerun reuses the cohort, archive and model, and the scorer skips everything already scored
    assert main(args) == 0
    again = capfd.readouterr().out
    assert "reusing" in again and "skipped 54 already scored" in again
