"""Small pieces: display formatting, JSON conversion, Markdown tables, the study config, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.report.config import StudyConfig, config_from_dict, load_config
from epi_spineage.report.render import format_ci, format_frame, format_p, markdown_table, numeric_columns, to_jsonable

ROOT = Path(__file__).resolve().parents[2]


def test_format_p_and_ci():
    assert format_p(0.0004) == "<0.001"
    assert format_p(0.0456) == "0.046"
    assert format_p(float("nan")) == "NA"
    assert format_ci(1.7412, 1.4567, 2.0712) == "1.74 (1.46-2.07)"
    assert format_ci(-0.8, -1.2, -0.3, 1) == "-0.8 (-1.2 to -0.3)"
    assert format_ci(1.0, float("nan"), float("nan")) == "1.00"


def test_format_frame_rounds_only_for_display():
    df = pd.DataFrame({"term": ["a"], "estimate": [1.23456], "p_value": [0.00001], "n": [12345]})
    shown = format_frame(df)
    assert shown.iloc[0].tolist() == ["a", "1.23", "<0.001", "12,345"]
    assert df["estimate"].iloc[0] == 1.23456


def test_to_jsonable_handles_numpy_nan_and_frames():
    out = to_jsonable(
        {"a": np.float64(np.nan), "b": np.int64(3), "c": pd.DataFrame({"x": [1.5, np.inf]}), "d": (np.bool_(True),)}
    )
    assert out == {"a": None, "b": 3, "c": [{"x": 1.5}, {"x": None}], "d": [True]}
    json.dumps(out, allow_nan=False)


def test_markdown_table_escapes_pipes():
    md = markdown_table(pd.DataFrame({"a": ["x|y"], "b": ["1"]}))
    lines = md.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|:---|---:|" and "x\\|y" in lines[2]


def test_numeric_columns():
    df = pd.DataFrame({"group": ["younger", "older"], "hr": ["1.86 (1.21-2.87)", "<0.001"], "e": ["", "-0.3"]})
    assert numeric_columns(df) == [False, True, True]


def test_example_config_is_the_defaults():
    assert load_config(ROOT / "examples" / "study.toml").to_dict() == StudyConfig().to_dict()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nonsense": {}}, "unknown section"),
        ({"survival": {"ties": "exact"}}, "ties"),
        ({"grouping": {"cut_rule": "=>"}}, "cut_rule"),
        ({"grouping": {"cut_rule": ">", "accelerated_rule": ">"}}, "both"),
        ({"survival": {"min_events_per_parameter": -1}}, "min_events_per_parameter"),
        ({"scoring": {"drift_min_count": 0}}, "drift_min_count"),
        ({"survival": {"km_times_years": 5}}, "must be a list"),
        ({"survival": {"km_times_years": [4, 2]}}, "increasing"),
        ({"models": {"fracture": {"m": "age_years"}}}, "lists of column names"),
        ({"models": {"other": {}}}, "unknown model family"),
    ],
)
def test_bad_config_is_a_user_error(data, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(data)


def test_old_accelerated_rule_key_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="cut_rule"):
        cfg = config_from_dict({"grouping": {"accelerated_rule": ">"}})
    assert cfg.cut_rule == ">"
    with pytest.warns(DeprecationWarning):
        assert cfg.accelerated_rule == ">"


def test_events_per_parameter_rule_from_config():
    assert StudyConfig().min_events_per_parameter == 5.0
    assert config_from_dict({"survival": {"min_events_per_parameter": 10}}).min_events_per_parameter == 10.0
    assert config_from_dict({"survival": {"min_events_per_parameter": 0}}).min_events_per_parameter is None
    assert config_from_dict({"scoring": {"drift_min_count": 12}}).drift_min_count == 12


def test_config_overrides():
    cfg = config_from_dict({"grouping": {"fixed_cut_years": 1}, "models": {"mortality": {"m1": ["age_years"]}}})
    assert cfg.fixed_cut_years == 1.0 and cfg.mortality_models == {"m1": ["age_years"]}


def test_report_never_imports_torch():
    code = (
        "import sys; import epi_spineage.report, epi_spineage.report.analyses, epi_spineage.report.document, "
        "epi_spineage.report.inputs, epi_spineage.report.scoring_qc, epi_spineage.report.steps; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_rewrite_replaces_own_outputs_but_not_foreign_files(tmp_path):
    from epi_spineage.report.render import Section, TableItem, write_report

    def write(names):
        tables = {n: pd.DataFrame({"x": [1.0]}) for n in names}
        sec = Section("s", "S", tables=[TableItem(n, n, f) for n, f in tables.items()])
        meta = {"version": "0", "software": {}, "generated_utc": "now"}
        write_report(
            tmp_path,
            [sec],
            title="t",
            banner=None,
            results_json={"meta": meta, "tables": tables},
            meta=meta,
            tables=tables,
        )

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "mine.csv").write_text("a\n1\n")
    write(["a", "b"])
    assert (tmp_path / "tables" / "mine.csv").exists()  # not our folder yet: nothing removed
    write(["a"])
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.csv")) == ["a.csv"]


def test_the_report_says_where_the_accelerated_cut_came_from(demo_inputs):
    # The summary, the KM section and the methods quote this sentence; it must match what was done.
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig

    der, ext, _ = demo_inputs
    learned = run_study(der, ext, StudyConfig()).numbers["accelerated_cut_source"]
    assert "derivation test set" in learned
    fixed = run_study(der, ext, StudyConfig(fixed_cut_years=1.0)).numbers
    assert fixed["accelerated_cut_years"] == 1.0 and "fixed cut" in fixed["accelerated_cut_source"]
    alone = run_study(None, ext, StudyConfig()).numbers["accelerated_cut_source"]
    assert "external cohort itself" in alone
