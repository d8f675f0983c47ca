"""The report's analysis steps in two processes: this one and one forked worker (``jobs`` > 1).

After ``prepare_cohorts`` the runner forks one child (Linux ``fork``: the child shares the prepared
cohorts copy-on-write, nothing is pickled on the way in). Both processes take steps from one queue
held by this process, largest expected cost first, so that the two finish at about the same time.
Each step runs on a view of ``StudyResults`` with its own empty ``warnings``/``skipped``/``timings_s``
(``analyses.run_step``); the child sends back its steps' outcomes (return value, warnings, skipped
reason, time) and the parent merges every outcome in the study's order (``steps.STEPS``), so the
results equal a sequential run's: the same sections, the same warnings in the same order.

Cross-step state. "four groups and Kaplan-Meier" adds the ``group`` and ``accelerated`` columns to the
prepared cohort frames, which mortality, incidence rates and competing risk read (and the document
after them); "agreement" adds the uncorrected/corrected PAD columns where preparing the cohort did not
already make them. The writers run in this process, in the study's
order, so the frames end as in a sequential run; a reader runs after its writer, here or in the worker,
which is then sent the writer's new columns (a few MB at a million) with the step (``FRAME_WRITERS``);
the steps that come before a writer in the study's order do not read its columns. Multiple imputation shows the Cox
sections' complete-case rows, so it runs here once those are done, with their results
(``RESULT_READERS``). The tests check that no other step changes a cohort frame and that running the
steps in another order that keeps these needs changes no result.

Failures. A data problem in a step is skipped with its reason exactly as in a sequential run (it is
part of the outcome). Any other exception in the child (a programming error) stops both processes
and is raised here, the same exception with the child's traceback as its cause. A child that dies
without a word (killed, e.g. by the kernel's out-of-memory killer) is logged, and the steps it had not
finished are run here, one after another, so the report still completes. The child is terminated
and reaped on every way out of ``run_parallel`` (an error, Ctrl-C); it also dies with this process
(``PR_SET_PDEATHSIG``), so no worker outlives the report.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from epi_spineage.report import steps
from epi_spineage.report.results import StudyResults

log = logging.getLogger(__name__)

#: a step that adds columns to the prepared cohort frames -> the steps that read them. A writer runs in the
#: parent process, so its columns are in the frames the document reads afterwards (agreement may add
#: the PAD columns, which the fracture Cox step would otherwise add to its own copy); a reader runs after
#: it, in the parent, or in the worker once the parent has sent it the writer's new columns.
FRAME_WRITERS: dict[str, tuple[str, ...]] = {
    "four groups and Kaplan-Meier": ("Cox models, mortality", "incidence rates", "competing risk"),
    "agreement": (),
}

#: a step -> the steps whose section results it reads (multiple imputation shows the Cox sections'
#: complete-case rows beside its own): it runs in the parent once those are done, with their results.
RESULT_READERS: dict[str, tuple[str, ...]] = {
    "multiple imputation": ("Cox models, fracture", "Cox models, mortality"),
}

#: CPU seconds of each step at 1,000,000 participants (benchmarks/report.py), used only to order the
#: queue (largest first); a step not listed counts as small. Multiple imputation, when on, is the largest.
COST_1M: dict[str, float] = {
    "multiple imputation": 600.0,
    "competing risk": 20.8,
    "Cox models, fracture": 19.3,
    "subgroups by sex": 9.1,
    "Cox models, mortality": 5.4,
    "four groups and Kaplan-Meier": 2.5,
    "incidence rates": 2.5,
    "age-gap regression": 2.1,
    "FRAX reclassification": 1.9,
    "discrimination": 1.8,
    "table 1": 0.5,
    "agreement": 0.5,
}

#: the parallel path pays (fork, sending results back) only above this many analysed participants;
#: below it the steps run one after another. At 20,000 the analyses take a few seconds of CPU.
PARALLEL_MIN_ROWS = 20_000

_PARENT, _CHILD = "parent", "child"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker process (the ``__cause__`` of the re-raise)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(in the analysis worker process)\n{self.text}"


class WorkerFailed(RuntimeError):
    """A step failed in the worker process and its exception could not be sent back as itself."""


def fork_available() -> bool:
    """Whether this platform can fork a worker that shares this process's memory (Linux, macOS)."""
    return "fork" in multiprocessing.get_all_start_methods()


class _Queue:
    """The steps not yet taken, who took which, and what came back; shared by the main thread (the
    parent's own steps) and the thread that serves the child.

    A step is taken when the steps it needs are done; the parent prefers the steps only it may run, both
    take the largest expected cost first (a step's own cost plus that of the steps waiting for it)."""

    def __init__(self, names: list[str], costs: dict[str, float], needs: dict[str, tuple[str, ...]]) -> None:
        self.needs = {n: tuple(d for d in needs.get(n, ()) if d in names) for n in names}
        waiting = {n: sum(costs.get(m, 0.0) for m in names if n in self.needs[m]) for n in names}
        self.rank = {n: (-(costs.get(n, 0.0) + waiting[n]), i) for i, n in enumerate(names)}
        # the frame writers and the steps that need another's results: this process's
        readers = {r for rs in FRAME_WRITERS.values() for r in rs}
        self.parent_only = {w for w in FRAME_WRITERS if w in names}
        self.parent_only |= {n for n in names if any(d not in FRAME_WRITERS for d in self.needs[n])}
        self.frame_needs = {
            n: tuple(d for d in self.needs[n] if d in FRAME_WRITERS) if n in readers else () for n in names
        }
        #: a writer's new columns, pickled ({role: {column: Series}}), and those the worker has been sent
        self.columns: dict[str, bytes] = {}
        self.sent: set[str] = set()
        self.open = set(names)
        self.child_has: set[str] = set()
        self.outcomes: dict[str, Any] = {}
        self.error: tuple[str, BaseException | None, str] | None = None
        self.child_gone = False
        #: the parent is ending the child (an error, Ctrl-C): its end is no news to log
        self.stopping = False
        self.cond = threading.Condition()

    def _pick(self, who: str) -> str | None:
        ready = [n for n in self.open if all(d in self.outcomes for d in self.needs[n])]
        if who == _CHILD:
            ready = [n for n in ready if n not in self.parent_only]
        if not ready:
            return None
        name = min(ready, key=lambda n: (who == _PARENT and n not in self.parent_only, self.rank[n]))
        self.open.discard(name)
        if who == _CHILD:
            self.child_has.add(name)
        return name

    def take_for_child(self) -> tuple[str, list[bytes]] | None:
        """The child's next step with the frame columns it needs and has not had yet; waits while the
        steps left for it wait for a writer. None: nothing left it may take, or the run is ending."""
        with self.cond:
            while self.error is None and not self.stopping:
                name = self._pick(_CHILD)
                if name is not None:
                    ship = [w for w in self.frame_needs[name] if w not in self.sent and w in self.columns]
                    self.sent.update(ship)
                    return name, [self.columns[w] for w in ship]
                if not any(n not in self.parent_only for n in self.open):
                    return None
                self.cond.wait(0.5)
            return None

    def wrote(self, name: str, columns: bytes) -> None:
        """The writer ``name`` added these columns (before ``done``, so a reader never misses them)."""
        with self.cond:
            self.columns[name] = columns

    def next_for_parent(self) -> str | None:
        """The parent's next step; waits while the child still holds steps (it may die and leave them) or
        steps wait for the child's results. None: every step is done or taken by a child that ended, or a
        step failed."""
        with self.cond:
            while self.error is None:
                name = self._pick(_PARENT)
                if name is not None or (self.child_gone and not self.open):
                    return name
                self.cond.wait(0.5)  # a timeout keeps Ctrl-C responsive
            return None

    def done(self, name: str, outcome: Any) -> None:
        with self.cond:
            self.outcomes[name] = outcome
            self.child_has.discard(name)
            self.cond.notify_all()

    def fail(self, name: str, exc: BaseException | None, tb: str) -> None:
        with self.cond:
            if self.error is None:
                self.error = (name, exc, tb)
            self.cond.notify_all()

    def give_back(self, name: str) -> None:
        """A step the child could not send back: the parent runs it."""
        with self.cond:
            self.child_has.discard(name)
            self.open.add(name)
            self.parent_only.add(name)
            self.cond.notify_all()

    def gone(self) -> list[str]:
        """The child ended; its unfinished steps go back to the parent (returned, for the log)."""
        with self.cond:
            self.child_gone = True
            lost = sorted(self.child_has)
            for name in lost:
                self.open.add(name)
                self.parent_only.add(name)
            self.child_has.clear()
            self.cond.notify_all()
            return lost


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this worker when the process that forked it ends (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: terminate() in the parent's finally is what remains
        pass
    if os.getppid() != parent_pid:  # the parent ended before the call above took effect
        os._exit(1)


def _child_main(conn: Any, parent_pid: int, results: StudyResults, run: Callable[[str], Any]) -> None:
    """The worker: ask for a step, run it, send its outcome back, until the queue says None."""
    with contextlib.suppress(ValueError):  # (not the main thread: then the parent's terminate() still ends it)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it ends this process)
    _die_with_parent(parent_pid)
    msg: tuple[Any, ...] = ("ready",)
    while True:
        conn.send(msg)
        task = conn.recv()
        if task is None:
            break
        name, columns = task
        try:
            for blob in columns:  # a frame writer's new columns, which this step reads
                for role, cols in pickle.loads(blob).items():
                    frame = results.cohorts[role].frame
                    for col, values in cols.items():
                        frame[col] = values
            outcome = run(name)
        except BaseException as exc:  # a programming error: the parent raises it
            tb = traceback.format_exc()
            try:
                pickle.loads(pickle.dumps(exc))
                sent: BaseException | None = exc
            except Exception:
                sent = None
            conn.send(("error", name, sent, tb))
            break
        try:
            payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a result that cannot be pickled: the parent runs that step itself
            msg = ("give back", name, f"{type(exc).__name__}: {exc}")
            continue
        msg = ("done", name, payload)
    conn.close()


def _serve(conn: Any, queue: _Queue, on_done: Callable[[str, Any], None]) -> None:
    """The parent's thread for the child: hands out steps, stores outcomes, notices the child's end."""
    try:
        while True:
            msg = conn.recv()
            kind = msg[0]
            if kind == "error":
                _, name, exc, tb = msg
                queue.fail(name, exc, tb)
                return
            if kind == "done":
                _, name, payload = msg
                outcome = pickle.loads(payload)
                queue.done(name, outcome)
                on_done(name, outcome)
            elif kind == "give back":
                _, name, why = msg
                log.warning("%s: its result could not be sent from the worker process (%s); rerun here", name, why)
                queue.give_back(name)
            conn.send(queue.take_for_child())
    except (EOFError, OSError):
        pass  # the child ended (normally after None, or killed): gone() below tells the parent
    finally:
        lost = queue.gone()
        if lost and queue.error is None and not queue.stopping:
            log.warning(
                "the analysis worker process ended before finishing %s; running them in this process",
                ", ".join(lost),
            )


@contextlib.contextmanager
def _worker(ctx: Any, target: Callable[..., None], args: tuple[Any, ...]) -> Iterator[Any]:
    """Start the worker; on the way out (normal, error, Ctrl-C) make sure it has ended and is reaped."""
    proc = ctx.Process(target=target, args=args, name="epi_spineage analyses", daemon=True)
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork in a process with threads (a progress bar's monitor, a sampler):
        # the worker takes no lock those threads hold (it computes, then writes to its own pipe)
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        proc.start()
    try:
        yield proc
    finally:
        proc.join(timeout=5 if proc.exitcode is None else None)
        if proc.exitcode is None:
            proc.terminate()
            proc.join(timeout=5)
        if proc.exitcode is None:
            proc.kill()
            proc.join()


def step_needs(results: StudyResults) -> dict[str, tuple[str, ...]]:
    """Step -> the steps that must be done before it (their frame columns or their results)."""
    needs: dict[str, tuple[str, ...]] = {}
    writers = [n for n, _, _ in steps.STEPS if n in FRAME_WRITERS]
    for before, after in zip(writers, writers[1:]):  # the frames' new columns in the sequential order
        needs[after] = (before,)
    for writer, readers in FRAME_WRITERS.items():
        for r in readers:
            needs[r] = (*needs.get(r, ()), writer)
    for reader, deps in RESULT_READERS.items():
        if reader == "multiple imputation" and not results.config.multiple_imputation:
            continue  # switched off, the step reads nothing
        needs[reader] = (*needs.get(reader, ()), *deps)
    return needs


def run_parallel(
    results: StudyResults,
    names: list[str],
    run: Callable[[str, dict[str, Any]], Any],
    on_done: Callable[[str, Any], None],
) -> dict[str, Any]:
    """Run the steps ``names`` in this process and one forked worker; returns every step's outcome by name.

    ``run(name, ready)`` gives a step's outcome, ``ready`` holding the outcomes of the steps it needs
    (``step_needs``: their results are on hand). ``on_done(name, outcome)`` is called as each step
    finishes, from either thread of this process (the caller serialises what they share). Raises what a
    step raised (a programming error); ``results`` itself is not changed here."""
    ctx = multiprocessing.get_context("fork")
    costs = {n: COST_1M.get(n, 1.0) for n in names}
    if not results.config.multiple_imputation:
        costs["multiple imputation"] = 0.0
    queue = _Queue(names, costs, step_needs(results))
    mine, theirs = ctx.Pipe(duplex=True)
    server = threading.Thread(target=_serve, args=(mine, queue, on_done), daemon=True, name="analyses-worker")
    with _worker(ctx, _child_main, (theirs, os.getpid(), results, lambda name: run(name, {}))) as proc:
        theirs.close()  # the child holds the other end: its exit reads as EOF in _serve
        server.start()
        try:
            while (name := queue.next_for_parent()) is not None:
                with queue.cond:
                    ready = {d: queue.outcomes[d] for d in queue.needs[name]}
                shared = name in FRAME_WRITERS and any(r in names for r in FRAME_WRITERS[name])
                before = {role: set(c.frame.columns) for role, c in results.cohorts.items()} if shared else {}
                outcome = run(name, ready)
                if shared:
                    added = {
                        role: {col: c.frame[col] for col in c.frame.columns if col not in before[role]}
                        for role, c in results.cohorts.items()
                    }
                    queue.wrote(name, pickle.dumps(added, protocol=pickle.HIGHEST_PROTOCOL))
                queue.done(name, outcome)
                on_done(name, outcome)
        except BaseException:
            queue.stopping = True
            proc.terminate()  # a failure here (or Ctrl-C): stop the child's work now; _worker reaps it
            raise
        if queue.error is not None:
            queue.stopping = True
            proc.terminate()
    # the child is reaped, so _serve has read EOF and ends; only then is its connection closed
    server.join(timeout=10)
    if not server.is_alive():
        mine.close()
    if queue.error is not None:
        name, exc, tb = queue.error
        if exc is None:
            raise WorkerFailed(f"{name} failed in the analysis worker process:\n{tb}")
        raise exc from RemoteTraceback(tb)
    missing = [n for n in names if n not in queue.outcomes]
    if missing:  # cannot happen: every step is run by one process or the other
        raise RuntimeError(f"analysis steps without a result: {', '.join(missing)}")
    return queue.outcomes
