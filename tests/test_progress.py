"""The one progress display (epi_spineage.progress): a bar with total, rate and ETA on a terminal,
nothing drawn under --quiet or off a terminal (one INFO summary line instead)."""

from __future__ import annotations

import io
import logging
import re

import pytest

from epi_spineage import progress as P
from epi_spineage.progress import Progress, format_seconds


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal, and keeps what was drawn on it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _not_quiet():
    P.set_quiet(False)
    yield
    P.set_quiet(False)


def test_on_a_terminal_the_bar_shows_total_rate_and_eta():
    tty = FakeTTY()
    with Progress("scoring", total=10, unit="img", stream=tty) as bar:
        assert bar.shown
        for _ in range(4):
            bar.update(1)
        bar.set_postfix_str("scored=4 errors=0")
        bar._bar.refresh()  # what tqdm draws at its next interval
        mid = tty.getvalue()
        bar.update(6)
    drawn = tty.getvalue()
    assert "scoring" in mid and "4/10" in mid
    assert re.search(r"\d{2}:\d{2}<\d{2}:\d{2}", mid), mid  # elapsed<ETA
    assert re.search(r"img/s", mid) and "scored=4 errors=0" in mid
    assert "10/10" in drawn


def test_off_a_terminal_nothing_is_drawn_and_one_info_line_is_logged(caplog):
    stream = io.StringIO()  # isatty() is False: a log file or a pipe
    with (
        caplog.at_level(logging.INFO, logger="epi_spineage"),
        Progress("scoring", total=5, unit="img", stream=stream) as bar,
    ):
        for _ in range(5):
            bar.update(1)
        bar.set_postfix_str("scored=5 errors=0")
    assert stream.getvalue() == ""
    records = [r for r in caplog.records if r.name.startswith("epi_spineage")]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert re.match(r"scoring: 5/5 img in [\d.]+ s \([\d.e+]+ img/s\); scored=5 errors=0$", records[0].getMessage())


def test_quiet_silences_even_a_terminal(caplog):
    P.set_quiet(True)
    tty = FakeTTY()
    with caplog.at_level(logging.INFO), Progress("train", total=3, unit="epoch", stream=tty) as bar:
        bar.update(3)
    assert not bar.shown and tty.getvalue() == ""
    assert "train: 3/3 epoch" in caplog.text  # the summary stays, at INFO (shown with -v)
    assert Progress("x", stream=tty, show=True).shown  # an explicit --progress still wins


def test_steps_print_names_with_times_on_a_terminal_and_list_them_in_the_summary(caplog):
    tty = FakeTTY()
    with Progress("report", total=2, unit="step", stream=tty) as bar:
        with bar.step("table 1"):
            pass
        bar.record("Cox models, fracture", 1.25)
    lines = tty.getvalue()
    assert re.search(r"table 1\s+[\d.]+ s", lines) and re.search(r"Cox models, fracture\s+1\.2 s", lines)
    assert list(bar.steps) == ["table 1", "Cox models, fracture"] and bar.n == 2
    with caplog.at_level(logging.INFO), Progress("report", total=1, unit="step", stream=io.StringIO()) as quiet:
        quiet.record("table 1", 0.5)
    assert re.search(r"report: 1/1 step in .*; table 1 0\.50 s", caplog.text)


def test_a_resumed_run_counts_its_rate_from_where_it_started():
    bar = Progress("train", total=10, unit="epoch", show=False, initial=4)
    assert bar.n == 4 and bar.rate == 0 and bar.eta is None
    bar.update(2)
    assert bar.eta is not None and bar.eta > 0
    bar.close()
    bar.close()  # idempotent


def test_format_seconds():
    assert format_seconds(0.421) == "0.42 s" and format_seconds(12.34) == "12.3 s"
    assert format_seconds(245) == "4 min 05 s" and format_seconds(7380) == "2 h 03 min"
    assert format_seconds(float("nan")) == "?"


def test_every_tool_takes_quiet_and_a_later_parse_resets_it():
    from epi_spineage.cli.common import make_parser

    parser = make_parser("t", "test")
    assert parser.parse_args(["--quiet"]).quiet and P.is_quiet()
    assert not parser.parse_args([]).quiet and not P.is_quiet()
    parser.parse_args(["-q"])
    assert P.is_quiet()


def test_the_scorer_bar_is_the_shared_one_with_a_total():
    pytest.importorskip("torch")
    from epi_spineage.score.pipeline import _progress_bar

    bar = _progress_bar(False, total=7)
    assert isinstance(bar, Progress) and bar.total == 7 and bar.unit == "img"
    bar.total = 9  # the Ray engine and the GPU loop set it later
    assert bar.total == 9
    bar.close()


def test_informational_lines_are_not_warnings():
    """Messages that report normal progress are INFO: a WARNING must mean something needs a look."""
    from pathlib import Path

    import epi_spineage

    root = Path(epi_spineage.__file__).parent
    informational = [
        ("score/pipeline.py", "loaded the spool left by an earlier run"),
        ("score/writer.py", "is free again; writing to it directly"),
        ("score/ray_engine.py", "left by an interrupted Ray job"),
        ("model/training.py", "resumed from %s at epoch"),
        ("model/training.py", "time budget of %.1f min reached"),
        ("model/pipeline.py", '"manifest: %d images'),
        ("model/pipeline.py", "fitted on %d-fold out-of-fold predictions"),
        ("model/pipeline.py", '"bias correction: %r%s"'),
        ("model/network.py", '"init weights %s'),
        ("model/presets.py", "writing %d synthetic phantoms"),
    ]
    for rel, text in informational:
        src = (root / rel).read_text()
        at = src.index(text)
        call = src[src.rindex("log.", 0, at) : at]
        assert call.startswith("log.info("), (rel, text, call[:20])


def test_train_main_leaves_the_package_log_level_as_it_was(tmp_path):
    # train's main() quietens the package logger for its run; it used to leave it at WARNING, which
    # silenced every later INFO line of the same process (and this module's caplog tests in a full run)
    from epi_spineage.cli import train
    from epi_spineage.errors import UserError

    package = logging.getLogger("epi_spineage")
    before = package.level
    with pytest.raises(UserError):  # no key, or no manifest: either ends the run early
        train._main(["--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "run")])
    assert package.level == before
