"""Odd data never crash the report: empty groups, one sex, all censored, a handful of events.

A step that cannot run on the data is skipped with a reason in the data-quality section
(``AnalysisNotPossible``); any other exception is a programming error and fails these tests.
"""

from __future__ import annotations

import pytest

from epi_spineage.report.analyses import run_study
from epi_spineage.report.config import StudyConfig


@pytest.fixture(scope="module")
def small_study():
    from epi_spineage.report import demo_study

    der, ext, _ = demo_study(3, 600, 300)
    return der, ext


def test_empty_four_group_does_not_crash(small_study):
    # issue 11 item 9: a cut of 60 years leaves both "accelerated" groups empty; the mortality step
    # used to raise AttributeError (.str accessor) inside group_hazard_ratios
    der, ext = small_study
    res = run_study(der, ext, StudyConfig(fixed_cut_years=60.0))
    q = res.data_quality
    assert (q["item"].str.contains("accelerated") | q["detail"].str.contains("accelerated")).any()


# ------------------------------------------------------------------------------- random odd cohorts
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_DROPPABLE = [
    "prevalent_vf",
    "osteoporosis",
    "tscore_femoral_neck",
    "frax_mof_pct",
    "fracture_hip",
    "death",
    "height_cm",
    "albumin_g_l",
    "prosthesis",
    "split",
]
_CONSTANT = ["prosthesis", "prevalent_vf", "glucocorticoid", "rheumatoid_arthritis", "prior_fracture", "diabetes"]


@st.composite
def odd_cohorts(draw):
    n_der = draw(st.integers(20, 90))
    n_ext = draw(st.sampled_from([0, 25, 60]))
    return {
        "n": (n_der, n_ext),
        "one_sex": draw(st.sampled_from([None, "F", "M"])),
        "censor": draw(st.sampled_from([None, "fracture_any", "death", "all"])),
        "n_events": draw(st.sampled_from([None, 1, 2, 3])),
        "constant": draw(st.lists(st.sampled_from(_CONSTANT), max_size=3, unique=True)),
        "drop": draw(st.lists(st.sampled_from(_DROPPABLE), max_size=3, unique=True)),
        "cut": draw(st.sampled_from([None, 60.0, -60.0, 0.0])),
        "seed": draw(st.integers(0, 10_000)),
    }


def _mutate(df, spec, n, rng):
    import numpy as np

    if n == 0:
        return None
    df = df.sample(n=min(n, len(df)), random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    if "split" in df.columns:
        df["split"] = "test"
    if spec["one_sex"]:
        df["sex"] = spec["one_sex"]
    outcomes = {
        "fracture_any": ["fracture_any", "fracture_vertebral", "fracture_nonvertebral", "fracture_hip"],
        "death": ["death"],
    }
    targets = [*outcomes["fracture_any"], "death"] if spec["censor"] == "all" else outcomes.get(spec["censor"], [])
    for col in targets:
        if col in df.columns:
            df[col] = 0
    if spec["n_events"] is not None:
        for col in ("fracture_any", "death"):
            ev = np.zeros(len(df), dtype=int)
            ev[rng.choice(len(df), size=min(spec["n_events"], len(df)), replace=False)] = 1
            df[col] = ev
            if col == "fracture_any":
                for site in ("fracture_vertebral", "fracture_nonvertebral", "fracture_hip"):
                    df[site] = np.minimum(df[site], ev)
    for col in spec["constant"]:
        if col in df.columns:
            df[col] = df[col].iloc[0]
    return df.drop(columns=[c for c in spec["drop"] if c in df.columns])


@pytest.mark.slow
# no shrinking: a failing spec is already small and readable, and each example builds a whole report
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=odd_cohorts())
def test_report_never_raises_on_odd_cohorts(small_study, tmp_path_factory, spec):
    """Analyses and document on random small, odd cohorts: a reason in data quality, never an exception."""
    import numpy as np

    from epi_spineage.errors import UserError
    from epi_spineage.report.document import write_study_report

    der, ext = small_study
    rng = np.random.default_rng(spec["seed"])
    d = _mutate(der, spec, spec["n"][0], rng)
    e = _mutate(ext, spec, spec["n"][1], rng)
    cfg = StudyConfig(fixed_cut_years=spec["cut"])
    try:
        res = run_study(d, e, cfg)
    except UserError as exc:  # refused up front with one line (e.g. fewer than 20 with a spine age)
        assert str(exc)
        return
    out = tmp_path_factory.mktemp("odd")
    index = write_study_report(out, res, config=cfg, synthetic=True, source="hypothesis", svg=False)
    assert index.exists()
    html = index.read_text(encoding="utf-8")
    assert "0.00 (0.00-0.00)" not in html


# ------------------------------------------------------------------------------- what _step catches
def test_step_skips_a_data_problem_but_a_programming_error_fails(small_study, monkeypatch):
    from epi_spineage.errors import AnalysisNotPossible
    from epi_spineage.report import steps

    der, ext = small_study

    def cannot(results):
        raise AnalysisNotPossible("only one group has participants")

    def bug(results):
        return {}["typo"]

    monkeypatch.setattr(steps, "STEPS", [("impossible", "table1", cannot)])
    res = run_study(der, ext, StudyConfig())
    assert res.skipped == {"impossible": "only one group has participants"}
    assert res.data_quality["detail"].str.contains("only one group").any()
    monkeypatch.setattr(steps, "STEPS", [("buggy", "table1", bug)])
    with pytest.raises(KeyError):
        run_study(der, ext, StudyConfig())


def test_report_modules_import_in_one_direction():
    """results <- steps <- analyses <- document: no module imports one to its right."""
    import ast
    from pathlib import Path

    import epi_spineage.report as pkg

    order = ["results", "steps", "analyses", "document"]
    root = Path(pkg.__file__).parent
    for i, name in enumerate(order):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {
            n.module.rsplit(".", 1)[-1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("epi_spineage.report")
        }
        imported |= {
            a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "epi_spineage.report"
            for a in n.names
        }
        assert not imported & set(order[i + 1 :]), (name, imported & set(order[i + 1 :]))
