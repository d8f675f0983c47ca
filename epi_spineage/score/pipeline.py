"""``score_archives``: archives -> DataLoader (decode + preprocess in workers) -> model -> DuckDB.

Exactly once, even under SIGKILL: a batch's rows (images, scores, errors) commit in one DuckDB
transaction, keyed so that nothing can be inserted twice; a rerun skips every path already handled
(before reading it) and every SOPInstanceUID already scored (before decoding it), and whatever a
killed run had not committed is simply scored again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from epi_spineage.db import schema as dbschema
from epi_spineage.db import store as db
from epi_spineage.db.locking import DatabaseBusy, ScorerLock, connect_with_retry
from epi_spineage.db.migrations import schema_version
from epi_spineage.db.paths import hash_path
from epi_spineage.db.results import now_utc, to_table
from epi_spineage.errors import UserError
from epi_spineage.privacy import require_key
from epi_spineage.progress import Progress
from epi_spineage.provenance import (
    PACKAGE_VERSION,
    host_name,
    model_provenance,
    new_run_id,
)
from epi_spineage.score.drift import PredictionSpread, end_of_run_warnings  # issue 11: flat-run warning
from epi_spineage.score.malloc import keep_freed_memory
from epi_spineage.score.members import (
    DEFAULT_MAX_PIXELS,
    MemberContext,
    is_done,
    iter_members,
)
from epi_spineage.score.spool import Spool, default_spool_dir, ingest_into
from epi_spineage.score.writer import BackgroundCommitter, ResultWriter, db_exists

log = logging.getLogger(__name__)


@dataclass
class ScoreSummary:
    """Counts of one run. ``n_seen`` counts every member looked at, including skipped ones."""

    run_id: str
    model_id: str
    device: str
    n_seen: int = 0
    n_scored: int = 0
    n_skipped_known: int = 0
    n_not_spine: int = 0
    n_duplicates: int = 0
    n_errors: int = 0
    n_spooled: int = 0
    seconds: float = 0.0
    steady_seconds: float = 0.0
    steady_images: int = 0
    loop_seconds: float = 0.0
    loop_images: int = 0
    dry_run: bool = False
    n_would_score: int = 0
    decode: str = "cpu"  # the decode path (score --decode); on "gpu", which decoder did each image:
    n_gpu_decoded: int = 0
    n_cpu_fallback: int = 0  # images the CPU reader decoded on the GPU path (see score.gpu_batches)

    def count(self, row: dict) -> None:
        """Add one final result row (scored, not_spine, duplicate or error) to the counts."""
        st = row["status"]
        self.n_scored += st == "scored"
        self.n_not_spine += st == "not_spine"
        self.n_duplicates += st == "duplicate"
        self.n_errors += st == "error"

    @property
    def images_per_s(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """images/s after the first batch arrived (worker start-up and model warm-up excluded)."""
        return self.steady_images / self.steady_seconds if self.steady_seconds > 0 else 0.0

    @property
    def loop_images_per_s(self) -> float:
        """images/s from the first batch to the last one scored: the per-image rate, without the
        per-run costs at either end (worker start-up; the final commit and worker shutdown)."""
        return self.loop_images / self.loop_seconds if self.loop_seconds > 0 else 0.0

    def line(self) -> str:
        if self.dry_run:
            return (
                f"dry run: {self.n_would_score} of {self.n_seen} file(s) would be read and scored by "
                f"{self.model_id}; {self.n_skipped_known} already done"
            )
        spool = f", {self.n_spooled} spooled" if self.n_spooled else ""
        if self.decode == "gpu":
            spool += f"; decoded {self.n_gpu_decoded} on the GPU, {self.n_cpu_fallback} by the CPU reader"
        return (
            f"scored {self.n_scored} image(s) in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s, "
            f"{self.device}); skipped {self.n_skipped_known} already scored, {self.n_not_spine} not lateral "
            f"spine, {self.n_duplicates} duplicate(s); {self.n_errors} error(s){spool}; run {self.run_id}"
        )

    def to_run_row(self, started_at, archives, status: str, finished_at=None) -> dict:
        return {
            "run_id": self.run_id,
            "started_at": started_at,
            "finished_at": finished_at,
            "status": status,
            "model_id": self.model_id,
            "host": host_name(),
            "package_version": PACKAGE_VERSION,
            "device": self.device,
            "archives": json.dumps([str(a) for a in archives]),
            "n_seen": self.n_seen,
            "n_scored": self.n_scored,
            "n_skipped_known": self.n_skipped_known,
            "n_not_spine": self.n_not_spine,
            "n_duplicates": self.n_duplicates,
            "n_errors": self.n_errors,
            "n_spooled": self.n_spooled,
            "decode": self.decode,
            "n_gpu_decoded": self.n_gpu_decoded if self.decode == "gpu" else None,
            "n_cpu_fallback": self.n_cpu_fallback if self.decode == "gpu" else None,
        }


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    return device


def _resolve_archives(archives: Sequence[str | os.PathLike]) -> list[str]:
    if not archives:
        raise UserError("give at least one archive (a folder, .zip, .tar or .tar.gz)")
    out = []
    for a in archives:
        p = Path(a).expanduser()
        if not p.exists():
            raise UserError(f"archive not found: {a}")
        # Absolute paths: the stored source_path must not depend on the directory cron starts in.
        out.append(str(p.resolve()))
    return out


def _read_known(
    db_path: Path, model_id: str, lock_timeout_s: float, spool: Spool, *, write: bool, key: bytes | None = None
):
    """Open the database once: schema (migrations need ``key``), the database's key, pending spool, stale
    runs, and what this model has done."""
    from epi_spineage.db.migrate_v3 import compact_database
    from epi_spineage.privacy import key_fingerprint

    if not db_exists(db_path) and not write:
        return db.Known()
    con = connect_with_retry(db_path, timeout_s=lock_timeout_s, read_only=not write)
    try:
        if write:
            before = schema_version(con)
            dbschema.apply_schema(con, key=key)
            if before is not None and before < 3:
                # migration 3 rewrote stored paths: copy the file so the old bytes leave it
                con.close()
                compact_database(db_path, timeout_s=lock_timeout_s)
                con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
            if key is not None:
                db.check_database_key(con, key_fingerprint(key))
            if spool.pending():
                summary = ingest_into(con, spool.folder, delete=True)
                log.info("loaded the spool left by an earlier run: %s", summary.line())
            n = db.mark_abandoned_runs(con)
            if n:
                log.warning("%d earlier run(s) had stopped without finishing; marked interrupted", n)
        return db.known_for_model(con, model_id)
    finally:
        con.close()


def _install_sigterm() -> Callable[[int, FrameType | None], Any] | int | signal.Handlers | None:
    """systemd stops a service with SIGTERM: finish like Ctrl-C so the run row says 'interrupted'."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def score_archives(
    archives: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    batch_size: int | None = 16,
    workers: int | None = 1,
    device: str = "auto",
    decode: str = "cpu",
    compile_model: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    include_non_spine: bool = False,
    key: bytes | str | None = None,
    key_file: str | os.PathLike | None = None,
    spool_dir: str | os.PathLike | None = None,
    lock_timeout_s: float = 60.0,
    commit_interval_s: float = 1.0,
    progress: bool | None = None,
    store_paths: bool = False,
    max_megapixels: float = DEFAULT_MAX_PIXELS / 1e6,
) -> ScoreSummary:
    """Score every new image of ``archives`` with the checkpoint in ``model_dir`` into ``db_path``.

    Returns the run's ``ScoreSummary``. Individual bad files are recorded in ``errors``, never
    raised; ``UserError`` for bad options, a missing key, a key other than the database's, or a
    second concurrent scorer. Paths are stored as keyed hashes unless ``store_paths``
    (docs/privacy.md#stored-paths); images declaring more than ``max_megapixels`` (rows x columns x
    frames) are refused before decoding. ``decode`` (auto / cpu / gpu) and ``compile_model``: the GPU
    path, ``score.gpu_batches``; ``batch_size`` / ``workers`` None take the defaults for the device.
    """
    from epi_spineage.score import gpu_batches

    if not max_megapixels or max_megapixels <= 0:
        raise UserError("--max-megapixels must be positive")
    if batch_size is None or workers is None or (decode != "cpu" and not dry_run):
        resolved = resolve_device(device)
        if not dry_run:
            gpu_batches.resolve_decode(decode, resolved)  # refuse a bad --decode before anything else
        batch_size = gpu_batches.default_batch_size(resolved) if batch_size is None else batch_size
        workers = gpu_batches.default_workers(resolved) if workers is None else workers
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if workers < 0:
        raise UserError("--workers must be 0 or more")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    key_bytes = require_key(key, key_file)  # refuse before touching anything without a key
    archive_paths = _resolve_archives(archives)
    db_path = Path(db_path).expanduser().resolve()
    if not Path(model_dir).exists():
        raise UserError(f"model folder not found: {model_dir}")
    spool = Spool(spool_dir or default_spool_dir(db_path))

    options = {"store_paths": bool(store_paths), "max_pixels": int(max_megapixels * 1e6)}
    if dry_run:
        return _dry_run(archive_paths, model_dir, db_path, lock_timeout_s, include_non_spine, key_bytes, options)

    lock = ScorerLock(db_path).acquire(what="scorer")
    previous_handler = _install_sigterm()
    try:
        return _score_locked(
            archive_paths,
            model_dir,
            db_path,
            spool,
            key_bytes,
            batch_size=batch_size,
            workers=workers,
            device=device,
            limit=limit,
            include_non_spine=include_non_spine,
            lock_timeout_s=lock_timeout_s,
            commit_interval_s=commit_interval_s,
            progress=progress,
            options=options,
            decode=decode,
            compile_model=compile_model,
        )
    finally:
        lock.release()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def _dry_run(archive_paths, model_dir, db_path, lock_timeout_s, include_non_spine, key_bytes, options) -> ScoreSummary:
    from epi_spineage.model.checkpoint import read_meta

    meta = read_meta(model_dir)
    model_id = str(meta.get("model_id"))
    known = _read_known(db_path, model_id, lock_timeout_s, Spool(default_spool_dir(db_path)), write=False)
    ctx = MemberContext(
        run_id="dry-run",
        key=key_bytes,
        preprocess_config=None,
        done_paths=known.done_paths(include_non_spine),
        **options,
    )
    summary = ScoreSummary(run_id="dry-run", model_id=model_id, device="-", dry_run=True)
    for name, size, member in iter_members(archive_paths):
        summary.n_seen += 1
        if is_done(ctx, name, size, getattr(member, "fingerprint", None)):
            summary.n_skipped_known += 1
        else:
            summary.n_would_score += 1
    return summary


def _score_locked(
    archive_paths,
    model_dir,
    db_path,
    spool,
    key_bytes,
    *,
    batch_size,
    workers,
    device,
    limit,
    include_non_spine,
    lock_timeout_s,
    commit_interval_s,
    progress,
    options,
    decode="cpu",
    compile_model=False,
) -> ScoreSummary:
    import torch
    from torch.utils.data import DataLoader

    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.score import gpu_batches
    from epi_spineage.score.dataset import ArchiveDataset, InFlight, collate, worker_init

    device = resolve_device(device)
    choice = gpu_batches.resolve_decode(decode, device)
    keep_freed_memory()  # this process runs the model (and decodes with workers=0): see malloc.py
    if device == "cpu":
        # Leave a core per decode worker; the model gets the rest.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    if workers == 0:
        worker_init(0)  # decoding in this process: keep cv2 off the model's cores
    loaded = load_checkpoint(model_dir, map_location=device)
    gpu_batches.maybe_compile(loaded, compile_model)
    provenance = model_provenance(loaded, "cuda-bf16" if device == "cuda" else "cpu")
    run_id = new_run_id()
    summary = ScoreSummary(run_id=run_id, model_id=loaded.model_id, device=provenance["device"], decode=choice.path)
    started_at = now_utc()
    writer = ResultWriter(db_path, spool, run_id, lock_timeout_s=lock_timeout_s)

    try:
        known = _read_known(db_path, loaded.model_id, lock_timeout_s, spool, write=True, key=key_bytes)
    except DatabaseBusy as exc:
        # Score anyway: the spool and ingest are idempotent, so re-scoring a few known images is
        # the price of not losing the night.
        log.warning("could not read %s (held by %s); scoring everything given into the spool", db_path, exc.holder)
        writer.spooling = True
        known = db.Known()
    # the runs table lists the archives in their stored form too (a folder may be named after a patient)
    stored_archives = archive_paths if options["store_paths"] else [hash_path(a, key_bytes) for a in archive_paths]
    writer.write_model(db.model_row(loaded))
    writer.write_run(summary.to_run_row(started_at, stored_archives, "running"))

    ctx = MemberContext(
        run_id=run_id,
        key=key_bytes,
        preprocess_config=loaded.preprocess_config,
        include_non_spine=include_non_spine,
        done_paths=known.done_paths(include_non_spine),
        known_sops=known.sops,
        **options,
    )
    prefetch = 2
    inflight = InFlight(workers) if workers else None
    first = ArchiveDataset(archive_paths, ctx, limit=limit, inflight=inflight) if choice.path == "cpu" else None

    def make_loader(skip: frozenset[str]):
        assert first is not None  # only called on the CPU path
        dataset = first
        if skip:  # a restart after a killed worker: the same listing, minus what was taken
            dataset = ArchiveDataset(archive_paths, ctx, limit=limit, skip=skip, inflight=inflight, refs=first.refs)
        # One shared buffer per batch in flight plus the one being scored; see SharedBatches.
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate,
            worker_init_fn=functools.partial(worker_init, shared_slots=prefetch + 1, parent_pid=os.getpid())
            if workers
            else None,
            pin_memory=(device == "cuda"),
            prefetch_factor=prefetch if workers else None,
            persistent_workers=False,
            multiprocessing_context=_mp_context() if workers else None,
        )

    taken: set[str] = set()  # stored paths the loop has taken this run (a restart skips them)
    loader = None if first is None else _batches_despite_killed_workers(make_loader, inflight, ctx, taken)
    seen_hashes = _seen_hashes(known)
    mapped = {}  # the workers' shared batch buffers, kept mapped here for their next batches
    status = "failed"
    bar = _progress_bar(progress, total=None if first is None else first.n_members(limit))  # GPU: its loop sets it
    committer = BackgroundCommitter(writer, min_interval_s=commit_interval_s)
    t0 = time.perf_counter()
    t_first, n_first = None, 0
    spread = PredictionSpread()  # issue 11: notice a flat (degenerate) model; warned about at the end
    try:
        if choice.path == "gpu":  # the GPU loop: score/gpu_batches.py
            make_decoder = cast(Callable[[Any], Any], choice.decoder)  # always set when the path is "gpu"
            t_first, n_first = gpu_batches.score_on_gpu(
                archive_paths,
                ctx,
                loaded,
                device=device,
                decoder=make_decoder(device),
                batch_size=batch_size,
                workers=workers,
                limit=limit,
                summary=summary,
                committer=committer,
                seen_hashes=seen_hashes,
                provenance=provenance,
                bar=bar,
            )
        processed = 0
        for rows, batch, ready, lease in loader if loader is not None else ():
            keep = []
            for i, row in enumerate(rows):
                summary.n_seen += 1
                taken.add(row["source_path"])
                if row["status"] == "known":
                    summary.n_skipped_known += 1
                    continue
                if limit is not None and processed >= limit:
                    continue  # past the limit: left for the next run, never half-written
                processed += 1
                keep.append(i)
            batch_rows = _score_batch(loaded, rows, batch, ready, set(keep), seen_hashes, provenance)
            if lease is not None:  # predict has returned: nothing reads the shared buffer any more
                mapped[lease.key] = lease.buffer
                lease.release()
            for row in batch_rows:
                summary.count(row)
                if row["status"] == "scored":
                    spread.add(row.get("spine_age_years"))
            if batch_rows:
                committer.put(to_table(batch_rows))
            if t_first is None:
                t_first, n_first = time.perf_counter(), summary.n_scored
            else:
                summary.loop_seconds, summary.loop_images = time.perf_counter() - t_first, summary.n_scored - n_first
            bar.update(len(rows))
            bar.set_postfix_str(f"scored={summary.n_scored} errors={summary.n_errors}", refresh=False)
            if limit is not None and processed >= limit:
                break
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        del loader
        bar.close()
        commit_error = None
        try:
            committer.close()
        except BaseException as exc:
            commit_error, status = exc, "failed"
        summary.n_spooled = committer.n_spooled
        summary.seconds = time.perf_counter() - t0
        if t_first is not None:
            summary.steady_seconds = time.perf_counter() - t_first
            summary.steady_images = summary.n_scored - n_first
        try:
            writer.write_run(summary.to_run_row(started_at, stored_archives, status, finished_at=now_utc()))
        except Exception as exc:  # the run row must not hide the original error
            log.error("could not record the end of run %s: %s", run_id, exc)
        if commit_error is not None:
            raise commit_error
    if spool.pending() and not writer.spooling:
        try:
            summary_ingest = _ingest_pending(db_path, spool, min(lock_timeout_s, 5.0))
            log.info("loaded the spool: %s", summary_ingest.line())
        except DatabaseBusy:
            log.warning("results wait in the spool %s; the next run loads them", spool.folder)
    # ---- issue 11: a weak model or a flat run ends the job with a warning line (score/drift.py)
    for line in end_of_run_warnings(run_id, loaded.model_id, getattr(loaded, "meta", None), spread):
        log.warning("%s", line)
    return summary


#: Restarts of the decode workers in one run after deaths that blamed no file, before the run gives up.
MAX_BLAMELESS_RESTARTS = 3


def _batches_despite_killed_workers(make_loader, inflight, ctx: MemberContext, taken: set[str]):
    """The DataLoader's batches; a decode worker killed outright costs the file it was reading.

    The kernel's OOM killer (or anyone) may SIGKILL a decode worker: no ``except`` in the worker sees
    it and PyTorch ends the iteration with a RuntimeError. Here the file the dead worker was reading
    (``InFlight``) becomes an error row (``worker_killed``; retried by the next run like any error),
    and fresh workers go on with everything the loop has not yet ``taken``. Deaths that blame no file
    (between members) restart the workers too, at most ``MAX_BLAMELESS_RESTARTS`` times.
    """
    blameless = 0
    while True:
        loader = make_loader(frozenset(taken))
        it = iter(loader)
        # PyTorch's SIGCHLD handler raises in whatever the main thread is doing (scoring, committing);
        # without it a death surfaces only inside next(), where it is handled below (within ~5 s).
        previous = _quiet_sigchld()
        try:
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    return
                except RuntimeError:
                    dead = _dead_workers(it)
                    if not dead:
                        raise
                    break
                yield batch
        finally:
            _restore_sigchld(previous)
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        blamed = [name for w, _ in dead if (name := inflight.name(w)) is not None and ctx.ref(name) not in taken]
        signals = sorted({-code for _, code in dead})
        log.warning(
            "a decode worker was killed (signal %s%s) while reading %d file(s): recorded as errors "
            "(retried by the next run); scoring goes on with fresh workers",
            ", ".join(str(n) for n in signals),
            "; out of memory?" if signal.SIGKILL in signals else "",
            len(blamed),
        )
        if not blamed:
            blameless += 1
            if blameless > MAX_BLAMELESS_RESTARTS:
                raise RuntimeError("decode workers keep dying between files; giving up (see the log above)")
        for w in range(inflight.table.shape[0]):  # every worker is gone: nothing is in flight
            inflight.clear(w)
        if blamed:
            yield [_killed_row(ctx, name, signals) for name in blamed], None, [], None


def _dead_workers(it) -> list[tuple[int, int]]:
    """(worker id, exit code) of the DataLoader workers that a signal killed."""
    out = []
    for i, proc in enumerate(getattr(it, "_workers", ())):
        code = proc.exitcode
        if code is not None and code < 0:
            out.append((i, code))
    return out


def _killed_row(ctx: MemberContext, name: str, signals: list[int]) -> dict:
    return {
        "run_id": ctx.run_id,
        "source_path": ctx.ref(name),
        "recorded_at": now_utc(),
        "status": "error",
        "error_type": "worker_killed",
        "message": f"the decode worker reading this file was killed (signal {', '.join(map(str, signals))}; "
        "out of memory?); retried on the next run",
    }


def _quiet_sigchld():
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _restore_sigchld(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGCHLD, previous)


def _seen_hashes(known) -> dict:
    """content hash -> first path, for de-duplication within the run (benchmarks/score_throughput.py
    swaps this for a store that never remembers, to reuse a few slow-to-encode images)."""
    return dict(known.hashes)


def _ingest_pending(db_path, spool, timeout_s):
    con = connect_with_retry(db_path, timeout_s=timeout_s)
    try:
        return ingest_into(con, spool.folder, delete=True)
    finally:
        con.close()


def _score_batch(loaded, rows, batch, ready, keep, seen_hashes, provenance) -> list[dict]:
    """Predict the ready images of one batch that are new; turn rows into final result rows."""
    out = []
    to_predict = []  # (row position, position in batch)
    for pos_in_batch, i in enumerate(ready):
        if i not in keep:
            continue
        row = rows[i]
        first = seen_hashes.get(row["content_hash"])
        if first is not None and first != row["source_path"]:
            row.update(status="duplicate", duplicate_of=first, message=f"same pixels as {first}")
            continue
        seen_hashes[row["content_hash"]] = row["source_path"]
        to_predict.append((i, pos_in_batch))
    if to_predict:
        import torch

        index = torch.tensor([p for _, p in to_predict])
        mean, sd = loaded.predict(batch.index_select(0, index) if len(index) < batch.shape[0] else batch)
        for (i, _), m, s in zip(to_predict, mean, sd):
            rows[i].update(status="scored", spine_age_years=float(m), spine_age_sd_years=float(s))
    for i in sorted(keep):
        row = rows[i]
        if row["status"] == "ready":  # a duplicate within this batch was handled above
            continue
        row.update(provenance)
        out.append(row)
    return out


def _progress_bar(progress: bool | None, total: int | None = None) -> Progress:
    """The scorer's progress (``epi_spineage.progress``): a bar with total, images/s and ETA on a
    terminal, one INFO summary line otherwise; ``progress`` True/False forces the bar on/off."""
    return Progress("scoring", total=total, unit="img", show=progress, logger=log)


def locate(path_hash: str, archives: Sequence[str | os.PathLike], *, key: bytes) -> list[str]:
    """The members of ``archives`` whose stored path hash is ``path_hash`` (normally one, or none).

    Walks the listings only (no member is read): the way back from a hashed ``source_path`` in the
    database to the file, on a machine that has the archive and the key. Archives are resolved to
    absolute paths as the scorer does, so give them as the scorer was given them (any spelling of
    the same location works).
    """
    from epi_spineage.db.paths import is_path_hash
    from epi_spineage.imaging import iter_archive

    if not is_path_hash(path_hash):
        raise UserError(f"--locate takes a stored path hash (h_ + 32 hex digits), not {path_hash!r}")
    found = []
    for archive in _resolve_archives(archives):
        if hash_path(archive, key) == path_hash:
            found.append(archive)
        try:
            for member in iter_archive(archive, odd_members=True):
                if hash_path(member.name, key) == path_hash:
                    found.append(member.name)
        except UserError as exc:
            log.warning("could not list %s: %s", archive, exc)
    return found


__all__ = ["ScoreSummary", "locate", "resolve_device", "score_archives"]


def _mp_context():
    """Start decode workers with forkserver: a plain fork copies the parent's thread pools (torch's
    OpenMP, DuckDB's, tqdm's monitor) with whatever locks they held, and the child can hang on
    one. ``EPI_SPINEAGE_MP_CONTEXT`` overrides (fork / spawn / forkserver). The forkserver imports
    ``_forkserver_preload`` first, so it dies with this process even under SIGKILL (``lifetime.py``)."""
    import multiprocessing

    ctx = multiprocessing.get_context(os.environ.get("EPI_SPINEAGE_MP_CONTEXT", "forkserver"))
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["epi_spineage.score._forkserver_preload"])
    return ctx
