"""The reused shared batch buffers: a slot is written again only after the main process released it."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from epi_spineage.score import dataset  # noqa: E402
from epi_spineage.score.dataset import SharedBatches, collate  # noqa: E402


def _items(seed: int, n: int = 3, shape=(1, 6, 4)):
    rng = np.random.default_rng(seed)
    items = [({"status": "ready", "i": i}, rng.random(shape, dtype=np.float32)) for i in range(n)]
    items.insert(1, ({"status": "error"}, None))  # a row without an image keeps its place
    return items


@pytest.fixture
def shared(monkeypatch):
    pool = SharedBatches(2)
    monkeypatch.setattr(dataset, "_SHARED", pool)
    return pool


def test_slots_are_reused_only_after_release(shared):
    first_items, second_items, third_items = _items(1), _items(2), _items(3)
    rows, b1, ready, lease1 = collate(first_items)
    assert [r.get("i") for r in rows] == [0, None, 1, 2] and ready == [0, 2, 3]
    assert lease1 is not None and b1.is_shared()
    np.testing.assert_array_equal(b1.numpy(), np.stack([first_items[i][1] for i in ready]))
    _, b2, _, lease2 = collate(second_items)
    assert lease2 is not None and lease2.slot != lease1.slot
    # Both slots busy: a fresh buffer, and the first batch is left untouched.
    _, b3, _, lease3 = collate(third_items)
    assert lease3 is None
    np.testing.assert_array_equal(b3.numpy(), np.stack([third_items[i][1] for i in (0, 2, 3)]))
    np.testing.assert_array_equal(b1.numpy(), np.stack([first_items[i][1] for i in (0, 2, 3)]))
    lease1.release()
    _, b4, _, lease4 = collate(third_items)
    assert lease4 is not None and lease4.slot == lease1.slot
    assert b4.data_ptr() == b1.data_ptr()  # the same memory, written again
    np.testing.assert_array_equal(b4.numpy(), np.stack([third_items[i][1] for i in (0, 2, 3)]))
    np.testing.assert_array_equal(b2.numpy(), np.stack([second_items[i][1] for i in (0, 2, 3)]))


def test_buffers_follow_image_size_and_batch_length(shared):
    _, first, _, lease = collate(_items(1))
    lease.release()
    _, short, _, lease_short = collate(_items(2, n=1))  # the last, shorter batch: same buffers
    assert lease_short is not None and tuple(short.shape) == (1, 1, 6, 4)
    assert lease_short.buffer.shape[0] == 4  # capacity from the first batch (4 rows)
    _, big, _, lease_big = collate(_items(2, shape=(1, 8, 4)))  # another image size: new buffers
    assert lease_big is not None and tuple(big.shape) == (3, 1, 8, 4)
    _, none_ready, ready, no_lease = collate([({"status": "error"}, None)])
    assert none_ready is None and ready == [] and no_lease is None


def test_main_process_collate_is_plain():
    assert dataset._SHARED is None
    rows, batch, ready, lease = collate(_items(5))
    assert lease is None and not batch.is_shared() and ready == [0, 2, 3]


@pytest.mark.parametrize("hold", [False, True])
def test_worker_batches_arrive_intact(tmp_path, tiny_model, hold):
    """Through a real forkserver worker: every batch equals the in-process result, whether the main
    process releases each batch at once or holds them all (which forces fresh buffers)."""
    from torch.utils.data import DataLoader

    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.score.dataset import ArchiveDataset, worker_init
    from epi_spineage.score.members import MemberContext, iter_members, process_entry

    from .conftest import phantom_dicoms

    folder = tmp_path / "archive"
    folder.mkdir()
    for p in phantom_dicoms(7, seed=3):
        (folder / p.member).write_bytes(p.data)
    cfg = load_checkpoint(tiny_model).preprocess_config
    ctx = MemberContext(run_id="t", key=b"k" * 32, preprocess_config=cfg)
    expected = {}
    for name, size, member in iter_members([str(folder)]):
        row, array = process_entry(ctx, name, size, member)
        expected[row["source_path"]] = array
    loader = DataLoader(
        ArchiveDataset([str(folder)], ctx),
        batch_size=2,
        num_workers=1,
        collate_fn=collate,
        # prefetch + 1 slots, as the scorer: batch k + 2 is asked for once batch k has arrived, and batch k
        # is released before batch k + 1 is taken, so the worker always finds a free slot (with 2 slots
        # it raced the main process and fell back to a fresh buffer under load)
        worker_init_fn=functools.partial(worker_init, shared_slots=3),
        prefetch_factor=2,
        multiprocessing_context="forkserver",
    )
    held, n_leased, seen = [], 0, 0
    for rows, batch, ready, lease in loader:
        want = np.stack([expected[rows[i]["source_path"]] for i in ready])
        np.testing.assert_array_equal(batch.numpy(), want)
        seen += len(ready)
        if lease is not None:
            n_leased += 1
            if not hold:
                lease.release()  # from here on the worker may write this memory again
                continue
        held.append((batch, want))
    assert seen == 7
    assert n_leased == (3 if hold else 4)  # holding: every slot stays busy after the first three batches
    for batch, want in held:  # nothing held was written over
        np.testing.assert_array_equal(batch.numpy(), want)


def test_malloc_thresholds_can_be_switched_off(monkeypatch):
    import platform

    from epi_spineage.score import malloc

    monkeypatch.setattr(malloc, "_done", False)
    monkeypatch.setenv("EPI_SPINEAGE_MALLOC_TUNING", "0")
    assert malloc.keep_freed_memory() is False
    monkeypatch.delenv("EPI_SPINEAGE_MALLOC_TUNING")
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert malloc.keep_freed_memory() is True
    assert malloc._done is True
