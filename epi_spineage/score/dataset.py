"""The torch side of the input pipeline: an ``IterableDataset`` sharded over DataLoader workers.

Each worker walks the archive listing and takes every n-th member (tar archives are streams, so
sharding by position is the only split that needs no random access), decodes and preprocesses it,
and the collate function stacks the ready images into one tensor per batch. Decoding in workers
overlaps with inference in the main process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from epi_spineage.score.members import MemberContext, iter_members, process_entry

#: Placeholder row for a member skipped before reading (already done); counted, never stored.
SKIPPED = {"status": "known"}


class ArchiveDataset(IterableDataset):
    """Members of ``archives`` as (row, array | None); skipped members as (SKIPPED, None)."""

    def __init__(self, archives: Sequence[str], ctx: MemberContext, *, limit: int | None = None):
        super().__init__()
        self.archives = list(archives)
        self.ctx = ctx
        self.limit = limit

    def __iter__(self):
        info = get_worker_info()
        shard, n_shards = (info.id, info.num_workers) if info is not None else (0, 1)
        produced = 0
        for name, size, member in iter_members(self.archives, shard=shard, n_shards=n_shards):
            row, array = process_entry(self.ctx, name, size, member)
            if row is None:
                yield SKIPPED, None
                continue
            yield row, array
            produced += 1
            # Each worker stops at the limit on its own; the main loop enforces the global one.
            if self.limit is not None and produced >= self.limit:
                return


def collate(items):
    """A batch: the rows, the stacked ready images (or None) and their positions in ``rows``."""
    rows = [row for row, _ in items]
    ready = [i for i, (_, arr) in enumerate(items) if arr is not None]
    if not ready:
        return rows, None, ready
    batch = torch.from_numpy(np.stack([items[i][1] for i in ready]))
    return rows, batch, ready


def worker_init(_worker_id: int) -> None:
    """One thread per decode worker: the cores belong to the workers and the model, not to cv2.

    Not ``torch.set_num_threads`` here: after a fork from a parent whose OpenMP pool is running,
    touching OpenMP in the child can deadlock (GNU libgomp is not fork-safe). Workers do no torch
    maths anyway.
    """
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
