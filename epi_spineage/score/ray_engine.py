"""``--engine ray``: the nightly scorer on a Ray cluster, exactly once, one model replica per GPU.

The driver (the process cron starts) does what the local engine does before any work is sent:
takes the scorer lock, opens the database once (schema, the database's key, leftover shards of a
killed job, what this model has done) and lists every archive once: a zip's central directory, an
uncompressed tar's headers (one pass recording each member's data offset, so a replica reads its
members by seeking), a folder's listing. A compressed tar cannot be sought in, so the driver
streams it once and ships the new members' bytes in the work units. Paths already handled (same
stored path, size and fingerprint) are skipped right there and cost nothing on the cluster.

The new members are cut into work units; each unit is named by a hash of its members, and its
rows come back to the driver, which writes them as ``unit-<hash>.parquet`` (flat result rows,
``db/results.py``) into the shard folder (default ``FILE.duckdb.ray-shards``) before counting the
unit done. At the end the shards are loaded with the scorer's keyed, duplicate-safe loader
(``spool.ingest_into``) and deleted. Faults:

- a replica that dies (its process killed, its node lost) loses only its units in flight: they go
  back in the queue, a replacement replica is asked for, and the surviving replicas go on;
- a job killed as a whole leaves its finished shards behind: the rerun loads them first, so their
  images count as done and are not scored again; a unit whose shard exists is never recomputed.

Because every insert is keyed, a unit written twice (it cannot be, but a retry after a lost reply
could try) still adds each image once. The key travels to the replicas as bytes in the actor's
constructor arguments, never through the environment or the logs; the model folder's files travel
through the object store, so workers need the archives (same paths on every node) but not the
model folder. See docs/guides/ray.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epi_spineage.errors import UserError
from epi_spineage.score.members import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

#: Members per work unit (and per shard): small enough that a lost replica costs little, big
#: enough that the per-task overhead of Ray (a few ms) stays far below the unit's work.
DEFAULT_UNIT_SIZE = 64
SHARD_MARKER = ".epi_spineage_spool"  # ingest deletes loaded files from a marked folder


def default_shard_dir(db_path: str | os.PathLike) -> Path:
    return Path(str(db_path) + ".ray-shards")


# ---- the plan: one listing per archive -----------------------------------------------------------


@dataclass
class Entry:
    """One member to score: its name (``ARCHIVE::MEMBER`` or a path), size, and how to read it.

    ``loc``: ("file", path) | ("zip", archive, raw member name) | ("tar", archive, data offset, mtime)
    | ("data", bytes, mtime) | ("error", reason). ``fingerprint``: known up front (zip CRC), else
    computed where the bytes are.
    """

    name: str
    size: int | None
    loc: tuple
    fingerprint: str | None = None


def _tar_fingerprint_seek(archive: str, offset: int, size: int, mtime) -> str:
    """The tar member fingerprint ``imaging.archive`` computes from the bytes, by seeking (2 MiB read at most)."""
    from epi_spineage.imaging.archive import _CHUNK, _head_tail_hash

    with open(archive, "rb") as fh:
        fh.seek(offset)
        head = fh.read(min(size, _CHUNK))
        tail = b""
        if size > _CHUNK:
            fh.seek(offset + size - _CHUNK)
            tail = fh.read(_CHUNK)
    return f"t:{size}:{int(mtime or 0)}:{_head_tail_hash(head, tail)}"


def _is_plain_tar(archive: str) -> bool:
    try:
        with tarfile.open(archive, mode="r:"):
            return True
    except (tarfile.TarError, OSError):
        return False


def _index_zip(archive: str):
    """(Entry, lazy fingerprint) per member, from the central directory; mirrors ``archive._iter_zip``."""
    from epi_spineage.imaging.archive import (
        DEFAULT_LIMITS,
        ArchiveRefused,
        _check_size,
        _skipped,
        safe_member_name,
    )

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        reason = f"unreadable zip archive ({' '.join(str(exc).split())})".replace(archive, "<archive>")
        raise ArchiveRefused(f"{archive}: {reason}", reason) from None
    with zf:
        infos = zf.infolist()
        names = [safe_member_name(archive, i.filename) for i in infos]  # refuses the archive before any entry
    for info, name in zip(infos, names):
        if info.is_dir() or _skipped(name):
            continue
        fp = f"z:{info.file_size}:{info.CRC:08x}"
        loc: tuple[Any, ...]
        try:
            _check_size(archive, name, info.file_size, info.compress_size, DEFAULT_LIMITS)
            loc = ("zip", archive, info.filename)
        except ArchiveRefused as exc:
            loc = ("error", exc.reason)
        yield Entry(f"{archive}::{name}", info.file_size, loc, fp), fp


def _index_tar(archive: str):
    """(Entry, lazy fingerprint) per member of an uncompressed tar: headers only, one pass, offsets kept."""
    from epi_spineage.imaging.archive import (
        _TAR_KINDS,
        DEFAULT_LIMITS,
        ArchiveRefused,
        _check_size,
        _skipped,
        safe_member_name,
    )

    limits = DEFAULT_LIMITS
    try:
        tf = tarfile.open(archive, mode="r:")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        reason = f"unreadable tar archive ({' '.join(str(exc).split())})".replace(archive, "<archive>")
        raise ArchiveRefused(f"{archive}: {reason}", reason) from None
    with tf:
        try:
            for info in tf:
                name = safe_member_name(archive, info.name)
                ref = f"{archive}::{name}"
                if not info.isfile():
                    kind = next((what for test, what in _TAR_KINDS if test(info)), None)
                    if kind and not _skipped(name):
                        yield Entry(ref, 0, ("error", f"tar member is {kind}, not a file (not followed)")), None
                    continue
                try:
                    _check_size(archive, name, info.size, None, limits)
                except ArchiveRefused as exc:
                    yield Entry(ref, info.size, ("error", exc.reason)), None
                    continue
                if _skipped(name):
                    continue
                entry = Entry(ref, info.size, ("tar", archive, info.offset_data, info.mtime))
                yield (
                    entry,
                    (lambda o=info.offset_data, s=info.size, m=info.mtime: _tar_fingerprint_seek(archive, o, s, m)),
                )
        except (tarfile.TarError, EOFError, OSError) as exc:
            reason = f"truncated or corrupt tar archive ({type(exc).__name__}: {exc})".replace(archive, "<archive>")
            raise ArchiveRefused(f"{archive}: {reason}", reason) from None


def _index_stream(archive: str):
    """Folders and compressed tars, through ``iter_archive`` (a compressed tar: one streamed pass)."""
    from epi_spineage.imaging.archive import iter_archive

    for member in iter_archive(archive, odd_members=True):
        loc: tuple[Any, ...]
        if os.path.isdir(archive):
            loc = ("file", member.name)
        else:
            try:
                loc = ("data", member.read_bytes(), None)
            except Exception as exc:  # noqa: BLE001 - a refused member (link, device, too large): its own error row
                loc = ("error", getattr(exc, "reason", None) or str(exc))
        yield Entry(member.name, member.size, loc), member.fingerprint


@dataclass
class Plan:
    """What the driver found: the entries to score and how many were skipped as already done."""

    entries: list[Entry] = field(default_factory=list)
    n_seen: int = 0
    n_skipped_known: int = 0
    kinds: dict[str, str] = field(default_factory=dict)


def plan_work(archives: Sequence[str], ctx, *, keep_bytes: bool = True) -> Plan:
    """List every archive once and keep the members ``ctx`` has not done (``members.is_done``).

    ``keep_bytes=False`` (dry runs): a compressed tar's member bytes are dropped once fingerprinted.
    """
    from epi_spineage.imaging.archive import ArchiveRefused, archive_kind
    from epi_spineage.score.members import is_done

    plan = Plan()
    for archive in archives:
        try:
            kind = archive_kind(archive)
            if kind == "zip":
                listing, plan.kinds[archive] = _index_zip(archive), "zip (central directory)"
            elif kind == "tar" and _is_plain_tar(archive):
                listing, plan.kinds[archive] = _index_tar(archive), "tar (header index, read by seeking)"
            else:
                listing = _index_stream(archive)
                plan.kinds[archive] = "folder listing" if kind == "folder" else "compressed tar (streamed once)"
            for entry, fp in listing:
                plan.n_seen += 1
                if entry.loc[0] != "error" and is_done(ctx, entry.name, entry.size, _memo(entry, fp)):
                    plan.n_skipped_known += 1
                    continue
                if entry.loc[0] == "data" and entry.fingerprint is None and callable(fp):
                    entry.fingerprint = fp()
                if entry.loc[0] == "data" and not keep_bytes:
                    entry.loc = ("data", b"", entry.loc[2])
                plan.entries.append(entry)
        except UserError as exc:
            # as iter_members: one error row for an archive that breaks, then the next archive
            plan.n_seen += 1
            reason = exc.reason if isinstance(exc, ArchiveRefused) else str(exc)
            plan.entries.append(Entry(os.fspath(archive), None, ("error", reason)))
    return plan


def _memo(entry: Entry, fp):
    def get():
        if entry.fingerprint is None and fp is not None:
            try:
                entry.fingerprint = fp() if callable(fp) else fp
            except Exception:  # noqa: BLE001 - no fingerprint: the row is stored without one, as locally
                entry.fingerprint = None
        return entry.fingerprint

    return get


def make_units(entries: Sequence[Entry], unit_size: int, model_id: str) -> list[tuple[str, list[Entry]]]:
    """Cut ``entries`` into units named by a hash of the model and their members (stable across reruns)."""
    units = []
    for start in range(0, len(entries), unit_size):
        chunk = list(entries[start : start + unit_size])
        h = hashlib.sha256(model_id.encode())
        for e in chunk:
            h.update(f"\0{e.name}\0{e.size}\0{e.fingerprint}".encode())
        units.append((h.hexdigest()[:24], chunk))
    return units


# ---- the replica --------------------------------------------------------------------------------


class Replica:
    """One model replica (a Ray actor): loads the checkpoint once, turns work units into result rows.

    What it runs is what the local scorer runs on the same hardware (``choose_path``): with a CUDA
    device it sees (Ray gives it one with ``num_gpus=1``) and the ``gpu`` extra, the GPU path of
    ``score.gpu_batches`` (nvImageCodec decode, pixel finishing and preprocessing on the device,
    bf16 network); without, the CPU reader and the CPU model. ``options["decode"]`` is the
    scorer's ``--decode``; ``options["decoder_factory"]`` (tests) forces the GPU path's loop with
    that codestream decoder on whatever device the replica has.
    """

    def __init__(
        self,
        model_files: dict,
        key: bytes,
        run_id: str,
        options: dict,
        known_sops: dict,
        device: str,
        batch_size: int | None,
        threads: int,
    ):
        import tempfile

        import torch

        from epi_spineage.model.checkpoint import load_checkpoint
        from epi_spineage.provenance import model_provenance
        from epi_spineage.score import gpu_batches
        from epi_spineage.score.malloc import keep_freed_memory
        from epi_spineage.score.members import MemberContext

        keep_freed_memory()
        device, self.choice = choose_path(device, options.get("decode", "auto"), options.get("decoder_factory"))
        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.tmp = tempfile.TemporaryDirectory(prefix="epi-spineage-model-")
        for rel, data in model_files.items():
            path = Path(self.tmp.name, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.loaded = load_checkpoint(self.tmp.name, map_location=device)
        if self.choice.path == "gpu":
            gpu_batches.maybe_compile(self.loaded, bool(options.get("compile")))
        self.device = device
        self.provenance = model_provenance(self.loaded, "cuda-bf16" if device == "cuda" else "cpu")
        self.batch_size = batch_size or gpu_batches.default_batch_size(device)
        self.decoder = self.choice.decoder(device) if self.choice.decoder is not None else None
        self.ctx = MemberContext(
            run_id=run_id,
            key=key,
            preprocess_config=self.loaded.preprocess_config,
            include_non_spine=options["include_non_spine"],
            known_sops=known_sops,
            store_paths=options["store_paths"],
            max_pixels=options["max_pixels"],
        )

    def where(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def score(self, unit_id: str, entries: list[Entry]):
        """``(unit_id, result table)``; the table's schema metadata says which path made it (``decode``)."""
        from epi_spineage.db.results import to_table

        rows = self._score_gpu(entries) if self.choice.path == "gpu" else self._score_cpu(entries)
        for row in rows:
            row.update(self.provenance)
        table = to_table(rows)
        return unit_id, table.replace_schema_metadata({b"decode": self.choice.path.encode()})

    def _score_cpu(self, entries: list[Entry]) -> list[dict]:
        """The CPU reader in this process, then the model in batches (as the local CPU path)."""
        import numpy as np
        import torch

        from epi_spineage.score.members import process_member

        rows, arrays = [], []
        handles: dict = {}
        try:
            for entry in entries:
                data, err, fp = self._read(entry, handles)
                row, array = _guarded(self.ctx, entry, data, err, fp, process_member)
                rows.append(row)
                arrays.append(array)
        finally:
            for h in handles.values():
                h.close()
        ready = [i for i, a in enumerate(arrays) if a is not None]
        for start in range(0, len(ready), self.batch_size):
            part = ready[start : start + self.batch_size]
            mean, sd = self.loaded.predict(torch.from_numpy(np.stack([arrays[i] for i in part])))
            for i, m, s in zip(part, mean, sd):
                rows[i].update(status="scored", spine_age_years=float(m), spine_age_sd_years=float(s))
        return rows

    def _score_gpu(self, entries: list[Entry]) -> list[dict]:
        """The local GPU loop's steps (``score.gpu_batches``) over one unit, in this process.

        Headers are parsed and QC'd here (``prepare_member``), batches are collated as the local
        DataLoader does (``collate_gpu``), and ``GpuScorer`` decodes, finishes, preprocesses, scores
        and hashes them on the device; images the decoder refuses go to the CPU reader. Duplicates
        by pixels are left to the keyed loader at ingest, as on the CPU path of this engine.
        """
        from epi_spineage.score.gpu_batches import GpuScorer, collate_gpu, prepare_member
        from epi_spineage.score.members import process_member

        out: list[dict] = []
        batch: list[tuple] = []
        handles: dict = {}
        assert self.decoder is not None  # the GPU path always has its decoder (choose_path)
        scorer = GpuScorer(
            self.loaded, self.ctx, self.device, self.decoder, self.provenance, _Forgetful(), fallback_workers=1
        )

        def flush() -> None:
            if batch:
                rows, items, buffer, cpu_positions, cpu_batch, _ = collate_gpu(batch)
                scorer.submit(rows, items, buffer, cpu_positions, cpu_batch, set(range(len(rows))))
                batch.clear()
            for done in scorer.finished(max_pending=2):
                out.extend(done)

        try:
            for entry in entries:
                data, err, fp = self._read(entry, handles)
                if data is None:
                    batch.append((_guarded(self.ctx, entry, data, err, fp, process_member)[0], None, None))
                else:
                    prepared = _prepared(self.ctx, entry, data, fp, prepare_member)
                    if prepared[0] is not None:  # (None, ...): done before; the driver already skipped those
                        batch.append(prepared)
                if len(batch) >= self.batch_size:
                    flush()
            flush()
            for done in scorer.finished(block=True):
                out.extend(done)
            while scorer.drain_fallbacks():  # the images the decoder refused, read by the CPU reader
                scorer.submit([], [], None, [], None, set())
                for done in scorer.finished(block=True):
                    out.extend(done)
        finally:
            for h in handles.values():
                h.close()
            scorer.close()
        for row in out:
            row.pop("_name", None)
        return out

    @staticmethod
    def _read(entry: Entry, handles: dict):
        """(bytes or None, read error or None, fingerprint) for one entry; never raises."""
        from epi_spineage.imaging.archive import (
            DEFAULT_LIMITS,
            _data_fingerprint,
            _file_fingerprint,
            _read_limited,
            split_reference,
        )

        kind = entry.loc[0]
        try:
            if kind == "error":
                return None, entry.loc[1], entry.fingerprint
            if kind == "file":
                fp = _file_fingerprint(Path(entry.loc[1]))
                return Path(entry.loc[1]).read_bytes(), None, fp
            if kind == "zip":
                archive, raw = entry.loc[1], entry.loc[2]
                zf = _handle(handles, ("zip", archive), lambda: zipfile.ZipFile(archive))
                info = zf.getinfo(raw)
                with zf.open(info) as fh:
                    data = _read_limited(
                        fh, archive, split_reference(entry.name)[1] or "", info.file_size, DEFAULT_LIMITS
                    )
                return data, None, entry.fingerprint
            if kind == "tar":
                archive, offset, mtime = entry.loc[1], entry.loc[2], entry.loc[3]
                fh = _handle(handles, ("tar", archive), lambda: open(archive, "rb"))  # noqa: SIM115
                fh.seek(offset)
                data = fh.read(entry.size)
                if len(data) != entry.size:
                    return None, "truncated tar member", None
                return data, None, _data_fingerprint(data, mtime)
            if kind == "data":
                return entry.loc[1], None, entry.fingerprint
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError, UserError) as exc:
            reason = getattr(exc, "reason", None) or f"corrupt or unreadable member ({type(exc).__name__})"
            return None, reason, entry.fingerprint
        return None, f"unknown work entry {kind!r}", None


def _handle(handles: dict, key: tuple, opener):
    """One open archive per unit and archive, closed by ``Replica.score`` when the unit is done."""
    if key not in handles:
        handles[key] = opener()
    return handles[key]


def choose_path(device: str, decode: str, decoder_factory: Callable[[], Any] | None = None):
    """``(device, DecodeChoice)`` for a replica: the device torch sees (``auto``: CUDA when there is
    one) and the decode path the local scorer would take there (``gpu_batches.resolve_decode``).
    ``decoder_factory`` (tests) forces the GPU path's loop with that decoder on either device."""
    import torch

    from epi_spineage.score import gpu_batches

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if decoder_factory is not None:
        return device, gpu_batches.DecodeChoice("gpu", lambda _device: decoder_factory())
    return device, gpu_batches.resolve_decode(decode, device)


class _Forgetful(dict):
    """``GpuScorer``'s seen-pixels map that remembers nothing: every unit's rows are final only at
    ingest, where the keyed loader settles duplicates across units (the CPU path does the same)."""

    def __setitem__(self, key, value) -> None:
        return None


class _Bytes:
    """A read member as ``prepare_member`` wants it (``read_bytes``, ``fingerprint``)."""

    def __init__(self, data: bytes, fingerprint: str | None):
        self.data, self.fp = data, fingerprint

    def read_bytes(self) -> bytes:
        return self.data

    def fingerprint(self) -> str | None:
        return self.fp


def _prepared(ctx, entry: Entry, data: bytes, fp, prepare_member) -> tuple:
    """``prepare_member`` for one read entry; anything it raises becomes the member's error row."""
    try:
        return prepare_member(ctx, entry.name, entry.size, _Bytes(data, fp))
    except (MemoryError, Exception) as exc:  # noqa: BLE001 - one member must never end the unit
        return _error_row(ctx, entry, fp, exc), None, None


def _guarded(ctx, entry: Entry, data, err, fp, process_member):
    """``process_member``, but anything one member does becomes its error row (as ``members.process_entry``)."""
    try:
        return process_member(ctx, entry.name, entry.size, data, read_error=err, fingerprint=fp)
    except (MemoryError, Exception) as exc:  # noqa: BLE001 - one member must never end the unit
        return _error_row(ctx, entry, fp, exc), None


def _error_row(ctx, entry: Entry, fp, exc: BaseException) -> dict:
    """The error row of a member whose reading raised ``exc`` (its name scrubbed from the message)."""
    from epi_spineage.db.results import now_utc
    from epi_spineage.score.members import _scrub

    ref = ctx.ref(entry.name)
    return {
        "run_id": ctx.run_id,
        "source_path": ref,
        "file_size_bytes": entry.size,
        "recorded_at": now_utc(),
        "status": "error",
        "error_type": "unreadable",
        "file_fingerprint": fp,
        "message": _scrub(f"failed while decoding ({type(exc).__name__}: {exc})", entry.name, ref),
    }


# ---- the driver ---------------------------------------------------------------------------------


@dataclass
class RayStats:
    """What the Ray side did (beyond the run's counts): units, replicas, faults survived."""

    n_units: int = 0
    n_units_resumed: int = 0
    n_units_requeued: int = 0
    n_replicas: int = 0
    n_replicas_lost: int = 0
    n_rows_resumed: int = 0
    kinds: dict[str, str] = field(default_factory=dict)


def _model_files(model_dir: str | os.PathLike) -> dict[str, bytes]:
    root = Path(model_dir)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise UserError(f"model folder is empty: {model_dir}")
    return files


def _connect_ray(address: str | None):
    """Join ``address`` ("auto" = the running cluster) or start a local Ray; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except ConnectionError as exc:
        raise UserError(f"could not join the Ray cluster at {address}: {exc}") from None
    return True


def _replica_resources(replicas: int | None) -> tuple[int, dict]:
    """(how many replicas, the resources of each): one per GPU, else one per CPU."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if gpus:
        return (replicas or gpus), {"num_gpus": 1, "num_cpus": 1}
    return (replicas or max(1, cpus)), {"num_cpus": 1}


def run_units(
    units: list[tuple[str, list]],
    make_replica: Callable[[], object],
    n_replicas: int,
    on_done: Callable[[str, object, object], None],
    stats: RayStats,
    *,
    in_flight: int = 2,
    max_replacements: int | None = None,
    on_event: Callable | None = None,
    start_together: bool = False,
) -> None:
    """Score every unit exactly once on ``n_replicas`` replicas, surviving replicas that die.

    A unit counts done only when ``on_done(unit_id, table, replica)`` has returned (it writes the
    shard). A unit whose replica dies goes back in the queue; a replacement replica is asked for
    and used once it is up, while the living replicas go on (a lost node's replacement may never
    come up: the queue drains without it). ``start_together``: hand out no unit before every first
    replica is up (tests use it so that each node surely gets work).
    """
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    lost_errors = (RayActorError, ActorDiedError, ActorUnavailableError)
    queue = deque(units)
    pending_up: dict = {}  # ready-ref -> replica, still starting
    live: dict = {}  # replica -> set of refs in flight
    flying: dict = {}  # ref -> (replica, unit)
    node_of: dict = {}  # replica -> its node id
    replacements = max_replacements if max_replacements is not None else 2 * n_replicas + 2

    def start_one():
        r: Any = make_replica()
        pending_up[r.where.remote()] = r
        stats.n_replicas += 1

    def feed(r):
        while queue and len(live[r]) < in_flight:
            unit = queue.popleft()
            ref = r.score.remote(unit[0], unit[1])
            live[r].add(ref)
            flying[ref] = (r, unit)

    def lose(r):
        stats.n_replicas_lost += 1
        for ref in list(live.pop(r, ())):
            queue.appendleft(flying.pop(ref)[1])
            stats.n_units_requeued += 1
        try:
            ray.kill(r)
        except Exception as exc:  # noqa: BLE001 - already gone
            log.debug("replica already gone: %s", exc)

    for _ in range(n_replicas):
        start_one()
    try:
        while queue or flying:
            if not live and not pending_up:
                if replacements <= 0:
                    raise RuntimeError("every Ray replica died and no replacement is left to try")
                replacements -= 1
                start_one()
            refs = list(flying) + list(pending_up)
            done, _ = ray.wait(refs, num_returns=1, timeout=2.0)
            if not done:
                # A lost node's replica process can outlive its raylet and never answer: ask the GCS
                # which nodes are alive instead of waiting on it.
                alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
                for r in [r for r in live if node_of.get(r) not in alive]:
                    log.warning("a Ray node was lost; its replica's units go back in the queue")
                    lose(r)
                    if replacements > 0:
                        replacements -= 1
                        start_one()
                for r in list(live):
                    feed(r)
                continue
            ref = done[0]
            if ref in pending_up:
                r = pending_up.pop(ref)
                try:
                    where = ray.get(ref)
                except lost_errors:
                    stats.n_replicas_lost += 1
                    continue
                live[r] = set()
                node_of[r] = where[0]
                if on_event:
                    on_event("up", r, where)
                if start_together and pending_up and not flying:
                    continue  # the first replicas start together
                for each in list(live):
                    feed(each)
                continue
            r = flying[ref][0]
            try:
                unit_id, table = ray.get(ref)
            except lost_errors as exc:
                log.warning("a Ray replica was lost (%s); its units go back in the queue", type(exc).__name__)
                lose(r)
                if replacements > 0:
                    replacements -= 1
                    start_one()
                continue
            flying.pop(ref)
            live[r].discard(ref)
            on_done(unit_id, table, r)
            if r in live:  # on_done may have killed it (tests)
                feed(r)
            for other in list(live):
                feed(other)
    finally:
        for r in list(live) + list(pending_up.values()):
            try:
                ray.kill(r)
            except Exception as exc:  # noqa: BLE001 - already gone
                log.debug("replica already gone: %s", exc)


def score_archives_ray(
    archives: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    ray_address: str | None = None,
    replicas: int | None = None,
    batch_size: int | None = None,
    unit_size: int = DEFAULT_UNIT_SIZE,
    device: str = "auto",
    decode: str = "auto",
    compile_model: bool = False,
    limit: int | None = None,
    dry_run: bool = False,
    include_non_spine: bool = False,
    key: bytes | str | None = None,
    key_file: str | os.PathLike | None = None,
    shard_dir: str | os.PathLike | None = None,
    lock_timeout_s: float = 60.0,
    progress: bool | None = None,
    store_paths: bool = False,
    max_megapixels: float = DEFAULT_MAX_PIXELS / 1e6,
    _on_event: Callable | None = None,
    _start_together: bool = False,
    _decoder_factory: Callable[[], Any] | None = None,
):
    """Score every new image of ``archives`` on Ray into ``db_path``; returns the run's ``ScoreSummary``.

    Same skip rules, key, stored-path hashing and result rows as ``score_archives``; ``replicas``
    defaults to one per GPU of the cluster (one per CPU without GPUs). ``summary.ray`` holds the
    ``RayStats``.
    """
    from epi_spineage.db import store as db
    from epi_spineage.db.locking import ScorerLock, connect_with_retry
    from epi_spineage.db.paths import hash_path
    from epi_spineage.db.results import now_utc
    from epi_spineage.model.checkpoint import read_meta
    from epi_spineage.privacy import require_key
    from epi_spineage.provenance import new_run_id
    from epi_spineage.score.gpu_batches import DECODE_CHOICES
    from epi_spineage.score.members import MemberContext
    from epi_spineage.score.pipeline import (
        ScoreSummary,
        _progress_bar,
        _read_known,
        _resolve_archives,
    )
    from epi_spineage.score.spool import (
        Spool,
        _atomic_write,
        default_spool_dir,
        ingest_into,
    )

    if decode not in DECODE_CHOICES:
        raise UserError(f"--decode must be auto, cpu or gpu, not {decode!r}")
    if (batch_size is not None and batch_size < 1) or unit_size < 1:
        raise UserError("--batch-size and the unit size must be at least 1")
    if not max_megapixels or max_megapixels <= 0:
        raise UserError("--max-megapixels must be positive")
    if replicas is not None and replicas < 1:
        raise UserError("--ray-replicas must be at least 1")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    key_bytes = require_key(key, key_file)  # never the environment: the tool resolved it (cli/common.py)
    archive_paths = _resolve_archives(archives)
    db_path = Path(db_path).expanduser().resolve()
    if not Path(model_dir).exists():
        raise UserError(f"model folder not found: {model_dir}")
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'epi-spineage[ray]'") from None
    shards = Path(shard_dir) if shard_dir else default_shard_dir(db_path)
    meta = read_meta(Path(model_dir))
    model_id = str(meta.get("model_id"))
    options = {
        "store_paths": bool(store_paths),
        "max_pixels": int(max_megapixels * 1e6),
        "include_non_spine": include_non_spine,
        "decode": decode,
        "compile": bool(compile_model),
        "decoder_factory": _decoder_factory,
    }
    stats = RayStats()
    if dry_run:
        return _dry_run_ray(
            archive_paths, db_path, model_id, shards, unit_size, limit, key_bytes, options, lock_timeout_s, stats
        )

    lock = ScorerLock(db_path).acquire(what="scorer")
    started_ray = False
    status = "failed"
    try:
        # A killed job's shards are results: load them before deciding what is left to do.
        if shards.is_dir() and any(shards.glob("unit-*.parquet")):
            stats.n_units_resumed = len(list(shards.glob("unit-*.parquet")))
            con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
            try:
                from epi_spineage.db import schema as dbschema

                dbschema.apply_schema(con, key=key_bytes)
                resumed = ingest_into(con, shards, delete=True)
                stats.n_rows_resumed = resumed.counts.offered
                log.info("loaded %d shard(s) left by an interrupted Ray job: %s", stats.n_units_resumed, resumed.line())
            finally:
                con.close()
        known = _read_known(
            db_path, model_id, lock_timeout_s, Spool(default_spool_dir(db_path)), write=True, key=key_bytes
        )
        ctx = MemberContext(
            run_id="plan",
            key=key_bytes,
            preprocess_config=None,
            include_non_spine=include_non_spine,
            done_paths=known.done_paths(include_non_spine),
            store_paths=bool(store_paths),
        )
        plan = plan_work(archive_paths, ctx)
        stats.kinds = {hash_path(a, key_bytes) if not store_paths else a: k for a, k in plan.kinds.items()}
        entries = plan.entries if limit is None else plan.entries[:limit]  # --limit: the first N new images
        units = make_units(entries, unit_size, model_id)
        stats.n_units = len(units)

        run_id = new_run_id()
        summary = ScoreSummary(
            run_id=run_id, model_id=model_id, device="ray", n_seen=plan.n_seen, n_skipped_known=plan.n_skipped_known
        )
        summary.ray = stats  # type: ignore[attr-defined]  # the Ray engine's counts ride along for the CLI line
        started_at = now_utc()
        stored_archives = archive_paths if store_paths else [hash_path(a, key_bytes) for a in archive_paths]
        con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
        try:
            db.register_model(con, _model_row(model_dir))
            db.upsert_run(con, summary.to_run_row(started_at, stored_archives, "running"))
        finally:
            con.close()
        t0 = time.perf_counter()
        shards.mkdir(parents=True, exist_ok=True)
        (shards / SHARD_MARKER).write_text("epi_spineage Ray shards: load with `python -m epi_spineage.ingest`\n")
        todo = [u for u in units if not (shards / f"unit-{u[0]}.parquet").exists()]
        bar = _progress_bar(progress)
        if hasattr(bar, "total"):
            bar.total = plan.n_seen
            bar.desc = "scoring (ray)"
        bar.update(plan.n_seen - sum(len(u[1]) for u in todo))
        try:
            if todo:
                import ray

                started_ray = _connect_ray(ray_address)
                n, resources = _replica_resources(replicas)
                if decode == "gpu" and "num_gpus" not in resources and _decoder_factory is None:
                    raise UserError(
                        "--decode gpu with --engine ray needs GPUs in the Ray cluster, and it has none "
                        "(use --decode auto or cpu)"
                    )
                n = min(n, len(todo))
                files_ref = ray.put(_model_files(model_dir))
                sops_ref = ray.put(dict(known.sops))
                actor = ray.remote(max_restarts=0, max_task_retries=0, **resources)(Replica)
                threads = 1 if "num_gpus" in resources else int(resources["num_cpus"])

                def make():
                    return actor.remote(files_ref, key_bytes, run_id, options, sops_ref, device, batch_size, threads)

                def on_done(unit_id, table, replica):
                    _atomic_write(shards / f"unit-{unit_id}.parquet", lambda tmp: _write_parquet(table, tmp))
                    n_rows = table.num_rows
                    _count_decoders(summary, table)
                    bar.update(n_rows)
                    if _on_event:
                        _on_event("done", replica, unit_id)

                run_units(todo, make, n, on_done, stats, on_event=_on_event, start_together=_start_together)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - t0
            if status != "finished":
                _record_run(db_path, lock_timeout_s, summary, started_at, stored_archives, status, db)
        con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
        try:
            loaded = ingest_into(con, shards, delete=True)
        finally:
            con.close()
        c = loaded.counts
        summary.n_scored, summary.n_duplicates = c.scored, c.duplicates
        summary.n_not_spine, summary.n_errors = c.not_spine, c.errors
        summary.seconds = time.perf_counter() - t0
        _record_run(db_path, lock_timeout_s, summary, started_at, stored_archives, "finished", db)
        return summary
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        lock.release()


def _count_decoders(summary, table) -> None:
    """A unit scored on the GPU path (its table says so) counts its images as the local GPU loop does:
    decoded on the device, or by the CPU reader (colour, JPEG-LS..., or refused by the decoder)."""
    if (table.schema.metadata or {}).get(b"decode") != b"gpu":
        return
    summary.decode = "gpu"
    for decoder in table.column("decoder").to_pylist():
        if decoder:
            summary.n_gpu_decoded += not decoder.startswith("cpu:")
            summary.n_cpu_fallback += decoder.startswith("cpu:")


def _dry_run_ray(
    archive_paths,
    db_path: Path,
    model_id: str,
    shards: Path,
    unit_size,
    limit,
    key_bytes,
    options,
    lock_timeout_s,
    stats,
):
    """``--dry-run``: the driver's plan (the same listing and skip rules), nothing sent, nothing written.

    No lock, no schema, no Ray: the database is opened read-only (if it exists), leftover shards of
    an interrupted job are counted but not loaded (a real run loads them first, so their images may
    be among those counted here), and the bytes a compressed tar's stream yields are dropped once
    fingerprinted.
    """
    from epi_spineage.db.paths import hash_path
    from epi_spineage.score.members import MemberContext
    from epi_spineage.score.pipeline import ScoreSummary, _read_known
    from epi_spineage.score.spool import Spool, default_spool_dir

    known = _read_known(db_path, model_id, lock_timeout_s, Spool(default_spool_dir(db_path)), write=False)
    ctx = MemberContext(
        run_id="dry-run",
        key=key_bytes,
        preprocess_config=None,
        include_non_spine=options["include_non_spine"],
        done_paths=known.done_paths(options["include_non_spine"]),
        store_paths=options["store_paths"],
    )
    plan = plan_work(archive_paths, ctx, keep_bytes=False)
    entries = plan.entries if limit is None else plan.entries[:limit]
    stats.n_units = len(make_units(entries, unit_size, model_id))
    stats.n_units_resumed = len(list(shards.glob("unit-*.parquet"))) if shards.is_dir() else 0
    stats.kinds = {(a if options["store_paths"] else hash_path(a, key_bytes)): k for a, k in plan.kinds.items()}
    summary = ScoreSummary(
        run_id="dry-run",
        model_id=model_id,
        device="-",
        dry_run=True,
        n_seen=plan.n_seen,
        n_skipped_known=plan.n_skipped_known,
        n_would_score=len(entries),
    )
    summary.ray = stats  # type: ignore[attr-defined]
    return summary


def ray_dry_run_lines(summary) -> list[str]:
    """What a dry run with ``--engine ray`` would send, for the CLI (after ``summary.line()``)."""
    stats: RayStats = summary.ray
    lines = [f"ray: {stats.n_units} work unit(s) would be sent; nothing was sent and nothing written"]
    if stats.n_units_resumed:
        lines.append(f"ray: {stats.n_units_resumed} shard(s) of an interrupted job would be loaded first")
    lines += [f"ray: {name} read as {kind}" for name, kind in stats.kinds.items()]
    return lines


def _write_parquet(table, path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def _model_row(model_dir) -> dict:
    from epi_spineage.db import store as db
    from epi_spineage.model.checkpoint import load_checkpoint

    return db.model_row(load_checkpoint(model_dir, map_location="cpu"))


def _record_run(db_path, lock_timeout_s, summary, started_at, stored_archives, status, db) -> None:
    from epi_spineage.db.locking import connect_with_retry
    from epi_spineage.db.results import now_utc

    row = summary.to_run_row(started_at, stored_archives, status, finished_at=now_utc())
    try:
        con = connect_with_retry(db_path, timeout_s=lock_timeout_s)
        try:
            db.upsert_run(con, row)
        finally:
            con.close()
    except Exception as exc:  # noqa: BLE001 - the run row must not hide the original error
        log.error("could not record the end of run %s: %s", summary.run_id, exc)


__all__ = [
    "DEFAULT_UNIT_SIZE",
    "Entry",
    "Plan",
    "RayStats",
    "Replica",
    "default_shard_dir",
    "make_units",
    "choose_path",
    "plan_work",
    "ray_dry_run_lines",
    "run_units",
    "score_archives_ray",
]
