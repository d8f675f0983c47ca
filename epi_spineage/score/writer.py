"""Where a batch of results goes: the database when it can be had in time, else the spool.

Each commit opens the file, writes one transaction and closes it again, so the scorer holds
DuckDB's lock only for that moment. While another process holds the file, the commit retries with
back-off for up to ``lock_timeout_s``; past that the batch goes to the Parquet spool and later
batches try the database only briefly (``retry_s``) until it is free again.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from epi_spineage.db import store as db
from epi_spineage.db.locking import DatabaseBusy, write_transaction
from epi_spineage.score.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class ResultWriter:
    db_path: Path
    spool: Spool
    run_id: str
    lock_timeout_s: float = 60.0
    retry_s: float = 1.0
    spooling: bool = False
    n_spooled_rows: int = 0
    n_spool_files: int = 0
    seq: int = 0
    holder: str | None = None
    counts: db.LoadCounts = field(default_factory=db.LoadCounts)

    def _timeout(self) -> float:
        return min(self.retry_s, self.lock_timeout_s) if self.spooling else self.lock_timeout_s

    def _enter_spool_mode(self, exc: DatabaseBusy) -> None:
        if not self.spooling:
            log.warning(
                "database %s stayed locked by %s for %.0f s; writing results to the spool %s "
                "(loaded by the next run or `python -m epi_spineage.ingest %s --db %s`)",
                self.db_path,
                exc.holder,
                exc.waited_s,
                self.spool.folder,
                self.spool.folder,
                self.db_path,
            )
        self.spooling = True
        self.holder = exc.holder

    def commit(self, table: pa.Table) -> str:
        """Write one batch; returns ``"db"`` or ``"spool"``."""
        self.seq += 1
        if table.num_rows == 0:
            return "db"
        try:
            with write_transaction(self.db_path, timeout_s=self._timeout()) as con:
                counts = db.load_results(con, table)
        except DatabaseBusy as exc:
            self._enter_spool_mode(exc)
            self.spool.write_batch(table, self.run_id, self.seq)
            self.n_spooled_rows += table.num_rows
            self.n_spool_files += 1
            return "spool"
        if self.spooling:
            log.info("database %s is free again; writing to it directly", self.db_path)
            self.spooling = False
        self.counts.add(counts)
        log.info("committed %d row(s): %d new score(s)", table.num_rows, counts.scored)
        return "db"

    def write_model(self, row: dict) -> str:
        try:
            with write_transaction(self.db_path, timeout_s=self._timeout()) as con:
                db.register_model(con, row)
            return "db"
        except DatabaseBusy as exc:
            self._enter_spool_mode(exc)
            self.spool.write_json("model", row["model_id"], row)
            return "spool"

    def write_run(self, row: dict) -> str:
        try:
            with write_transaction(self.db_path, timeout_s=self._timeout()) as con:
                db.upsert_run(con, row)
            stale = self.spool.folder / f"run-{row['run_id']}.json"
            stale.unlink(missing_ok=True)
            return "db"
        except DatabaseBusy as exc:
            self._enter_spool_mode(exc)
            self.spool.write_json("run", row["run_id"], row)
            return "spool"


def db_exists(path: str | os.PathLike) -> bool:
    return Path(path).is_file() and Path(path).stat().st_size > 0


class BackgroundCommitter:
    """Commits in a writer thread so inference never waits on the database.

    Batches queue up (at most ``max_pending``, which bounds memory and what a crash re-scores);
    the thread takes everything waiting and commits it as one transaction, so commits grow when the
    database is slow instead of stalling the GPU. Errors are raised in the caller at the next
    ``put`` or at ``close``.
    """

    def __init__(self, writer: ResultWriter, max_pending: int = 8, min_interval_s: float = 1.0):
        import queue
        import threading

        self.writer = writer
        self.min_interval_s = min_interval_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None
        self.n_spooled = 0
        self._thread = threading.Thread(target=self._run, name="epi-spineage-commit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import queue

        last = 0.0
        while True:
            item = self.queue.get()
            items = [item]
            # Gather for at least min_interval_s since the last commit: each commit opens the file,
            # writes and checkpoints, so fewer, larger commits leave the cores to decode and model.
            deadline = last + self.min_interval_s
            while item is not None:
                remaining = deadline - time.monotonic()
                try:
                    item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
            tables = [t for t in items if t is not None]
            if tables and self.error is None:
                try:
                    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
                    if self.writer.commit(table) == "spool":
                        self.n_spooled += table.num_rows
                except BaseException as exc:  # surfaced in the main thread
                    self.error = exc
                last = time.monotonic()
            if items[-1] is None:
                return

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, table: pa.Table) -> None:
        self._raise()
        self.queue.put(table)

    def close(self) -> None:
        """Wait until everything queued is committed (or spooled); re-raise a writer error."""
        self.queue.put(None)
        self._thread.join()
        self._raise()
