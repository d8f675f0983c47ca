"""The torch side of the input pipeline: an ``IterableDataset`` sharded over DataLoader workers.

The main process indexes the archives once (``score.shards``: file paths, zip directories, tar
offsets); each worker takes every n-th member of that list and reads only those, so an archive is
read once however many workers there are (compressed tars excepted: see ``score.shards``). The
worker decodes and preprocesses its members, and the collate function stacks the ready images into
one tensor per batch. Decoding in workers overlaps with inference in the main process.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from epi_spineage.score.malloc import keep_freed_memory
from epi_spineage.score.members import MemberContext, process_entry
from epi_spineage.score.shards import MemberReader, index_archives, shard_entries

#: Status of the placeholder row for a member skipped before reading (already done); counted, never stored.
SKIPPED_STATUS = "known"

#: Test-only fault injection: a decode worker that reaches a member whose name ends with this SIGKILLs
#: itself, as the kernel's OOM killer would kill it (tests/score/test_score_reliability.py).
FAULT_KILL_ENV = "EPI_SPINEAGE_FAULT_KILL_WORKER_ON"


class InFlight:
    """The member each decode worker is reading, in shared memory.

    A worker killed outright (the kernel's OOM killer sends SIGKILL, which no ``except`` sees) takes
    its batch with it; the main process reads here which file it was on, records that file as an
    error and restarts the workers on the rest (``score.pipeline``), so one file costs itself, not the
    run. Written with plain byte copies (no torch kernel in a forked worker).
    """

    NAME_BYTES = 8192

    def __init__(self, workers: int):
        self.table = torch.zeros((max(1, workers), 4 + self.NAME_BYTES), dtype=torch.uint8).share_memory_()

    def mark(self, worker: int, name: str) -> None:
        raw = name.encode("utf-8", "surrogateescape")
        row = self.table.numpy()[worker]
        if len(raw) > self.NAME_BYTES:  # not recorded: a death then blames no file
            row[:4] = 0
            return
        row[4 : 4 + len(raw)] = np.frombuffer(raw, np.uint8)
        row[:4] = np.frombuffer(len(raw).to_bytes(4, "little"), np.uint8)

    def clear(self, worker: int) -> None:
        self.table.numpy()[worker, :4] = 0

    def name(self, worker: int) -> str | None:
        """The member ``worker`` was reading when it died, or None (it was between members)."""
        row = self.table.numpy()[worker]
        n = int.from_bytes(row[:4].tobytes(), "little")
        return row[4 : 4 + n].tobytes().decode("utf-8", "surrogateescape") if n else None


class ArchiveDataset(IterableDataset):
    """Members of ``archives`` as (row, array | None); skipped members as ({"status": "known"}, None).

    ``skip``: stored paths (``ctx.ref``) the main process has already taken from an earlier set of
    workers in this run; yielded as nothing at all, so a restart after a killed worker counts nothing
    twice. ``inflight``: where each worker notes the member it is reading (``InFlight``).
    """

    def __init__(
        self,
        archives: Sequence[str],
        ctx: MemberContext,
        *,
        limit: int | None = None,
        skip: frozenset[str] = frozenset(),
        inflight: InFlight | None = None,
        refs=None,
    ):
        super().__init__()
        self.archives = list(archives)
        self.ctx = ctx
        self.limit = limit
        self.skip = skip
        self.inflight = inflight
        # the one indexing pass, in the main process (reused when the workers restart)
        self.refs = index_archives(self.archives) if refs is None else refs

    def n_members(self, limit: int | None = None) -> int | None:
        """How many members the scoring loop walks (its progress total), from the index already made.

        None when that is unknown before the walk: a compressed tar is indexed as one stream, and a
        ``limit`` below the member count stops the walk at a point that depends on what is known.
        """
        if any(ref.kind == "stream" for ref in self.refs):
            return None
        n = len(self.refs)
        return n if limit is None or limit >= n else None

    def entries(self):
        """(name, size, member-or-error) of this worker's share; members read lazily, each once."""
        info = get_worker_info()
        shard, n_shards = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = MemberReader()
        try:
            yield from shard_entries(self.refs, shard, n_shards, reader)
        finally:
            reader.close()

    def __iter__(self):
        produced = 0
        info = get_worker_info()
        worker = info.id if info is not None else 0
        fault = os.environ.get(FAULT_KILL_ENV)
        for name, size, member in self.entries():
            ref = self.ctx.ref(name)
            if ref in self.skip:
                continue
            if self.inflight is not None:
                self.inflight.mark(worker, name)
            if fault and info is not None and name.endswith(fault):
                os.kill(os.getpid(), signal.SIGKILL)
            row, array = process_entry(self.ctx, name, size, member)
            if self.inflight is not None:
                self.inflight.clear(worker)
            if row is None:
                yield {"status": SKIPPED_STATUS, "source_path": ref}, None
                continue
            yield row, array
            produced += 1
            # Each worker stops at the limit on its own; the main loop enforces the global one.
            if self.limit is not None and produced >= self.limit:
                return


class SlotLease:
    """One reused shared batch buffer, busy until the main process has finished with it.

    Not a tensor, sequence or mapping, so the DataLoader's pin-memory thread passes it through
    untouched; ``buffer`` travels as a handle to the same shared memory. Keeping it referenced in
    the main process keeps the mapping there, so later batches in this slot arrive without mapping
    a single page again.
    """

    def __init__(self, buffer: torch.Tensor, busy: torch.Tensor, slot: int, key: tuple):
        self.buffer = buffer
        self.busy = busy
        self.slot = slot
        self.key = key

    def release(self) -> None:
        """Let the worker write this slot again: call once nothing reads the batch any more."""
        self.busy.numpy()[self.slot] = 0  # numpy: no torch kernel (and no thread pool) for one flag


class SharedBatches:
    """Batch buffers in shared memory, allocated once per DataLoader worker and reused.

    A tensor sent from a worker otherwise goes through a fresh shared-memory file per batch: the
    kernel zero-fills and maps every page on the worker's side, maps them again in the main
    process and unmaps them afterwards, which costs about as much as decoding the image itself
    (about 2 ms per 1024 x 512 float32 image on this machine). A buffer that is already shared is
    sent as a handle only.

    A slot is written only after the main process has released it (a flag in shared memory); when
    every slot is still busy the batch goes into a fresh buffer as before, so a slow consumer costs
    speed, never correctness.
    """

    def __init__(self, n_slots: int):
        self.n_slots = n_slots
        self.pool: dict[tuple, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.next = 0

    def take(self, capacity: int, shape: tuple, dtype) -> SlotLease | None:
        """A free slot for up to ``capacity`` images of ``shape``/``dtype``, marked busy; or None."""
        key = (*shape, np.dtype(dtype).str)
        if key not in self.pool or self.pool[key][0][0].shape[0] < capacity:
            # First batch, another image size, or a bigger batch: drop the old buffers (the main
            # process may still hold its own mapping of them; they are freed when both let go).
            self.pool.clear()
            torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
            buffers = [torch.empty((capacity, *shape), dtype=torch_dtype).share_memory_() for _ in range(self.n_slots)]
            self.pool[key] = (buffers, torch.zeros(self.n_slots, dtype=torch.int32).share_memory_())
            self.next = 0
        buffers, busy = self.pool[key]
        flags = busy.numpy()
        for step in range(self.n_slots):
            slot = (self.next + step) % self.n_slots
            if flags[slot] == 0:
                flags[slot] = 1
                self.next = (slot + 1) % self.n_slots
                info = get_worker_info()
                return SlotLease(buffers[slot], busy, slot, (info.id if info is not None else -1, slot))
        return None


#: Per worker process; set up by ``worker_init`` (None in the main process: nothing is sent there).
_SHARED: SharedBatches | None = None


def collate(items):
    """A batch: the rows, the stacked ready images (or None), their positions in ``rows``, and the
    lease of the shared buffer holding them (None when not in one; release it once used)."""
    rows = [row for row, _ in items]
    ready = [i for i, (_, arr) in enumerate(items) if arr is not None]
    if not ready:
        return rows, None, ready, None
    arrays = [items[i][1] for i in ready]
    first = arrays[0]
    lease = None
    if _SHARED is not None and all(a.shape == first.shape and a.dtype == first.dtype for a in arrays):
        lease = _SHARED.take(len(items), first.shape, first.dtype)
    if lease is None:
        return rows, torch.from_numpy(np.stack(arrays)), ready, None
    batch = lease.buffer[: len(arrays)]
    np.stack(arrays, out=batch.numpy())
    return rows, batch, ready, lease


def worker_init(_worker_id: int, shared_slots: int = 0, parent_pid: int | None = None) -> None:
    """One thread per decode worker: the cores belong to the workers and the model, not to cv2.

    Not ``torch.set_num_threads`` here: after a fork from a parent whose OpenMP pool is running,
    touching OpenMP in the child can deadlock (GNU libgomp is not fork-safe). Workers do no torch
    maths anyway. ``shared_slots`` > 0 gives the worker that many reused shared batch buffers
    (``SharedBatches``). ``parent_pid``: the scorer's pid; the worker dies with it (``lifetime.py``).
    """
    global _SHARED
    if parent_pid is not None:
        from epi_spineage.score.lifetime import die_with_parent, watch_parent

        die_with_parent()
        watch_parent(parent_pid)
    _SHARED = SharedBatches(shared_slots) if shared_slots > 0 else None
    keep_freed_memory()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
