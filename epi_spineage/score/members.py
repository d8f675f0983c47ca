"""One archive member to one result row (plus the model input): decode, QC, pseudonymise, preprocess.

Torch-free, so the DataLoader workers and the Ray workers run the same function. The raw PatientID
lives only inside ``_decode`` and leaves it as a keyed hash; the patient name is never read.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from epi_spineage.db.results import meta_fields, now_utc
from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging.gpu_decode import cpu_decoder_name
from epi_spineage.privacy import key_fingerprint, pseudonymise
from epi_spineage.score.qc import classify_read_error, lateral_spine_problem

log = logging.getLogger(__name__)

_DICM = b"DICM"


@dataclass
class MemberContext:
    """What a worker needs to process members: settings plus what is already done.

    ``done_paths``: path -> file size (None matches any size) to skip before reading;
    ``known_sops``: SOPInstanceUID -> path already scored, checked on the DICOM header before the
    pixels are decoded.
    """

    run_id: str
    key: bytes
    preprocess_config: object
    include_non_spine: bool = False
    done_paths: Mapping[str, int | None] = field(default_factory=dict)
    known_sops: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)


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


def is_done(ctx: MemberContext, name: str, size: int | None) -> bool:
    """True when this path was already handled and its size has not changed."""
    if name not in ctx.done_paths:
        return False
    known = ctx.done_paths[name]
    return known is None or size is None or int(known) == int(size)


def process_member(ctx: MemberContext, name: str, size: int | None, data: bytes | None,
                   read_error: str | None = None) -> tuple[dict, np.ndarray | None]:
    """Decode one member's bytes into a result row and, when it should be scored, the model input.

    Row statuses here: ``ready`` (to score; array returned), ``not_spine``, ``duplicate`` (same
    SOPInstanceUID as a scored image), ``error``. The caller turns ``ready`` into ``scored``.
    """
    from epi_spineage.imaging import load_image
    from epi_spineage.imaging.preprocess import preprocess

    row = {"run_id": ctx.run_id, "source_path": name, "file_size_bytes": size, "recorded_at": now_utc()}
    if read_error is not None or data is None:
        row.update(status="error", error_type="unreadable", message=read_error or "could not read")
        return row, None
    if ctx.known_sops:
        sop = _sop_from_header(data)
        if sop and sop in ctx.known_sops:
            content_hash, path = ctx.known_sops[sop]
            row.update(status="duplicate", sop_instance_uid=sop, content_hash=content_hash, duplicate_of=path,
                       qc_reason=f"same SOPInstanceUID as {path}",
                       message=f"same SOPInstanceUID as {path} (not decoded)")
            return row, None
    try:
        # The reader warns once per image (e.g. "MONOCHROME1 inverted"): normal for a whole archive,
        # so keep them out of the nightly job's stderr and in the debug log instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = load_image(data, name=name)
        for w in caught:
            log.debug("%s", w.message)
    except ImageReadError as exc:
        row.update(status="error", error_type=classify_read_error(exc.reason), message=exc.reason)
        return row, None
    except UserError as exc:  # e.g. unsupported transfer syntax reported as a user error
        row.update(status="error", error_type="unreadable", message=str(exc).replace(name, "<file>"))
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


def iter_members(archives: Sequence[str], *, shard: int = 0, n_shards: int = 1) -> Iterator[tuple[str, int | None, object]]:
    """(name, size, member-or-error) for every file of every archive, keeping every n-th from ``shard``.

    An archive that breaks part-way (a truncated tar) yields one error entry for the archive and the
    walk goes on with the next archive.
    """
    from epi_spineage.imaging import iter_archive

    index = 0
    for archive in archives:
        try:
            for member in iter_archive(archive):
                if index % n_shards == shard:
                    yield member.name, member.size, member
                index += 1
        except UserError as exc:
            if index % n_shards == shard:
                yield os.fspath(archive), None, exc
            index += 1


def process_entry(ctx: MemberContext, name: str, size: int | None, member) -> tuple[dict | None, np.ndarray | None]:
    """Skip done paths without reading them; otherwise read and ``process_member``."""
    if isinstance(member, Exception):
        return process_member(ctx, name, size, None, read_error=str(member))
    if is_done(ctx, name, size):
        return None, None
    try:
        data = member.read_bytes()
    except (UserError, OSError) as exc:
        return process_member(ctx, name, size, None, read_error=str(exc))
    return process_member(ctx, name, size, data)
