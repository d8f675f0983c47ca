"""The analysis steps in two processes (``config.jobs`` > 1, ``report.parallel``) give the sequential results.

The parallel path is forced on a small cohort (``PARALLEL_MIN_ROWS = 0``). Faults are injected into the
worker process by wrapping a step so that it misbehaves only there; a ``multiprocessing`` event makes the
parent's first step wait until the worker has started its own, so which process runs what is certain.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pytest

from epi_spineage.errors import AnalysisNotPossible, UserError
from epi_spineage.report import parallel, steps
from epi_spineage.report.analyses import merge, run_step, run_study
from epi_spineage.report.config import StudyConfig, config_from_dict, parse_jobs, resolve_jobs

pytestmark = pytest.mark.skipif(not parallel.fork_available(), reason="needs fork (Linux)")

GROUPS = "four groups and Kaplan-Meier"
SMALL = "table 1"  # a step any process may take; the faults go here


@pytest.fixture(scope="module")
def small_study():
    from epi_spineage.report import demo_study

    der, ext, _ = demo_study(5, 700, 400)
    return der, ext


def _config(**kw) -> StudyConfig:
    return StudyConfig(mi_imputations=2, mi_iterations=1, **kw)


@pytest.fixture(scope="module")
def reference(small_study):
    """The sequential run (jobs = 1) the parallel ones must equal."""
    return run_study(*small_study, _config(jobs=1))


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)
    yield
    assert _children() == [], "a worker process outlived run_study"


def _children() -> list[int]:
    """This process's live child processes (the kernel's list; multiprocessing's as a fallback)."""
    multiprocessing.active_children()  # reaps finished ones
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids += [int(p) for p in task.read_text().split()]
    return pids


def _assert_same(a, b) -> None:
    assert set(a.tables) == set(b.tables) and len(a.tables) >= 20
    for name, frame in a.tables.items():
        pd.testing.assert_frame_equal(frame, b.tables[name], check_exact=True, obj=name)
    assert set(a.curves) == set(b.curves)
    for name, frame in a.curves.items():
        pd.testing.assert_frame_equal(frame, b.curves[name], check_exact=True, obj=name)
    assert pd.Series(a.numbers).to_json() == pd.Series(b.numbers).to_json()
    assert a.warnings == b.warnings
    assert a.skipped == b.skipped
    assert list(a.timings_s) == list(b.timings_s)
    for c in a.cohorts:  # the frames the document reads: the group columns the KM step added included
        pd.testing.assert_frame_equal(a.cohorts[c].frame, b.cohorts[c].frame, check_exact=True)


def _spy_pids(monkeypatch) -> dict[str, int]:
    """Which process ran each step (filled when run_study returns)."""
    pids: dict[str, int] = {}
    real = parallel.run_parallel

    def spy(results, names, run, on_done):
        def run_here(name, ready):
            outcome = run(name, ready)
            outcome.timings_s[f"pid {name}"] = os.getpid()  # travels back with the outcome
            return outcome

        out = real(results, names, run_here, on_done)
        for name, o in out.items():
            pids[name] = int(o.timings_s.pop(f"pid {name}"))
        return out

    monkeypatch.setattr(parallel, "run_parallel", spy)
    return pids


def test_two_processes_give_the_sequential_results(small_study, reference, forced, monkeypatch):
    der, ext = small_study
    one = reference
    pids = _spy_pids(monkeypatch)
    two = run_study(der, ext, _config(jobs=2))
    _assert_same(one, two)
    assert len(set(pids.values())) == 2, "both processes ran steps"
    me = os.getpid()
    assert all(pids[w] == me for w in parallel.FRAME_WRITERS)  # the frames' new columns: written here
    assert pids["multiple imputation"] == me
    # what the runner learned of the steps is still true of them (the names exist)
    names = {n for n, _, _ in steps.STEPS}
    assert set(parallel.FRAME_WRITERS) | {r for rs in parallel.FRAME_WRITERS.values() for r in rs} <= names
    assert set(parallel.RESULT_READERS) | {r for rs in parallel.RESULT_READERS.values() for r in rs} <= names
    assert set(parallel.COST_1M) == names


def test_the_worker_runs_a_reader_of_the_group_columns_with_the_columns_sent(small_study, forced, monkeypatch):
    """After the group columns' writer, the worker takes one of their readers (nothing else is left for
    it), gets the columns with it, and the results are those of one process."""
    der, ext = small_study
    few = ("agreement", GROUPS, "incidence rates", "Cox models, mortality")
    monkeypatch.setattr(steps, "STEPS", [s for s in steps.STEPS if s[0] in few])
    cfg = _config(jobs=1, multiple_imputation=False)
    one = run_study(der, ext, cfg)
    pids = _spy_pids(monkeypatch)
    two = run_study(der, ext, dataclasses.replace(cfg, jobs=2))
    me = os.getpid()
    assert pids["agreement"] == pids[GROUPS] == me
    assert {pids["incidence rates"], pids["Cox models, mortality"]} - {me}, "the worker ran a reader"
    assert one.warnings == two.warnings and one.skipped == two.skipped
    for name, frame in one.tables.items():
        pd.testing.assert_frame_equal(frame, two.tables[name], check_exact=True, obj=name)
    for c in one.cohorts:
        pd.testing.assert_frame_equal(one.cohorts[c].frame, two.cohorts[c].frame, check_exact=True)


def test_jobs_one_and_small_cohorts_stay_in_one_process(small_study, monkeypatch):
    der, ext = small_study
    called = []
    monkeypatch.setattr(parallel, "run_parallel", lambda *a: called.append(a))
    monkeypatch.setattr(steps, "STEPS", [])  # only the choice is tested here
    run_study(der, ext, _config(jobs=2))  # below PARALLEL_MIN_ROWS
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)
    run_study(der, ext, _config(jobs=1))
    assert called == []


def test_no_step_shares_state_but_the_declared_columns_and_results(small_study, reference):
    """The parallel runner's premise: a step changes a cohort frame only if FRAME_WRITERS says so, and
    the steps give the same results in any order that keeps the declared needs (here: reversed)."""
    from epi_spineage.report.prepare import prepare_cohorts
    from epi_spineage.report.results import StudyResults

    der, ext = small_study
    cfg = _config(jobs=1).validate()
    cohorts, _, _ = prepare_cohorts(der, ext, cfg)
    results = StudyResults(config=cfg, cohorts=cohorts)
    needs = parallel.step_needs(results)
    funcs = {n: f for n, _, f in steps.STEPS}
    attrs = {n: a for n, a, _ in steps.STEPS}
    outcomes = {}

    def ensure(name):
        if name in outcomes:
            return
        for dep in needs.get(name, ()):
            ensure(dep)
        before = {role: pd.util.hash_pandas_object(c.frame).sum() for role, c in cohorts.items()}
        cols = {role: list(c.frame.columns) for role, c in cohorts.items()}
        view = dataclasses.replace(results, **{attrs[d]: outcomes[d].value for d in needs.get(name, ())})
        outcomes[name] = run_step(view, name, funcs[name])
        if name in parallel.FRAME_WRITERS:
            return
        for role, c in cohorts.items():
            assert list(c.frame.columns) == cols[role], f"{name} changed the {role} frame's columns"
            assert pd.util.hash_pandas_object(c.frame).sum() == before[role], f"{name} changed the {role} frame"

    for name, _, _ in reversed(steps.STEPS):
        ensure(name)
    for name, attr, _ in steps.STEPS:
        merge(results, attr, outcomes[name])
    assert results.warnings == [w for w in reference.warnings if not w.startswith("input: ")]
    assert results.skipped == reference.skipped
    for name, frame in reference.tables.items():
        if name not in ("data_quality", "cohort_flow"):
            pd.testing.assert_frame_equal(frame, results.tables[name], check_exact=True, obj=name)


# ---------------------------------------------------------------------------------- faults in the worker
def _fault_in_child(monkeypatch, fault) -> None:
    """``fault()`` replaces the SMALL step in the worker process; the parent's first step (the group
    columns' writer) waits until the worker has begun it, so the worker surely runs it."""
    parent = os.getpid()
    started = multiprocessing.get_context("fork").Event()
    table = dict((n, (a, f)) for n, a, f in steps.STEPS)

    def small(results):
        if os.getpid() != parent:
            started.set()
            return fault(results)
        return table[SMALL][1](results)

    def writer(results):
        started.wait(timeout=60)
        return table[GROUPS][1](results)

    patched = [(n, a, small if n == SMALL else writer if n == GROUPS else f) for n, a, f in steps.STEPS]
    monkeypatch.setattr(steps, "STEPS", patched)


def test_a_programming_error_in_the_worker_is_raised_with_its_traceback(small_study, forced, monkeypatch):
    der, ext = small_study

    def boom(results):
        raise ZeroDivisionError("planted in the worker")

    _fault_in_child(monkeypatch, boom)
    with pytest.raises(ZeroDivisionError, match="planted in the worker") as info:
        run_study(der, ext, _config(jobs=2))
    cause = info.value.__cause__
    assert isinstance(cause, parallel.RemoteTraceback)
    assert "boom" in cause.text and "Traceback" in cause.text


def test_a_data_problem_in_the_worker_is_skipped_as_in_one_process(small_study, forced, monkeypatch):
    der, ext = small_study
    few = ("table 1", "agreement", "discrimination", GROUPS, "Cox models, mortality", "FRAX reclassification")
    monkeypatch.setattr(steps, "STEPS", [s for s in steps.STEPS if s[0] in few])

    def no_data(results):
        raise AnalysisNotPossible("no usable rows for the planted test\nsecond line")

    _fault_in_child(monkeypatch, no_data)
    two = run_study(der, ext, _config(jobs=2))
    monkeypatch.setattr(
        steps, "STEPS", [(n, a, (lambda r: no_data(r)) if n == SMALL else f) for n, a, f in steps.STEPS]
    )
    one = run_study(der, ext, _config(jobs=1))
    assert two.skipped == one.skipped == {SMALL: "no usable rows for the planted test"}
    assert two.warnings == one.warnings and f"{SMALL} skipped: no usable rows for the planted test" in two.warnings
    assert two.table1 is None


def test_a_killed_worker_does_not_hang_and_its_steps_run_here(small_study, reference, forced, monkeypatch, caplog):
    der, ext = small_study
    one = reference

    def killed(results):
        os._exit(9)  # as the out-of-memory killer would: no message, no cleanup

    _fault_in_child(monkeypatch, killed)
    with caplog.at_level(logging.WARNING, logger="epi_spineage.report.parallel"):
        two = run_study(der, ext, _config(jobs=2))
    _assert_same(one, two)
    assert any("ended before finishing" in r.getMessage() and SMALL in r.getMessage() for r in caplog.records)


def test_interrupting_the_parent_ends_the_worker(small_study, forced, monkeypatch, caplog):
    der, ext = small_study

    def stuck(results):
        multiprocessing.get_context("fork").Event().wait(120)  # a long step, ended by the parent

    _fault_in_child(monkeypatch, stuck)
    table = {n: f for n, _, f in steps.STEPS}

    def interrupted(results):
        table[GROUPS](results)
        raise KeyboardInterrupt

    monkeypatch.setattr(steps, "STEPS", [(n, a, interrupted if n == GROUPS else f) for n, a, f in steps.STEPS])
    with caplog.at_level(logging.WARNING, logger="epi_spineage.report.parallel"), pytest.raises(KeyboardInterrupt):
        run_study(der, ext, _config(jobs=2))
    assert not any("ended before" in r.getMessage() for r in caplog.records)  # no news: the parent ended it
    # the `forced` fixture checks that no child process is left


# ---------------------------------------------------------------------------------- the setting
def test_jobs_setting_is_validated():
    assert StudyConfig().validate().jobs == "auto"
    assert StudyConfig(jobs="AUTO").validate().jobs == "auto"
    assert StudyConfig(jobs="3").validate().jobs == 3
    for bad in (0, -1, 1.5, True, "two", ""):
        with pytest.raises(UserError, match="jobs must be a whole number >= 1"):
            StudyConfig(jobs=bad).validate()
    assert config_from_dict({"report": {"jobs": 2}}).jobs == 2
    with pytest.raises(UserError, match=r"\[report\] jobs"):
        config_from_dict({"report": {"jobs": 0}})
    assert parse_jobs("auto") == "auto" and resolve_jobs(1) == 1 and resolve_jobs(4) == 4
    assert resolve_jobs("auto") == max(1, min(2, len(os.sched_getaffinity(0))))


def test_cli_refuses_bad_jobs_in_one_line():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "epi_spineage.report", "--jobs", "0", "--out", "/nonexistent/x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--jobs must be a whole number >= 1" in r.stderr


def test_queue_keeps_needs_and_gives_a_dead_workers_steps_back():
    names = [n for n, _, _ in steps.STEPS]
    from epi_spineage.report.results import StudyResults

    needs = parallel.step_needs(StudyResults(config=_config(jobs=2).validate()))
    q = parallel._Queue(names, dict(parallel.COST_1M), needs)
    child = [t[0] for t in (q.take_for_child() for _ in range(3)) if t is not None]
    # the worker takes the largest independent steps; with imputation on, the fracture Cox models first
    assert child[0] == "Cox models, fracture" and None not in child
    assert not set(child) & q.parent_only and len(child) == 3
    assert q.next_for_parent() == "agreement"  # the first frame writer, before the group columns' writer
    q.done("agreement", None)
    assert q.next_for_parent() == GROUPS
    q.done(GROUPS, None)
    assert q.next_for_parent() == "Cox models, mortality"  # imputation waits for it
    q.done("Cox models, mortality", None)
    lost = q.gone()  # the worker died holding its three steps
    assert lost == sorted(child) and set(child) <= q.open and q.child_gone
    taken = []
    while (name := q.next_for_parent()) is not None:
        assert all(d in q.outcomes for d in q.needs[name])
        taken.append(name)
        q.done(name, None)
    assert taken.index("multiple imputation") > taken.index("Cox models, fracture")
    assert set(taken) | {"agreement", GROUPS, "Cox models, mortality"} == set(names)
