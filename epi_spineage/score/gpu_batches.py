"""The GPU scoring loop (``score --decode gpu``): the CPU reads bytes and parses headers, the device
decodes, finishes the pixels, preprocesses and runs the network. See docs/guides/score.md#gpu.

Workers (DataLoader processes, each reading only its own members: ``score.shards``) parse the
DICOM header (``imaging.encapsulated``), do the QC and pseudonymisation the CPU path does, and send
the file's bytes with the offsets of its codestream or raw frame. Anything the GPU path cannot
reproduce exactly (colour, a Modality LUT Sequence, JPEG-LS, deflate, non-DICOM rasters) is decoded
and preprocessed by the CPU reader in the worker, as on the CPU path.

The main process, per batch: codestreams go to nvImageCodec in one batched call (into device
memory), raw frames are copied from pinned memory; ``gpu_decode.finish_pixels`` turns them into the
CPU reader's pixels; ``preprocess_torch`` preprocesses them on the device; the network runs in bf16,
channels-last. The hashed pixels are copied back asynchronously and a thread pool hashes them while
the next batch runs: de-duplication happens when a batch's hashes are in, before its rows commit
(so a duplicate is scored and its score dropped, never stored). An image the GPU decoder refuses is
read by the CPU reader in a process pool and scored with a later batch; the run counts both.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from epi_spineage.db.results import meta_fields, to_table
from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging.dicom import dicom_meta, is_dicom_bytes
from epi_spineage.imaging.encapsulated import parse_dicom
from epi_spineage.imaging.gpu_decode import (
    GPU_RAW,
    CodestreamDecoder,
    PixelPlan,
    gpu_extra_available,
    plan_pixels,
)
from epi_spineage.imaging.image import infer_modality
from epi_spineage.privacy import pseudonymise
from epi_spineage.score.dataset import ArchiveDataset
from epi_spineage.score.members import MemberContext, is_done, process_member
from epi_spineage.score.qc import lateral_spine_problem

log = logging.getLogger(__name__)

#: Decode paths of ``score --decode``.
DECODE_CHOICES = ("auto", "cpu", "gpu")


# --------------------------------------------------------------------------------------------
# Dispatch and defaults


@dataclass(frozen=True)
class DecodeChoice:
    """The resolved ``--decode``: ``path`` is "cpu" or "gpu"; ``decoder`` builds the codestream decoder."""

    path: str
    decoder: Callable[[Any], CodestreamDecoder] | None = None


def resolve_decode(decode: str, device: str) -> DecodeChoice:
    """``--decode`` against the resolved ``device`` (``cpu``/``cuda``) and the installed extras.

    auto: the GPU path when the ``gpu`` extra is installed and the model runs on CUDA, else the CPU
    path. gpu without either: ``UserError`` naming what is missing (the CLI prints one line, exit 2).
    """
    if decode not in DECODE_CHOICES:
        raise UserError(f"--decode must be auto, cpu or gpu, not {decode!r}")
    if decode == "cpu":
        return DecodeChoice("cpu")
    extra = gpu_extra_available()
    if decode == "auto":
        return _gpu_choice() if device == "cuda" and extra else DecodeChoice("cpu")
    if device != "cuda":
        raise UserError("--decode gpu needs a CUDA device, and torch sees none here (use --decode cpu or auto)")
    if not extra:
        raise UserError(
            "--decode gpu needs the optional GPU decoders: pip install 'epi-spineage[gpu]' "
            "(nvidia-nvimgcodec-cu13, nvidia-nvjpeg2k-cu13), or use --decode cpu"
        )
    return _gpu_choice()


def _gpu_choice() -> DecodeChoice:
    from epi_spineage.imaging.gpu_decode import NvImageCodecDecoder

    def make(device):
        import torch

        return NvImageCodecDecoder(device_id=torch.device(device).index or 0)

    return DecodeChoice("gpu", make)


def default_workers(device: str) -> int:
    """Decode workers when ``--workers`` is not given: one on CPU (the model needs the other cores);
    on CUDA all cores but one (the main process feeds the GPU), at most 15."""
    cores = os.cpu_count() or 2
    return max(1, min(15, cores - 1)) if device == "cuda" else 1


def default_batch_size(device: str) -> int:
    """Images per batch when ``--batch-size`` is not given: 64 on CUDA (EfficientNet-B4 at 1024 x 512
    in bf16 fits easily on a data-centre GPU), 16 on CPU."""
    return 64 if device == "cuda" else 16


def maybe_compile(loaded: Any, enabled: bool) -> None:
    """``--compile``: ``torch.compile`` the network in place (the first batches pay the compile time)."""
    if not enabled:
        return
    import torch

    loaded.network = torch.compile(loaded.network)


# --------------------------------------------------------------------------------------------
# Worker side: header, QC and the bytes to send


@dataclass
class GpuItem:
    """What the main process needs to finish one image on the device (the bytes travel separately)."""

    kind: str  # "codestream" or "raw"
    plan: PixelPlan
    modality: str
    start: int  # the codestream / raw frame inside this item's bytes
    length: int
    shape: tuple[int, int]
    raw_dtype: str | None = None  # raw frames: NumPy dtype of a stored sample (little-endian)
    file_length: int = 0  # the DICOM file's bytes come first (the CPU reader's input if the decoder refuses)
    score: bool = True  # False: hash only (a QC skip, recorded as not_spine with its content hash)
    offset: int = 0  # where this item's bytes begin in the batch buffer (set by collate)
    n_bytes: int = 0


def _offset_in(view: memoryview, data: bytes) -> int | None:
    """Position of ``view`` inside ``data`` when it is a slice of it (no copy), else None."""
    if not isinstance(view, memoryview) or view.obj is not data:
        return None
    base = np.frombuffer(data, np.uint8).__array_interface__["data"][0]
    return int(np.frombuffer(view, np.uint8).__array_interface__["data"][0] - base)


def prepare_member(
    ctx: MemberContext, name: str, size: int | None, member: Any
) -> tuple[dict | None, GpuItem | np.ndarray | None, bytes | None]:
    """One member to ``(row, item, bytes)``.

    ``item`` is a ``GpuItem`` (row status "gpu": to finish on the device), a preprocessed array
    (status "ready": decoded by the CPU reader here), or None (a final row). ``(None, None, None)``
    for a member skipped before reading.
    """
    if isinstance(member, Exception):
        return (*process_member(ctx, name, size, None, read_error=str(member)), None)
    memo: list = []

    def fp() -> str | None:  # the same cheap change test as the CPU path (score.members.process_entry)
        if not memo:
            try:
                memo.append(member.fingerprint() if callable(getattr(member, "fingerprint", None)) else None)
            except Exception:  # noqa: BLE001 (no fingerprint: the skip falls back to path and size)
                memo.append(None)
        return memo[0]

    if is_done(ctx, name, size, fp):
        return None, None, None
    try:
        data = member.read_bytes()
    except (UserError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return (*process_member(ctx, name, size, None, read_error=reason, fingerprint=fp()), None)
    if not data or not is_dicom_bytes(data):
        return (*process_member(ctx, name, size, data, fingerprint=fp()), None)
    try:
        frame = parse_dicom(data, name)
    except ImageReadError:
        return (*process_member(ctx, name, size, data, fingerprint=fp()), None)
    if frame.kind == "cpu":
        log.debug("%s: CPU reader (%s)", name, frame.reason)
        return (*process_member(ctx, name, size, data, fingerprint=fp()), None)
    meta = dicom_meta(frame.header, name)
    sop = meta.get("sop_instance_uid")
    # stored as its keyed hash unless --store-paths (docs/privacy.md#stored-paths); "_name" (not a result
    # column) keeps the member name for the CPU fallback, in this process only
    row: dict[str, Any] = {
        "run_id": ctx.run_id,
        "source_path": ctx.ref(name),
        "file_size_bytes": size,
        "_name": name,
        "file_fingerprint": fp(),
    }
    from epi_spineage.db.results import now_utc

    row["recorded_at"] = now_utc()
    if ctx.known_sops and sop and sop in ctx.known_sops:
        content_hash, path = ctx.known_sops[sop]
        row.update(
            status="duplicate",
            sop_instance_uid=sop,
            content_hash=content_hash,
            duplicate_of=path,
            qc_reason=f"same SOPInstanceUID as {path}",
            message=f"same SOPInstanceUID as {path} (not decoded)",
        )
        return row, None, None
    meta["modality"] = infer_modality(meta)
    info = frame.info
    # parse_dicom sets info and data on every frame it does not hand to the CPU reader
    assert info is not None and frame.data is not None
    row.update(meta_fields(meta))
    row["rows_px"], row["columns_px"] = info.rows, info.columns
    row["participant_key"] = pseudonymise(meta.get("patient_id"), ctx.key)
    row["key_fingerprint"] = ctx.fingerprint if row["participant_key"] else None
    problem = lateral_spine_problem(meta)
    score = not problem or ctx.include_non_spine
    if problem:
        # Not scored, but hashed as on the CPU path (images.content_hash): decoded on the device all the same.
        row["qc_reason"] = problem if not score else f"scored despite QC (--include-non-spine): {problem}"
    plan = plan_pixels(info)
    modality = meta.get("modality") or "radiograph"
    shape = (info.rows, info.columns)
    if frame.kind == "rle":
        from epi_spineage.imaging.encapsulated import stored_array

        try:
            raw = np.ascontiguousarray(stored_array(frame))
        except Exception:  # noqa: BLE001 (a corrupt RLE frame: the CPU reader reports it as it always has)
            return (*process_member(ctx, name, size, data, fingerprint=fp()), None)
        row["status"] = "gpu"
        item = GpuItem("raw", plan, modality, len(data), raw.nbytes, shape, raw.dtype.str, len(data), score)
        return row, item, data + raw.tobytes()
    stored = frame.data
    offset = _offset_in(stored, data) if isinstance(stored, memoryview) else None
    payload, start = (data, offset) if offset is not None else (data + bytes(stored), len(data))
    row["status"] = "gpu"
    if frame.kind == "native":
        dtype = info.native_dtype()
        return row, GpuItem("raw", plan, modality, start, len(stored), shape, dtype.str, len(data), score), payload
    return row, GpuItem("codestream", plan, modality, start, len(stored), shape, None, len(data), score), payload


class GpuArchiveDataset(ArchiveDataset):
    """``ArchiveDataset`` whose members stop at the header: (row, item, bytes) per member."""

    def __iter__(self):
        produced = 0
        for name, size, member in self.entries():
            row, item, payload = prepare_member(self.ctx, name, size, member)
            if row is None:
                yield {"status": "known"}, None, None
                continue
            yield row, item, payload
            produced += 1
            if self.limit is not None and produced >= self.limit:
                return


def _bucket(n: int) -> int:
    """Buffer sizes in powers of two (>= 1 MiB), so a reused shared buffer fits most batches."""
    return max(1 << 20, 1 << max(0, (n - 1).bit_length()))


def collate_gpu(items):
    """A batch: rows, the GPU items, one uint8 tensor holding every item's bytes, the CPU-decoded
    arrays stacked (or None) with their row positions, and the shared buffer's lease (or None)."""
    import torch

    from epi_spineage.score import dataset

    rows = [row for row, _, _ in items]
    gpu = [(i, item, payload) for i, (_, item, payload) in enumerate(items) if isinstance(item, GpuItem)]
    cpu = [(i, item) for i, (_, item, _) in enumerate(items) if isinstance(item, np.ndarray)]
    total = sum(len(p) for _, _, p in gpu)
    lease = None
    buffer = None
    if gpu:
        if dataset._SHARED is not None:
            lease = dataset._SHARED.take(1, (_bucket(total),), np.uint8)
        buffer = lease.buffer[0] if lease is not None else torch.empty(total, dtype=torch.uint8)
        view = buffer.numpy()
        pos = 0
        for _, item, payload in gpu:
            view[pos : pos + len(payload)] = np.frombuffer(payload, np.uint8)
            item.offset, item.n_bytes = pos, len(payload)
            pos += len(payload)
    cpu_batch = torch.from_numpy(np.stack([a for _, a in cpu])) if cpu else None
    return rows, [(i, item) for i, item, _ in gpu], buffer, [i for i, _ in cpu], cpu_batch, lease


# --------------------------------------------------------------------------------------------
# Main process: decode, finish, preprocess, score, hash


def _hash_when_copied(event: Any, host: Any, plan: PixelPlan) -> str:
    from epi_spineage.imaging.gpu_decode import carrier_to_numpy
    from epi_spineage.imaging.image import content_hash

    if event is not None:
        event.synchronize()
    return content_hash(carrier_to_numpy(host, plan))


def _cpu_fallback(ctx: MemberContext, name: str, size: int | None, data: bytes, fingerprint: str | None = None):
    """The CPU reader for one image the GPU decoder refused (runs in a worker process)."""
    return process_member(ctx, name, size, data, fingerprint=fingerprint)


@dataclass
class _Pending:
    rows: list[dict]
    keep: set[int]  # row positions that belong to this run (the rest: already known, or past --limit)
    scored: list[int]  # row positions that went through the model, in batch order
    hashes: dict[int, Future]  # row position -> content hash (GPU-finished images)
    mean: Any = None
    sd: Any = None
    event: Any = None

    def ready(self) -> bool:
        if self.event is not None and not self.event.query():
            return False
        return all(f.done() for f in self.hashes.values())


@dataclass
class GpuRunCounts:
    """Images the GPU decoder refused (they went to the CPU reader), by reason."""

    n_refused: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class GpuScorer:
    """Batches from ``collate_gpu`` in, finished result rows out (in order, hashes resolved)."""

    def __init__(
        self,
        loaded: Any,
        ctx: MemberContext,
        device: str,
        decoder: CodestreamDecoder,
        provenance: dict,
        seen_hashes: dict,
        *,
        hash_threads: int | None = None,
        fallback_workers: int = 2,
    ):
        import torch

        self.torch = torch
        self.loaded, self.ctx, self.device, self.decoder = loaded, ctx, torch.device(device), decoder
        self.cuda = self.device.type == "cuda"
        self.provenance, self.seen_hashes = provenance, seen_hashes
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        threads = hash_threads or max(2, min(8, (os.cpu_count() or 2) // 2))
        self.hasher = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hash")
        self.fallback_workers = fallback_workers
        self._fallback_pool: ProcessPoolExecutor | None = None
        self.fallbacks: list[tuple[dict, Future]] = []
        self.pending: deque[_Pending] = deque()
        self.counts = GpuRunCounts()
        self.cfg = loaded.preprocess_config

    # -- decode + finish + preprocess ---------------------------------------------------------

    def _stored(self, buffer, items) -> list:
        """Stored samples on the device for each item (None where the decoder refused)."""
        out: list = [None] * len(items)
        streams, where = [], []
        host = buffer.numpy() if buffer is not None else None
        for k, (_, item) in enumerate(items):
            lo = item.offset + item.start
            if item.kind == "codestream":
                assert host is not None  # items come with their buffer
                streams.append(memoryview(host[lo : lo + item.length]))
                where.append(k)
            else:
                raw = buffer[lo : lo + item.length]
                dtype = np.dtype(item.raw_dtype)
                t = raw.to(self.device, non_blocking=self.cuda)
                out[k] = _raw_to_samples(t, dtype, item.shape)
        if streams:
            for k, t in zip(where, self.decoder.decode(streams, self.device)):
                out[k] = t
        return out

    def _refused(self, row: dict, buffer, item: GpuItem, reason: str) -> None:
        """Send one image to the CPU reader in a process pool; it joins a later batch."""
        self.counts.n_refused += 1
        self.counts.reasons[reason] = self.counts.reasons.get(reason, 0) + 1
        data = bytes(buffer.numpy()[item.offset : item.offset + item.file_length])
        if self._fallback_pool is None:
            from epi_spineage.score.pipeline import _mp_context

            self._fallback_pool = ProcessPoolExecutor(self.fallback_workers, mp_context=_mp_context())
        future = self._fallback_pool.submit(
            _cpu_fallback, self.ctx, row["_name"], row.get("file_size_bytes"), data, row.get("file_fingerprint")
        )
        self.fallbacks.append((row, future))

    def submit(self, rows: list[dict], items, buffer, cpu_positions: Sequence[int], cpu_batch, keep: set[int]) -> None:
        """Start one batch: decode, finish and preprocess its GPU items, run the network on them and on
        the CPU-decoded ones (and any finished fallbacks); nothing here waits for the device."""
        from epi_spineage.imaging.gpu_decode import finish_pixels
        from epi_spineage.imaging.preprocess import PreprocessError
        from epi_spineage.imaging.preprocess_torch import preprocess_one

        torch = self.torch
        items = [(i, item) for i, item in items if i in keep]
        inputs, scored, hashes = [], [], {}

        def on_prep_stream():
            return torch.cuda.stream(self.stream) if self.cuda else _nullcontext()

        with on_prep_stream():
            stored = self._stored(buffer, items) if items else []
            for (i, item), samples in zip(items, stored):
                row = rows[i]
                if samples is None:
                    self._refused(row, buffer, item, "decoder refused")
                    row["status"] = "fallback"
                    continue
                try:
                    values, carrier = finish_pixels(samples, item.plan)
                    x = preprocess_one(values, item.modality, self.cfg, self.device) if item.score else None
                except (PreprocessError, ValueError, UserError) as exc:
                    row.update(status="error", error_type="preprocess", message=str(exc)[:500])
                    continue
                host = torch.empty(carrier.shape, dtype=carrier.dtype, pin_memory=self.cuda)
                host.copy_(carrier, non_blocking=self.cuda)
                event = None
                if self.cuda:
                    event = torch.cuda.Event()
                    event.record(self.stream)
                hashes[i] = self.hasher.submit(_hash_when_copied, event, host, item.plan)
                row["decoder"] = self.decoder.name if item.kind == "codestream" else GPU_RAW
                if x is None:
                    row["status"] = "not_spine"
                    continue
                inputs.append(x)
                scored.append(i)
        # CPU-decoded images of this batch, then fallbacks that have finished meanwhile.
        keep = set(keep)
        extra_inputs = []
        if cpu_batch is not None:
            for pos, i in enumerate(cpu_positions):
                if i in keep and rows[i]["status"] == "ready":
                    extra_inputs.append(cpu_batch[pos])
                    scored.append(i)
        done: list[tuple[dict, Future]] = []
        waiting: list[tuple[dict, Future]] = []
        for entry in self.fallbacks:  # one look per future: one finishing meanwhile waits for the next batch
            (done if entry[1].done() else waiting).append(entry)
        self.fallbacks = waiting
        rows = list(rows)
        for original, future in done:
            row, array = _fallback_result(original, future)
            rows.append(row)
            keep.add(len(rows) - 1)
            if array is not None:
                extra_inputs.append(torch.from_numpy(array))
                scored.append(len(rows) - 1)
        pending = _Pending(rows, keep, scored, hashes)
        if scored:
            parts = []
            if inputs:
                with on_prep_stream():  # stacked on the preprocessing stream, which made the inputs
                    parts.append(torch.stack(inputs))
            if self.cuda:
                torch.cuda.current_stream(self.device).wait_stream(self.stream)
                for part in parts:  # used on the model's stream: keep the allocator from reusing it early
                    part.record_stream(torch.cuda.current_stream(self.device))
            if extra_inputs:
                parts.append(torch.stack(extra_inputs).to(self.device, non_blocking=self.cuda))
            batch = torch.cat(parts) if len(parts) > 1 else parts[0]
            pending.mean, pending.sd = self._predict(batch)
            if self.cuda:
                pending.event = torch.cuda.Event()
                pending.event.record()
        self.pending.append(pending)

    def _predict(self, batch):
        from epi_spineage.model.network import logits_to_age

        loaded = self.loaded
        mean, sd = logits_to_age(loaded.logits(batch), loaded.network.ages, loaded.temperature)
        if self.cuda:
            host_mean = torch_empty_pinned(mean)
            host_sd = torch_empty_pinned(sd)
            host_mean.copy_(mean, non_blocking=True)
            host_sd.copy_(sd, non_blocking=True)
            return host_mean, host_sd
        return mean, sd

    # -- results ------------------------------------------------------------------------------

    def finished(self, block: bool = False, max_pending: int | None = None) -> list[list[dict]]:
        """Result rows of the batches whose hashes and scores are in, oldest first; ``block`` waits for
        all, ``max_pending`` for the oldest until no more than that many are left in flight."""
        out = []
        while self.pending and (
            block or self.pending[0].ready() or (max_pending is not None and len(self.pending) > max_pending)
        ):
            p = self.pending.popleft()
            if p.event is not None:
                p.event.synchronize()
            out.append(self._finalise(p))
        return out

    def drain_fallbacks(self) -> bool:
        """Wait for the CPU reader's outstanding images; True when some arrived (score them next)."""
        for _, future in self.fallbacks:
            future.exception()  # waits
        return bool(self.fallbacks)

    def _finalise(self, p: _Pending) -> list[dict]:
        keep = p.keep
        predicted: dict[int, tuple[float, float]] = {}
        if p.mean is not None:
            # _predict sets mean and sd together
            mean, sd = p.mean.double().cpu().numpy(), p.sd.double().cpu().numpy()
            predicted = {i: (float(mean[k]), float(sd[k])) for k, i in enumerate(p.scored)}
        out = []
        for i, row in enumerate(p.rows):
            if i not in keep or row["status"] in ("known", "fallback"):
                continue
            if i in p.hashes:
                row["content_hash"] = p.hashes[i].result()
            if row["status"] in ("gpu", "ready"):
                first = self.seen_hashes.get(row["content_hash"])
                if first is not None and first != row["source_path"]:
                    row.update(status="duplicate", duplicate_of=first, message=f"same pixels as {first}")
                elif i in predicted:
                    self.seen_hashes[row["content_hash"]] = row["source_path"]
                    m, s = predicted[i]
                    row.update(status="scored", spine_age_years=m, spine_age_sd_years=s)
            row.update(self.provenance)
            out.append(row)
        return out

    def close(self) -> None:
        self.hasher.shutdown(wait=True)
        if self._fallback_pool is not None:
            self._fallback_pool.shutdown(wait=True, cancel_futures=True)


def torch_empty_pinned(t):
    import torch

    return torch.empty(t.shape, dtype=t.dtype, pin_memory=True)


def _raw_to_samples(t, dtype: np.dtype, shape: tuple[int, int]):
    """Raw little-endian sample bytes (a uint8 tensor) to a 2-D integer tensor of true values."""
    import torch

    width = dtype.itemsize
    carrier = {1: torch.int8 if dtype.kind == "i" else torch.uint8, 2: torch.int16, 4: torch.int32}[width]
    x = t.view(carrier).reshape(shape)
    if dtype.kind == "u" and width == 2:
        return x.to(torch.int32) & 0xFFFF
    if dtype.kind == "u" and width == 4:
        return x.to(torch.int64) & 0xFFFFFFFF
    return x


def _fallback_result(original: dict, future: Future) -> tuple[dict, np.ndarray | None]:
    try:
        row, array = future.result()
    except Exception as exc:  # noqa: BLE001 (a crashed fallback worker: record the image as an error)
        row = dict(original)
        row.update(status="error", error_type="unreadable", message=f"CPU fallback failed ({type(exc).__name__})")
        return row, None
    if row.get("status") != "ready":
        return row, None
    return row, array


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def score_on_gpu(
    archive_paths: Sequence[str],
    ctx: MemberContext,
    loaded: Any,
    *,
    device: str,
    decoder: CodestreamDecoder,
    batch_size: int,
    workers: int,
    limit: int | None,
    summary: Any,
    committer: Any,
    seen_hashes: dict,
    provenance: dict,
    bar: Any,
) -> tuple[float | None, int]:
    """The GPU scoring loop; fills ``summary`` and feeds ``committer`` like the CPU loop in
    ``score.pipeline``. Returns (time of the first batch, images scored by then)."""
    import torch
    from torch.utils.data import DataLoader

    from epi_spineage.score.dataset import worker_init
    from epi_spineage.score.pipeline import _mp_context

    cuda = torch.device(device).type == "cuda"
    dataset = GpuArchiveDataset(archive_paths, ctx, limit=limit)
    bar.total = dataset.n_members(limit)  # the progress bar's total, for its ETA (epi_spineage.progress)
    prefetch = 2
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_gpu,
        worker_init_fn=functools.partial(worker_init, shared_slots=prefetch + 2) if workers else None,
        pin_memory=cuda,
        prefetch_factor=prefetch if workers else None,
        multiprocessing_context=_mp_context() if workers else None,
    )
    scorer = GpuScorer(loaded, ctx, device, decoder, provenance, seen_hashes)
    t_first, n_first = None, 0
    processed = 0
    held: deque = deque()  # leases of buffers still read by the device (released once their batch is done)

    def commit(batches: list[list[dict]]) -> None:
        nonlocal t_first, n_first
        for batch_rows in batches:
            for row in batch_rows:
                decoder = row.get("decoder") or ""
                summary.n_gpu_decoded += bool(decoder) and not decoder.startswith("cpu:")
                summary.n_cpu_fallback += decoder.startswith("cpu:")
                summary.count(row)
            if batch_rows:
                committer.put(to_table(batch_rows))
            if t_first is None:
                t_first, n_first = time.perf_counter(), summary.n_scored
            else:
                summary.loop_seconds, summary.loop_images = time.perf_counter() - t_first, summary.n_scored - n_first
            bar.set_postfix_str(f"scored={summary.n_scored} errors={summary.n_errors}", refresh=False)

    try:
        for rows, items, buffer, cpu_positions, cpu_batch, lease in loader:
            keep = set()
            for i, row in enumerate(rows):
                summary.n_seen += 1
                if row["status"] == "known":
                    summary.n_skipped_known += 1
                    continue
                if limit is not None and processed >= limit:
                    continue
                processed += 1
                keep.add(i)
            scorer.submit(rows, items, buffer, cpu_positions, cpu_batch, keep)
            commit(scorer.finished(max_pending=3))  # done batches; wait only when the device is 3 behind
            if lease is not None:
                held.append((len(scorer.pending), lease))
            bar.update(len(rows))
            # A worker may reuse a shared buffer once the device has copied out of it.
            while held and len(scorer.pending) < held[0][0]:
                held.popleft()[1].release()
            if limit is not None and processed >= limit:
                break
        commit(scorer.finished(block=True))
        while scorer.drain_fallbacks():
            scorer.submit([], [], None, [], None, set())
            commit(scorer.finished(block=True))
    finally:
        for _, lease in held:
            lease.release()
        scorer.close()
        del loader
    if scorer.counts.n_refused:
        log.warning(
            "%d image(s) went to the CPU reader after the GPU decoder refused them (%s)",
            scorer.counts.n_refused,
            ", ".join(f"{k}: {v}" for k, v in scorer.counts.reasons.items()),
        )
    return t_first, n_first
