"""The command line: the demo path, real-data paths (--cohort, --db) and one-line errors (exit 2)."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd
import pytest

from epi_spineage.report import main

SMALL = ["--n-derivation", "1200", "--n-external", "600", "--seed", "3"]


def _one_line_error(capsys, argv) -> str:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors exit from inside the parser
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_demo_cli_prints_index_path(tmp_path, capsys, caplog):
    out = tmp_path / "demo"
    with caplog.at_level(logging.INFO, logger="epi_spineage"):
        assert main([*SMALL, "--out", str(out), "--no-svg"]) == 0
    captured = capsys.readouterr()
    printed = captured.out.strip()
    assert printed == str(out / "index.html")
    # stderr is no terminal here: no bar, and one INFO line with every step and its time (issue 16)
    assert "\r" not in captured.err and "step/s" not in captured.err
    summary = [r.getMessage() for r in caplog.records if r.name == "epi_spineage.cli.report"]
    assert len(summary) == 1 and summary[0].startswith("report: ")
    for step in ("simulate the demo cohorts", "table 1", "Cox models, fracture", "write HTML, tables and exports"):
        assert re.search(rf"{re.escape(step)} ([\d.]+ s|\d+ min \d+ s)( \||$)", summary[0]), step
    payload = json.loads((out / "results.json").read_text())
    assert payload["meta"]["synthetic"] is True
    assert payload["numbers"]["n_analysed"]["external"] == 600
    assert not list((out / "figures").glob("*.svg"))


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory, demo_inputs):
    der, ext, _ = demo_inputs
    path = tmp_path_factory.mktemp("cohort") / "cohort.csv"
    pd.concat([der, ext], ignore_index=True).to_csv(path, index=False)
    return path


def test_cohort_file_with_mapping_and_config(tmp_path, capsys, demo_inputs):
    der, ext, _ = demo_inputs
    df = pd.concat([der.head(1500), ext.head(800)], ignore_index=True)
    df = df.rename(columns={"age_years": "AGE"}).assign(sex=df["sex"].map({"F": 2, "M": 1}))
    path = tmp_path / "mine.parquet"
    df.to_parquet(path)
    mapping = tmp_path / "map.toml"
    mapping.write_text('[columns]\nAGE = "age_years"\n\n[values.sex]\n"1" = "M"\n"2" = "F"\n')
    config = tmp_path / "study.toml"
    config.write_text(
        '[report]\ntitle = "My study"\n[survival]\nties = "breslow"\n'
        '[models.fracture]\n"model 1" = ["age_years", "sex"]\n'
    )
    out = tmp_path / "out"
    rc = main(
        ["--cohort", str(path), "--mapping", str(mapping), "--config", str(config), "--out", str(out), "--no-svg"]
    )
    assert rc == 0, capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    assert payload["meta"]["synthetic"] is False
    assert payload["config"]["ties"] == "breslow"
    models = {r["model"] for r in payload["tables"]["cox_fracture"]}
    assert models == {"model 1"}
    text = (out / "index.html").read_text()
    assert "My study" in text and 'class="banner"' not in text


def test_db_with_scoring_section(tmp_path, capsys, scored_db):
    db, df = scored_db
    out = tmp_path / "dbout"
    rc = main(["--db", str(db), "--out", str(out), "--no-svg"])
    assert rc == 0, capsys.readouterr().err
    text = (out / "index.html").read_text()
    assert 'id="scoring"' in text
    payload = json.loads((out / "results.json").read_text())
    # scored participants have a spine age only in the scores table: none may be lost in the join
    assert payload["numbers"]["n_analysed"]["external"] == 800
    linkage = payload["scoring_qc"]["tables"]["qc_linkage"][0]
    assert linkage["cohort_rows"] == len(df) and linkage["with_score"] == 800
    # the spine ages seen are the original ones (uncorrected r of the external cohort)
    from epi_spineage import stats

    ext = df[df["cohort"] == "external"]
    r = stats.pearson(ext["age_years"], ext["spine_age_years"]).estimate
    assert abs(payload["numbers"]["pearson_r"]["external"] - r) < 1e-12


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys, cohort_csv):
    assert "not found" in _one_line_error(capsys, ["--cohort", str(tmp_path / "nope.csv")])
    assert "--mapping needs --cohort" in _one_line_error(capsys, ["--mapping", "x.toml"])
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[survival]\ntiez = 'efron'\n")
    assert "tiez" in _one_line_error(capsys, ["--config", str(bad_cfg)])
    broken = tmp_path / "broken.toml"
    broken.write_text("[survival\n")
    assert "TOML" in _one_line_error(capsys, ["--config", str(broken)])
    no_age = tmp_path / "no_age.csv"
    pd.read_csv(cohort_csv).drop(columns=["age_years"]).to_csv(no_age, index=False)
    assert "age_years" in _one_line_error(capsys, ["--cohort", str(no_age), "--out", str(tmp_path / "o")])
    wrong_roles = tmp_path / "roles.csv"
    pd.read_csv(cohort_csv).assign(cohort="other").to_csv(wrong_roles, index=False)
    assert "cohort" in _one_line_error(capsys, ["--cohort", str(wrong_roles), "--out", str(tmp_path / "o")])
    notdb = tmp_path / "x.duckdb"
    notdb.write_text("not a database")
    _one_line_error(capsys, ["--db", str(notdb), "--out", str(tmp_path / "o")])
    _one_line_error(capsys, ["--db", str(tmp_path / "missing.duckdb")])
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a folder" in _one_line_error(capsys, [*SMALL, "--out", str(afile)])
    assert "n-derivation" in _one_line_error(capsys, ["--n-derivation", "10"])
    _one_line_error(capsys, ["--no-such-option"])
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    _one_line_error(capsys, ["--cohort", str(junk)])


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_simulator_files_are_labelled_synthetic(tmp_path, capsys):
    from epi_spineage.synth.cohort import simulate_study

    paths = simulate_study(seed=9, n_derivation=1200, n_external=600).write(tmp_path / "sim", fmt="parquet")
    out = tmp_path / "out"
    rc = main(["--cohort", str(paths["derivation"]), str(paths["external"]), "--out", str(out), "--no-svg"])
    assert rc == 0, capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    assert payload["meta"]["synthetic"] is True
    assert payload["numbers"]["n_analysed"]["external"] == 600
    assert len(payload["tables"]["truth_vs_estimate"]) > 0


def test_a_ci_level_the_labels_do_not_show_is_refused(tmp_path, capsys):
    # Every caption and figure says 95%: another level would print mislabelled intervals.
    cfg = tmp_path / "study.toml"
    cfg.write_text("[survival]\nci_level = 0.9\n")
    assert "0.95" in _one_line_error(capsys, ["--config", str(cfg), "--out", str(tmp_path / "o")])
