"""Issue 16, text items: cross-references by table number, the config as TOML, counts as integers,
Table 1's "n missing" column, one name per cohort; and the report's progress (steps with times)."""

from __future__ import annotations

import csv
import html
import io
import logging
import re

import pandas as pd
import pytest

from epi_spineage.report.config import StudyConfig, config_from_dict, config_rows, config_to_toml, tomllib
from epi_spineage.report.render import Section, TableItem, number_items, table_ref
from epi_spineage.stats.table1 import format_table_one, table_one


@pytest.fixture(scope="module")
def page(built_report) -> str:
    return built_report.index.read_text(encoding="utf-8")


def _table_number(page: str, name: str) -> int:
    m = re.search(rf'id="tab-{name}">\s*<figcaption[^>]*><strong>Table (\d+)\.</strong>', page)
    assert m, name
    return int(m[1])


# ------------------------------------------------------------------------ cross-references
def test_the_truth_section_names_the_cox_table_by_its_number(page):
    truth = page[page.index('<section id="truth">') :]
    truth = truth[: truth.index("</section>")]
    n = _table_number(page, "cox_fracture")
    assert f"differ from the models of Table {n}." in truth
    assert "Table 2's" not in page and "{table:" not in page


def test_table_ref_is_filled_in_everywhere_once_numbered():
    a = Section("a", "A", paragraphs=[f"see {table_ref('second')} and {table_ref('gone')}"])
    a.tables.append(TableItem("first", "x", pd.DataFrame({"v": [1]})))
    a.tables.append(TableItem("hidden", "x", pd.DataFrame({"v": [1]}), show=False))
    b = Section("b", "B", bullets=[table_ref("first")])
    b.tables.append(TableItem("second", f"as {table_ref('first')}", pd.DataFrame({"v": [1]})))
    number_items([a, b])
    assert a.paragraphs == ["see Table 2 and the table"] and b.bullets == ["Table 1"]
    assert b.tables[0].caption == "as Table 1"


# ------------------------------------------------------------------------ the config as TOML
def test_the_config_is_shown_as_complete_toml_that_reads_back_to_it(page, built_report):
    m = re.search(r'<figure class="code-block" id="code-study_config">.*?<pre><code>(.*?)</code></pre>', page, re.S)
    assert m, "no TOML block"
    text = html.unescape(m[1])
    assert "None" not in text and "{'" not in text and "..." not in text
    assert config_from_dict(tomllib.loads(text)) == built_report.results.config
    assert 'id="tab-study_config"' not in page  # no longer a table of Python values


def test_config_toml_round_trips_settings_off_their_defaults():
    cfg = StudyConfig(
        fixed_cut_years=1.25,
        min_events_per_parameter=None,
        drift_min_count=30,
        title='A "quoted" title, with \\ and ü',
        km_times_years=[0.0, 5.0],
        fracture_models={"model 1": ["age_years"], "crude": []},
        derivation_split="",
    ).validate()
    text = config_to_toml(cfg)
    assert config_from_dict(tomllib.loads(text)) == cfg
    assert config_from_dict(tomllib.loads(config_to_toml(StudyConfig()))) == StudyConfig().validate()
    rows = {(s, k): v for s, k, v in config_rows(cfg)}
    assert rows[("grouping", "fixed_cut_years")] == "1.25" and rows[("survival", "min_events_per_parameter")] == "0"


def test_every_config_field_is_in_the_toml():
    """A new StudyConfig field needs its TOML key (report/config.py _SECTIONS), or the report hides it."""
    import dataclasses

    text = config_to_toml(StudyConfig())
    data = tomllib.loads(text)
    shown = {k for body in data.values() for k in body} | {"fixed_cut_years", "drift_min_count"}
    from epi_spineage.report.config import _SECTIONS

    attrs = {a for keys in _SECTIONS.values() for a in keys.values()} | {"fracture_models", "mortality_models"}
    assert {f.name for f in dataclasses.fields(StudyConfig)} <= attrs
    assert {"fixed_cut_years", "drift_min_count"} <= shown


# ------------------------------------------------------------------------ integers as integers
def test_counts_in_data_quality_csv_are_integers(built_report):
    rows = list(csv.DictReader(io.StringIO((built_report.out / "tables" / "data_quality.csv").read_text())))
    counts = [r["n"] for r in rows if r["n"] != ""]
    assert counts and all(re.fullmatch(r"\d+", c) for c in counts), counts[:5]
    assert not any(r["n"].lower() in ("nan", "<na>") for r in rows)  # items without a count stay empty


# ------------------------------------------------------------------------ Table 1: n missing
def test_table1_has_an_n_missing_column(page, built_report):
    frame = built_report.results.cohorts["derivation"].frame
    col = next(c for c in ("tscore_femoral_neck", "height_cm", "bmi") if frame[c].isna().any())
    block = page[page.index('id="tab-table1_derivation"') :]
    block = block[: block.index("</figure>")]
    assert ">n missing</th>" in block
    tidy = built_report.results.table1.table
    tidy = tidy[(tidy["cohort"] == "derivation") & (tidy["variable"] == col)]
    expected = int(tidy.groupby("group")["n_missing"].first().sum())
    assert expected > 0
    from epi_spineage.report import labels as L

    row = re.search(rf"<td[^>]*>{re.escape(L.VARIABLES.get(col, col))}, mean ± SD</td>(.*?)</tr>", block, re.S)
    assert row, col
    assert f">{expected:,}</td>" in row[1]


def test_format_table_one_n_missing_counts_once_per_variable():
    df = pd.DataFrame(
        {
            "g": [0, 0, 1, 1, 1, 0],
            "x": [1.0, None, 2.0, None, None, 3.0],
            "c": ["a", "b", None, "a", "c", "b"],
            "b": [1, 0, 1, None, 0, 1],
        }
    )
    tidy = table_one(df, by="g", variables=["x", "c", "b"])
    shown = format_table_one(tidy, missing=True)
    assert list(shown.columns)[0] == "characteristic" and list(shown.columns)[-2:] == ["n missing", "p value"]
    by_char = dict(zip(shown["characteristic"], shown["n missing"]))
    assert by_char["x, mean ± SD"] == "3" and by_char["c, n (%)"] == "1" and by_char["b, n (%)"] == "1"
    assert by_char["  a"] == ""  # level rows leave it empty
    assert "n missing" not in format_table_one(tidy).columns  # the published layout, unchanged by default
    overall = format_table_one(table_one(df, by="g", variables=["x"], overall=True), missing=True)
    assert overall["n missing"].tolist() == ["3"]


# ------------------------------------------------------------------------ one name per cohort
def test_the_derivation_cohort_has_one_name_in_the_report(page):
    text = re.sub(r"<pre>.*?</pre>", " ", page, flags=re.S)  # the config as TOML: code, not a name
    text = re.sub(r"<[^>]+>", " ", text)  # the text a reader sees
    # "derivation (test set)" in tables and labels; prose says "the derivation test set" / "derivation cohort"
    bare = [m.start() for m in re.finditer(r"\bderivation\b(?! \(test set\))(?! test set)(?! cohort)(?!-)", text)]
    contexts = [text[max(0, i - 40) : i + 40].replace("\n", " ") for i in bare]
    assert contexts == [], contexts[:8]


# ------------------------------------------------------------------------ progress
def test_run_study_shows_each_step_with_its_time(demo_inputs, monkeypatch, caplog):
    """On a terminal each step prints its name and time; elsewhere one INFO line lists them."""
    from epi_spineage.progress import Progress
    from epi_spineage.report import analyses, steps

    monkeypatch.setattr(steps, "STEPS", steps.STEPS[:2])  # two quick steps: the loop is what is tested
    der, ext, _ = demo_inputs

    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = FakeTTY()
    with Progress("report", total=3, unit="step", stream=tty) as bar:
        analyses.run_study(der.head(600), ext.head(300), progress=bar)
    drawn = tty.getvalue()
    for name in ("prepare cohorts", "table 1", "agreement"):
        assert re.search(rf"{name}\s+([\d.]+ s|\d+ min \d+ s)", drawn), (name, drawn[-400:])
    with caplog.at_level(logging.INFO, logger="epi_spineage"):
        analyses.run_study(der.head(600), ext.head(300))
    lines = [r for r in caplog.records if r.name == "epi_spineage.report.analyses" and r.levelno == logging.INFO]
    assert len(lines) == 1
    steps_part = r"prepare cohorts [\d.]+ s \| table 1 [\d.]+ s \| agreement [\d.]+ s$"
    assert re.search(r"^analyses: 3/3 step in .*; " + steps_part, lines[0].getMessage())
