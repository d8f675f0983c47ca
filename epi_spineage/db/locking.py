"""Who may write the database, and for how long.

DuckDB lets one process open a file for writing and, while it does, no other process can open it
even read-only. So the scorer holds a connection only for each short commit and retries with
back-off when the file is busy (an analyst's open ``duckdb`` shell, a report), naming the process
that holds it. A second *scorer* is refused outright by an OS lock on ``FILE.duckdb.scorer.lock``:
two scorers would score the same new images twice over and fight for the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from epi_spineage.errors import EpiSpineageError, UserError

log = logging.getLogger(__name__)

_HOLDER_RE = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


class DatabaseBusy(EpiSpineageError):
    """The DuckDB file stayed locked by another process for longer than the allowed wait."""

    def __init__(self, path: str | os.PathLike, holder: str, waited_s: float):
        self.path = str(path)
        self.holder = holder
        self.waited_s = waited_s
        super().__init__(f"{self.path} is locked by {holder}; gave up after {waited_s:.1f} s")


class ScorerAlreadyRunning(UserError):
    """Another scorer (or ingest) holds ``FILE.duckdb.scorer.lock``."""


def is_lock_error(exc: BaseException) -> bool:
    """True for DuckDB's "Could not set lock on file" error (another process has the file open)."""
    return "could not set lock on file" in str(exc).lower()


def lock_holder(message: str) -> str:
    """Describe the process named in a DuckDB lock error, e.g. ``"PID 4242 (/usr/bin/duckdb)"``."""
    match = _HOLDER_RE.search(str(message))
    if not match:
        return "another process"
    return f"PID {match['pid']} ({match['program']})"


def lock_holder_pid(message: str) -> int | None:
    """The PID named in a DuckDB lock error, or ``None``."""
    match = _HOLDER_RE.search(str(message))
    return int(match["pid"]) if match else None


def connect_with_retry(
    path: str | os.PathLike,
    *,
    timeout_s: float = 60.0,
    read_only: bool = False,
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
    threads: int | None = None,
):
    """Open ``path`` with DuckDB, retrying with exponential back-off while another process holds it.

    Raises ``DatabaseBusy`` (naming the holder) once ``timeout_s`` has passed; other errors pass
    through at once.
    """
    import duckdb

    start = time.monotonic()
    delay = first_delay_s
    warned = False
    while True:
        try:
            config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            waited = time.monotonic() - start
            holder = lock_holder(str(exc))
            if waited >= timeout_s:
                raise DatabaseBusy(path, holder, waited) from None
            if not warned:
                log.warning("database %s is busy (held by %s); retrying for up to %.0f s", path, holder, timeout_s)
                warned = True
            else:
                log.info("database still held by %s after %.1f s", holder, waited)
            time.sleep(min(delay, max(0.0, timeout_s - waited)))
            delay = min(delay * 2, max_delay_s)


def connect_or_refuse(path: str | os.PathLike, *, timeout_s: float = 60.0, threads: int | None = None):
    """``connect_with_retry`` for a user's command: a file still busy after ``timeout_s`` is a ``UserError``
    (one line naming the holder, exit 2), not a traceback."""
    try:
        return connect_with_retry(path, timeout_s=timeout_s, threads=threads)
    except DatabaseBusy as exc:
        raise UserError(str(exc)) from None


@contextlib.contextmanager
def write_transaction(path: str | os.PathLike, *, timeout_s: float = 60.0, threads: int | None = 1) -> Iterator[object]:
    """A connection with an open transaction, committed on success and closed straight after.

    The file lock is held only between open and close, so an analyst waiting on the file gets in
    between two batches. One DuckDB thread by default: a batch insert is small, and more threads
    would compete with decoding and the model for the same cores.
    """
    con = connect_with_retry(path, timeout_s=timeout_s, threads=threads)
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK").fetchall()
            raise
        con.execute("COMMIT").fetchall()
    finally:
        con.close()


@dataclass
class ScorerLock:
    """An exclusive OS lock (``fcntl.flock``) beside the database, held for a whole run.

    The kernel drops the lock when the process dies, even by SIGKILL, so a crashed run never leaves
    a stale lock behind. The file's text names the holder for the refusal message.
    """

    db_path: Path
    _fd: int | None = None

    @property
    def path(self) -> Path:
        return Path(str(self.db_path) + ".scorer.lock")

    def acquire(self, *, what: str = "scorer", wait_s: float = 0.0) -> ScorerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown process"
                    os.close(fd)
                    raise ScorerAlreadyRunning(
                        f"another scorer or ingest is already writing {self.db_path} ({holder}); "
                        f"refusing to run a second one at the same time (lock file {self.path})"
                    ) from None
                time.sleep(0.2)
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} PID {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ScorerLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
