"""Registry scale on the report side (issue 18): compact reading, no growth of the written output.

No timings here (benchmarks/report.py measures those); these tests pin what makes the time and memory
bounded: the reader keeps only the analysis columns in compact dtypes and gives the same results, and
the plot data and figures have a size that does not depend on the number of participants.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest


def _cohort_table(demo_inputs) -> pd.DataFrame:
    der, ext, _ = demo_inputs
    df = pd.concat([der, ext], ignore_index=True)
    df["registry_free_text"] = "not an analysis column"  # a registry extract carries many such columns
    return df


@pytest.mark.parametrize("fmt", ["parquet", "csv", "duckdb"])
def test_reader_keeps_analysis_columns_in_compact_dtypes(tmp_path, demo_inputs, fmt):
    from epi_spineage.report.inputs import read_cohort_file

    df = _cohort_table(demo_inputs)
    if fmt == "parquet":
        ref = tmp_path / "c.parquet"
        df.to_parquet(ref, index=False)
    elif fmt == "csv":
        ref = tmp_path / "c.csv"
        df.to_csv(ref, index=False)
    else:
        import duckdb

        ref = tmp_path / "c.duckdb"
        with duckdb.connect(str(ref)) as con:
            con.register("df_view", df)
            con.execute("CREATE TABLE cohort AS SELECT * FROM df_view")
    got = read_cohort_file(str(ref), None)
    assert "registry_free_text" not in got.columns
    assert len(got) == len(df)
    assert got["death"].dtype == np.int8 and got["fracture_any"].dtype == np.int8
    assert isinstance(got["cohort"].dtype, pd.CategoricalDtype)
    assert got["age_years"].dtype == np.float64
    # pandas' default CSV float parser (as tables.read_table) may differ in the last bit
    np.testing.assert_allclose(got["age_years"].to_numpy(), df["age_years"].to_numpy(), rtol=1e-15)
    np.testing.assert_array_equal(got["death"].to_numpy(), df["death"].to_numpy())
    assert got["participant_id"].tolist() == df["participant_id"].astype(str).tolist()
    wide = df.drop(columns="registry_free_text").memory_usage(deep=True).sum()
    assert got.memory_usage(deep=True).sum() < 0.85 * wide


def test_results_through_the_compact_reader_equal_the_in_memory_ones(tmp_path, demo_inputs, built_report):
    """The whole study read back from Parquet (compact dtypes) gives the very same tables."""
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.inputs import load_inputs

    path = tmp_path / "cohort.parquet"
    _cohort_table(demo_inputs).to_parquet(path, index=False)
    config = StudyConfig(mi_imputations=2, mi_iterations=2)  # as the built_report fixture
    inputs = load_inputs(cohort=str(path), mapping=None, db=None, config=config, seed=0, n_derivation=0, n_external=0)
    given = inputs.derivation.copy(), inputs.external.copy()
    results = run_study(inputs.derivation, inputs.external, config)
    # the prepared frames share the given frames' columns (report.prepare): no step may write to them
    pd.testing.assert_frame_equal(inputs.derivation, given[0], check_exact=True)
    pd.testing.assert_frame_equal(inputs.external, given[1], check_exact=True)
    want = built_report.results.tables  # the reference also has truth tables (attach_truth)
    assert set(results.tables) <= set(want) and len(results.tables) >= 10
    for name, frame in want.items():
        if name.startswith("truth"):
            continue
        pd.testing.assert_frame_equal(
            results.tables[name].reset_index(drop=True),
            frame.reset_index(drop=True),
            check_dtype=False,
            check_categorical=False,
            check_exact=True,
            obj=name,
        )


def test_validation_reads_categorical_text_columns():
    from epi_spineage.tables import validate_cohort

    df = pd.DataFrame(
        {
            "participant_id": ["a", "b", "c"],
            "cohort": pd.Categorical(["derivation"] * 3),
            "age_years": [60.0, 61.0, 62.0],
            "sex": ["F", "M", "F"],
            "split": pd.Categorical(["test", "nonsense", "test"]),
        }
    )
    problems = validate_cohort(df, raise_on_error=False)
    assert any(p.startswith("split: 1 row(s)") for p in problems), problems


def test_thinned_step_curve_is_bounded_and_within_resolution():
    from epi_spineage.report.plotdata import RESOLUTION, event_times_only, thin_steps

    rng = np.random.default_rng(1)
    t = np.sort(rng.exponential(5.0, 200_000))
    y = 1 - np.exp(-t / 7)
    frame = pd.DataFrame({"group": "all", "time": t, "estimate": y})
    thin = thin_steps(frame, "time", "estimate")
    assert len(thin) <= 2 / RESOLUTION + 2
    assert thin["time"].iloc[-1] == t[-1]
    # the step function of the thinned points is within the resolution of the full one everywhere
    idx = np.searchsorted(thin["time"].to_numpy(), t, side="right") - 1
    assert np.max(np.abs(thin["estimate"].to_numpy()[idx] - y)) <= RESOLUTION * np.ptp(y) + 1e-12
    km = pd.DataFrame(
        {"group": "g", "time": [0, 1, 2, 3, 4], "estimate": [0, 0.1, 0.1, 0.2, 0.2], "events": [0, 3, 0, 1, 0]}
    )
    assert event_times_only(km)["time"].tolist() == [0, 1, 3, 4]


def _plot_outputs(monkeypatch, n: int) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes of each curve's CSV and of the age-scatter, ROC and Kaplan-Meier SVGs at ``n`` participants
    (vector files: one path vertex per drawn point, so they grow with anything drawn per participant)."""
    from epi_spineage.report import analyses, steps
    from epi_spineage.report import figures as F
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import _agreement, _discrimination, _Doc, _km
    from epi_spineage.report.plotdata import compact_curve
    from epi_spineage.synth.cohort import simulate_study

    study = simulate_study(seed=5, n_derivation=n, n_external=50)
    monkeypatch.setattr(
        steps,
        "STEPS",
        [s for s in steps.STEPS if s[1] in ("agreement", "discrimination", "groups")],
    )
    results = analyses.run_study(study.derivation, None, StudyConfig(derivation_split=""))
    csv = {}
    for name, frame in results.curves.items():
        buf = io.StringIO()
        compact_curve(frame).to_csv(buf, index=False, float_format="%.6g")
        csv[name] = len(buf.getvalue())
    monkeypatch.setattr(F, "save_figure", lambda fig, out_dir, name, **kw: _svg(fig))
    d = _Doc(results, None, svg=False)
    for section in (_agreement, _discrimination, _km):
        section(d)
    svg = {f.name: len(f.png) for s in d.sections for f in s.figures}
    return csv, svg


def _svg(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", dpi=60, metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def test_plot_data_and_figures_do_not_grow_with_n(monkeypatch):
    """10x the participants: the figures and their data stay about the same size (bounded summaries).

    The curves' bound (2 / RESOLUTION points) is reached only past ~100,000 participants at the report's
    resolution, so the test coarsens it to reach the bound at test sizes; the mechanism is the same.
    """
    from epi_spineage.report import plotdata

    monkeypatch.setattr(plotdata, "RESOLUTION", 1 / 25)
    RESOLUTION = plotdata.RESOLUTION
    csv_small, svg_small = _plot_outputs(monkeypatch, 2_000)
    csv_large, svg_large = _plot_outputs(monkeypatch, 20_000)
    assert set(svg_large) >= {"age_scatter", "roc", "km_four_groups"}
    for name, size in svg_large.items():
        assert size < 1.6 * svg_small[name], (name, svg_small[name], size)
    # each curve is at most ~2/RESOLUTION points, whatever n (a CSV row is well under 120 bytes)
    for name, size in csv_large.items():
        assert size < 12 * (2 / RESOLUTION + 2) * 120, (name, size)
    assert csv_large["scatter_derivation"] < 3 * csv_small["scatter_derivation"]


def _prepared_the_old_way(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """What prepare made before issue 18's memory work: derive_variables (a copy) of the kept rows."""
    from epi_spineage.tables import derive_variables

    out = derive_variables(df[keep], by=None).reset_index(drop=True)
    sex = out["sex"].astype("string").str.upper()
    out["female"] = np.where(sex.isna(), np.nan, (sex == "F").astype(float))
    out["male"] = 1.0 - out["female"]
    return out


@pytest.mark.parametrize("case", ["all rows", "no spine age", "split", "split and no spine age", "index"])
def test_prepared_frame_shares_the_given_columns_and_equals_the_copying_path(demo_inputs, case):
    """prepare hands derive_variables only the columns it reads and shares the given frame's columns when every
    row is analysed: the frame is the same as derive_variables on the whole kept rows, and the given one is
    unchanged."""
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.prepare import prepare_cohorts

    der = demo_inputs[0].copy()
    keep = np.ones(len(der), bool)
    if "no spine age" in case:
        der.loc[der.index[::7], "spine_age_years"] = np.nan
        keep &= der["spine_age_years"].notna().to_numpy()
    split = ""
    if "split" in case:
        split = "test"
        keep &= (der["split"] == "test").to_numpy()
    if case == "index":
        der.index = pd.RangeIndex(10, 10 + len(der))
    given = der.copy()
    cohorts, flow, _ = prepare_cohorts(der, None, StudyConfig(derivation_split=split))
    got = cohorts["derivation"].frame
    pd.testing.assert_frame_equal(got, _prepared_the_old_way(given, keep), check_exact=True)
    pd.testing.assert_frame_equal(der, given, check_exact=True)  # the caller's frame is not written to
    assert flow["n"].iloc[-1] == keep.sum()
    if keep.all():
        assert np.shares_memory(got["age_years"].to_numpy(), der["age_years"].to_numpy())


@pytest.mark.parametrize(
    "values", [["derivation", "external", None, "derivation", "nan"], [1, 2, np.nan, 1], ["a", "b"]]
)
def test_role_rows_by_category_codes_equal_the_text_comparison(values):
    """split_roles finds a role's rows of a categorical cohort column by its codes (no text per row): the same
    rows as comparing the column's text, missing values ("nan") included."""
    from epi_spineage.report.inputs import _rows_named

    for dtype in ("category", None):
        col = pd.Series(values, dtype=dtype)
        for name in ("derivation", "external", "nan", "1.0", "2", "a", "absent"):
            np.testing.assert_array_equal(_rows_named(col, name), (col.astype(str) == name).to_numpy())


def test_stored_curves_are_bounded_whatever_n(monkeypatch):
    """Every curve a section stores (Kaplan-Meier, ROC, and the competing-risk Aalen-Johansen and 1 - KM curves)
    is already the bounded plot data, so drawing the figure does not grow with n (at 5,000,000 the full
    competing-risk curves made its section 3.5x slower to write than at a million)."""
    from epi_spineage.report import analyses, plotdata, steps
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.synth.cohort import simulate_study

    monkeypatch.setattr(plotdata, "RESOLUTION", 1 / 25)
    monkeypatch.setattr(steps, "STEPS", [s for s in steps.STEPS if s[1] in ("groups", "discrimination", "competing")])
    study = simulate_study(seed=5, n_derivation=20_000, n_external=50)
    results = analyses.run_study(study.derivation, None, StudyConfig(derivation_split="", fine_gray=False))
    assert len(results.competing.cuminc)
    for name, frame in results.curves.items():
        keys = [k for k in ("cohort", "outcome", "method", "group", "marker", "predictor") if k in frame.columns]
        largest = frame.groupby(keys, dropna=False).size().max() if keys else len(frame)
        assert largest <= 2 / plotdata.RESOLUTION + 2, (name, largest)
