"""One progress display for every tool, so that the scorer, training and the report look alike.

On a terminal (stderr is a TTY) a ``Progress`` draws a tqdm bar on stderr: count of total, rate and
ETA, plus whatever the phase adds (loss and MAE for training, scored/errors for the scorer). Under
``--quiet`` (every tool has it: ``cli.common.make_parser``), or when stderr is not a terminal (a log
file, a pipe, a batch job, the test suite), nothing is drawn; when the phase ends, one summary line is
logged at INFO (shown with ``-v``). A phase made of named steps (the report) records each step's time,
prints one line per step on a terminal, and lists the times in its summary line.

Log lines written while a bar is on screen go above it (``tqdm.contrib.logging``), so ``-v`` on a
terminal stays readable. See docs/conventions.md#progress.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO, TypeVar

__all__ = ["Progress", "format_seconds", "is_quiet", "set_quiet", "should_show"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn every progress display of this process off (``--quiet``) or back to automatic."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether ``--quiet`` (``set_quiet(True)``) is in force."""
    return _quiet


def should_show(stream: TextIO | None = None, force: bool | None = None) -> bool:
    """Draw a bar? ``force`` (e.g. ``score --progress/--no-progress``) decides when given; otherwise
    yes on a terminal unless ``--quiet``."""
    if force is not None:
        return bool(force)
    if _quiet:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``: a duration as a reader wants it."""
    if seconds != seconds or seconds < 0:  # NaN or negative: unknown
        return "?"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min"


class Progress:
    """The progress of one phase (``desc``): a bar on a terminal, one INFO summary line otherwise.

    ``total`` may be unknown (None) and set later (``progress.total = n``); with a total the bar shows
    the ETA. ``show`` forces the bar on or off (None: ``should_show``). Use as a context manager, or
    call ``close()``; ``close`` is idempotent. ``initial``: units done before (a resumed run).
    ``leave=False`` removes the bar at the end (an inner bar,
    e.g. the batches of one training epoch) and logs no summary line.
    """

    def __init__(
        self,
        desc: str,
        *,
        total: int | None = None,
        unit: str = "it",
        show: bool | None = None,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        leave: bool = True,
        initial: int = 0,
    ) -> None:
        self._desc = desc
        self._total = total
        self.unit = unit
        self.n = self.initial = initial  # initial: done before this run (a resumed training)
        self.postfix = ""
        self.leave = leave
        #: seconds per named step (``step`` / ``record``), in the order they ran
        self.steps: dict[str, float] = {}
        self.stream = sys.stderr if stream is None else stream
        self.shown = should_show(self.stream, show)
        self._log = logger or log
        self._t0 = time.perf_counter()
        self._closed = False
        self._redirect: contextlib.ExitStack | None = None
        self._bar: Any = None
        if self.shown:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                file=self.stream,
                leave=leave,
                dynamic_ncols=True,
                smoothing=0.1,
                mininterval=0.2,
            )
            if leave:  # the outer bar of a tool: its log lines go above the bar, not through it
                from tqdm.contrib.logging import logging_redirect_tqdm

                self._redirect = contextlib.ExitStack()
                self._redirect.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))

    # ------------------------------------------------------------ what the bar shows
    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    @property
    def desc(self) -> str:
        return self._desc

    @desc.setter
    def desc(self, value: str) -> None:
        self._desc = value
        if self._bar is not None:
            self._bar.set_description_str(value, refresh=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Text after the rate (e.g. ``loss 3.21, val MAE 4.10``); also ends the summary line."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=refresh)

    def write(self, line: str) -> None:
        """A line above the bar on a terminal; logged at DEBUG otherwise (the summary line says it all)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self._log.debug("%s: %s", self._desc, line)

    def iterate(self, iterable: Iterable[_T]) -> Iterator[_T]:
        """Yield from ``iterable``, counting one per item."""
        for item in iterable:
            yield item
            self.update(1)

    # ------------------------------------------------------------ named steps
    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the step ``name``: shown after the bar's description while it runs, then one line
        (``name  1.2 s``) on a terminal; the time goes into ``steps`` and the summary line."""
        t0 = time.perf_counter()
        if self._bar is not None:
            self._bar.set_description_str(f"{self._desc}: {name}", refresh=True)
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - t0)

    def record(self, name: str, seconds: float) -> None:
        """A step timed elsewhere (e.g. by the report's own step runner): counted, shown, kept."""
        self.steps[name] = seconds
        self.write(f"  {name:<34} {format_seconds(seconds):>10}")
        self.update(1)

    # ------------------------------------------------------------ timing and the end
    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def rate(self) -> float:
        """Units per second in this run so far (0 before anything happened)."""
        el = self.elapsed
        return (self.n - self.initial) / el if el > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the mean rate so far; None without a total or a rate."""
        if self._total is None or self.n <= self.initial:
            return None
        return max(0.0, (self._total - self.n) / self.rate) if self.rate > 0 else None

    def summary(self) -> str:
        """The phase in one line: ``scoring: 120/120 img in 4.0 s (30.0 img/s); scored=118 errors=2``."""
        count = f"{self.n}/{self._total}" if self._total is not None else f"{self.n}"
        line = f"{self._desc}: {count} {self.unit} in {format_seconds(self.elapsed)}"
        if self.n > self.initial and self.elapsed > 0:
            line += f" ({self.rate:.3g} {self.unit}/s)"
        if self.steps:
            # " | " between steps: a step's name may hold a comma ("Cox models, fracture")
            line += "; " + " | ".join(f"{k} {format_seconds(v)}" for k, v in self.steps.items())
        if self.postfix:
            line += f"; {self.postfix}"
        return line

    def close(self, summary: str | None = None) -> None:
        """End the phase: close the bar, or log ``summary`` (default ``self.summary()``) at INFO."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            if self._redirect is not None:
                self._redirect.close()
        elif self.leave:
            self._log.info("%s", summary or self.summary())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
