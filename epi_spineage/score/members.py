"""One archive member to one result row (plus the model input): decode, QC, pseudonymise, preprocess.

Torch-free, so the DataLoader workers and the Ray workers run the same function. The raw PatientID
lives only inside ``_decode`` and leaves it as a keyed hash; the patient name is never read.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from epi_spineage.db.paths import hash_path, log_safe
from epi_spineage.db.results import meta_fields, now_utc
from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging.gpu_decode import cpu_decoder_name
from epi_spineage.privacy import key_fingerprint, pseudonymise
from epi_spineage.score.qc import classify_read_error, lateral_spine_problem

if TYPE_CHECKING:
    from epi_spineage.imaging.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

_DICM = b"DICM"

#: Default limit on declared rows x columns x frames (real lateral spine radiographs stay under ~20 MP).
DEFAULT_MAX_PIXELS = 50_000_000
_DEFLATED = b"1.2.840.10008.1.2.1.99"


def sniff_kind(data: bytes) -> str | None:
    """What a file that is not an image is (a PDF document, a zip archive, text...), from its first bytes;
    None for what may be an image (DICOM, PNG, JPEG, TIFF, or bytes we cannot name)."""
    head = data[:4096]
    if not head:
        return "an empty file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if len(data) >= 132 and data[128:132] == _DICM:
        return None
    if head.startswith((b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*")):
        return None
    if not data.strip(b"\x00"):
        return "a zero-filled file"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError:
            pass
    return None


def _declared_size(data: bytes, max_bytes: int) -> tuple[int, int] | str | None:
    """(declared pixels, declared bytes) read from the header only, without decoding pixels; a refusal
    reason (str) when even the header would cost more than ``max_bytes``; None when unknown."""
    if len(data) >= 144 and data[128:132] == _DICM:
        head = data[:2048]
        if _DEFLATED in head and data[132:136] == b"\x02\x00\x00\x00":
            # deflated dataset: inflating it is the decode, so bound it before pydicom inflates it whole
            group_len = struct.unpack("<I", data[140:144])[0]
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                inflater.decompress(data[144 + group_len :], max_bytes + 1)
            except zlib.error:
                return None  # the reader reports a corrupt stream with its own message
            if inflater.unconsumed_tail:
                return f"deflated DICOM inflates beyond {max_bytes} bytes (limit --max-megapixels)"
        try:
            import pydicom

            ds = pydicom.dcmread(
                io.BytesIO(data),
                stop_before_pixels=True,
                specific_tags=["Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"],
            )
            rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            frames = int(str(ds.get("NumberOfFrames") or 1) or 1)
            spp, bits = int(ds.get("SamplesPerPixel") or 1), int(ds.get("BitsAllocated") or 16)
        except Exception:  # a broken header is load_image's to report
            return None
        pixels = rows * cols * max(frames, 1)
        return pixels, pixels * max(spp, 1) * max((bits + 7) // 8, 1)
    if data[:4] in (b"\x89PNG", b"II*\x00", b"MM\x00*") or data[:2] == b"\xff\xd8":
        try:
            from PIL import Image

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
                    w, h = im.size
                    frames = int(getattr(im, "n_frames", 1) or 1)
                    bands = len(im.getbands())
        except Exception:
            return None
        return w * h * frames, w * h * frames * bands * 2
    return None


def size_problem(data: bytes, max_pixels: int, max_bytes: int) -> str | None:
    """Why this image is refused before decoding (too many declared pixels or bytes), or None."""
    declared = _declared_size(data, max_bytes)
    if isinstance(declared, str):
        return declared
    if declared is None:
        return None
    pixels, nbytes = declared
    if pixels > max_pixels:
        return (
            f"image declares {pixels / 1e6:.1f} megapixels (rows x columns x frames), over the limit "
            f"{max_pixels / 1e6:g} (--max-megapixels)"
        )
    if nbytes > max_bytes:
        return f"image declares {nbytes} bytes of pixel data, over the limit {max_bytes} (--max-megapixels)"
    return None


@dataclass
class MemberContext:
    """What a worker needs to process members: settings plus what is already done.

    ``done_paths``: stored path -> (file size, file fingerprint); None in either matches anything
    (rows written before fingerprints existed) -- skipped before reading;
    ``known_sops``: SOPInstanceUID -> path already scored, checked on the DICOM header before the
    pixels are decoded. ``store_paths``: keep raw paths (``--store-paths``) instead of keyed hashes.
    ``max_pixels``: refuse, before decoding, images declaring more rows x columns x frames.
    """

    run_id: str
    key: bytes
    preprocess_config: PreprocessConfig | None
    include_non_spine: bool = False
    done_paths: Mapping[str, tuple[int | None, str | None]] = field(default_factory=dict)
    known_sops: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    store_paths: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)

    def ref(self, name: str) -> str:
        """What is stored (and logged) for this path: its keyed hash, or the raw path with --store-paths."""
        return name if self.store_paths else hash_path(name, self.key)

    @property
    def max_decoded_bytes(self) -> int:
        """Bound on the bytes a member may inflate or decode to (6 per allowed pixel: 16-bit RGB)."""
        return int(self.max_pixels) * 6


def _sop_from_header(data: bytes) -> str | None:
    """SOPInstanceUID from the DICOM header only (no pixel decode), or None."""
    if len(data) < 132 or data[128:132] != _DICM:
        return None
    try:
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        value = ds.get("SOPInstanceUID")
        return str(value).strip() or None if value is not None else None
    except Exception:  # a broken header is load_image's to report, with its own message
        return None


def is_done(ctx: MemberContext, name: str, size: int | None, fingerprint=None) -> bool:
    """True when this path was already handled and neither its size nor its cheap fingerprint changed.

    ``fingerprint``: the member's fingerprint, or a callable computing it (called only when the path
    and size match, so a rerun over already-scored files reads at most 2 MiB of each).
    """
    ref = ctx.ref(name)
    if ref not in ctx.done_paths:
        return False
    known = ctx.done_paths[ref]
    known_size, known_fp = known if isinstance(known, tuple) else (known, None)
    if known_size is not None and size is not None and int(known_size) != int(size):
        return False
    if known_fp is None:
        return True  # recorded before fingerprints existed: path and size decide, as they did
    current = fingerprint() if callable(fingerprint) else fingerprint
    return current is None or current == known_fp


def process_member(
    ctx: MemberContext,
    name: str,
    size: int | None,
    data: bytes | None,
    read_error: str | None = None,
    fingerprint: str | None = None,
) -> tuple[dict, np.ndarray | None]:
    """Decode one member's bytes into a result row and, when it should be scored, the model input.

    Row statuses here: ``ready`` (to score; array returned), ``not_spine``, ``duplicate`` (same
    SOPInstanceUID as a scored image), ``error``. The caller turns ``ready`` into ``scored``.
    """
    from epi_spineage.imaging import load_image
    from epi_spineage.imaging.preprocess import preprocess

    ref = ctx.ref(name)
    row = {
        "run_id": ctx.run_id,
        "source_path": ref,
        "file_size_bytes": size,
        "recorded_at": now_utc(),
        "file_fingerprint": fingerprint,
    }
    if read_error is not None or data is None:
        row.update(status="error", error_type="unreadable", message=_scrub(read_error or "could not read", name, ref))
        return row, None
    kind = sniff_kind(data)
    if kind is not None:
        row.update(status="error", error_type="not_an_image", message=f"not an image: {kind}")
        return row, None
    problem = size_problem(data, ctx.max_pixels, ctx.max_decoded_bytes)
    if problem is not None:
        row.update(status="error", error_type="too_large", message=problem)
        return row, None
    if ctx.known_sops:
        sop = _sop_from_header(data)
        # (the same instance at the same path has changed: a corrected re-export, so decode and score it)
        if sop and sop in ctx.known_sops and ctx.known_sops[sop][1] != ref:
            content_hash, path = ctx.known_sops[sop]
            row.update(
                status="duplicate",
                sop_instance_uid=sop,
                content_hash=content_hash,
                duplicate_of=path,
                qc_reason=f"same SOPInstanceUID as {path}",
                message=f"same SOPInstanceUID as {path} (not decoded)",
            )
            return row, None
    try:
        # The reader warns once per image (e.g. "MONOCHROME1 inverted"): normal for a whole archive,
        # so keep them out of the nightly job's stderr and in the debug log instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = load_image(data, name=ref)  # messages and meta name the stored form, never the raw path
        for w in caught:
            log.debug("%s", log_safe(_scrub(str(w.message), name, ref)))
    except ImageReadError as exc:
        row.update(status="error", error_type=classify_read_error(exc.reason), message=_scrub(exc.reason, name, ref))
        return row, None
    except UserError as exc:  # e.g. unsupported transfer syntax reported as a user error
        row.update(status="error", error_type="unreadable", message=_scrub(str(exc), name, ref))
        return row, None
    meta = image.meta
    row.update(meta_fields(meta))
    row["content_hash"] = image.content_hash
    row["decoder"] = cpu_decoder_name(meta.get("format"))  # provenance: scores.decoder
    row["rows_px"], row["columns_px"] = (int(image.pixels.shape[0]), int(image.pixels.shape[1]))
    row["participant_key"] = pseudonymise(meta.get("patient_id"), ctx.key)
    row["key_fingerprint"] = ctx.fingerprint if row["participant_key"] else None
    problem = lateral_spine_problem(meta)
    if problem and not ctx.include_non_spine:
        row.update(status="not_spine", qc_reason=problem)
        return row, None
    if problem:
        row["qc_reason"] = f"scored despite QC (--include-non-spine): {problem}"
    try:
        array = preprocess(image.pixels, modality=meta.get("modality") or "radiograph", config=ctx.preprocess_config)
    except (UserError, ValueError) as exc:
        row.update(status="error", error_type="preprocess", message=str(exc)[:500])
        return row, None
    row["status"] = "ready"
    return row, np.ascontiguousarray(array, dtype=np.float32)


def _scrub(message: str, name: str, ref: str) -> str:
    """A message with the raw path (and its archive and member parts) replaced by the stored form."""
    from epi_spineage.imaging.archive import SEP

    text = str(message)
    if name == ref:
        return text[:500]
    parts = [name, *name.split(SEP)]
    for part in sorted({p for p in parts if p}, key=len, reverse=True):
        text = text.replace(part, ref)
    return text[:500]


def iter_members(
    archives: Sequence[str], *, shard: int = 0, n_shards: int = 1
) -> Iterator[tuple[str, int | None, object]]:
    """(name, size, member-or-error) for every file of every archive, keeping every n-th from ``shard``.

    An archive that breaks part-way (a truncated tar) yields one error entry for the archive and the
    walk goes on with the next archive. Members refused on their own (too large, tar links and
    devices) come as members whose read fails, so each gets its own error row.
    """
    from epi_spineage.imaging import iter_archive
    from epi_spineage.imaging.archive import ArchiveRefused

    index = 0
    for archive in archives:
        try:
            for member in iter_archive(archive, odd_members=True):
                if index % n_shards == shard:
                    yield member.name, member.size, member
                index += 1
        except UserError as exc:
            if index % n_shards == shard:
                # the reason only: the full message names the archive and the member
                yield os.fspath(archive), None, (UserError(exc.reason) if isinstance(exc, ArchiveRefused) else exc)
            index += 1


def process_entry(ctx: MemberContext, name: str, size: int | None, member) -> tuple[dict | None, np.ndarray | None]:
    """Skip done paths without reading them; otherwise read and ``process_member``.

    Never raises for one member: anything a member does (MemoryError included) becomes its error row,
    so no single file can fail a run.
    """
    if isinstance(member, Exception):
        return process_member(ctx, name, size, None, read_error=str(member))
    fingerprint = getattr(member, "fingerprint", None)
    memo: list = []

    def fp() -> str | None:
        if not memo:
            try:
                memo.append(fingerprint() if callable(fingerprint) else None)
            except Exception:
                memo.append(None)
        return memo[0]

    if is_done(ctx, name, size, fp):
        return None, None
    try:
        try:
            data = member.read_bytes()
        except (UserError, ImageReadError, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            return process_member(ctx, name, size, None, read_error=reason, fingerprint=fp())
        return process_member(ctx, name, size, data, fingerprint=fp())
    except (MemoryError, Exception) as exc:  # noqa: BLE001 - one member must never end the run
        row = {
            "run_id": ctx.run_id,
            "source_path": ctx.ref(name),
            "file_size_bytes": size,
            "recorded_at": now_utc(),
            "status": "error",
            "error_type": "unreadable",
            "file_fingerprint": fp(),
            "message": _scrub(f"failed while decoding ({type(exc).__name__}: {exc})", name, ctx.ref(name)),
        }
        return row, None
