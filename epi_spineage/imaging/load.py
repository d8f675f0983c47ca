"""``load_image``: a path, bytes or an ``"ARCHIVE::MEMBER"`` reference to a ``LoadedImage``."""

from __future__ import annotations

import os
from typing import Any

from epi_spineage.errors import ImageReadError

from .archive import ArchiveMember, read_reference
from .dicom import is_dicom_bytes, read_dicom
from .image import LoadedImage, content_hash, infer_modality
from .raster import read_raster, sniff_raster


def load_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | ArchiveMember,
    *,
    name: str | None = None,
    apply_voi_lut: bool = False,
) -> LoadedImage:
    """Read a DICOM, PNG, JPEG or TIFF image.

    ``source`` is a path, the file's bytes, a manifest reference ``"ARCHIVE::MEMBER"``, or an
    ``ArchiveMember`` from ``iter_archive`` (its bytes are used, no second read); ``name``
    labels bytes in messages and ``meta["source"]``. The format is sniffed from the content, not
    the suffix. ``apply_voi_lut`` applies the DICOM VOI LUT / window to ``pixels`` (float32); the
    content hash always covers the modality values, so it does not depend on that choice.

    Raises ``ImageReadError`` (naming the file) for anything that is not a readable image.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
    elif isinstance(source, ArchiveMember):
        data = source.read_bytes()
        label = name or source.name
    else:
        label = name or os.fspath(source)
        data = read_reference(source)
    if not data:
        raise ImageReadError(label, "empty file (0 bytes)")
    # A Part 10 preamble is arbitrary bytes (some files put a TIFF header there): DICM wins.
    fmt = None if is_dicom_bytes(data) else sniff_raster(data)
    if fmt is not None:
        pixels, meta = read_raster(data, label, fmt)
        hash_pixels = pixels
    else:
        # DICOM with a preamble, or a bare dataset without one (older files): pydicom decides.
        pixels, hash_pixels, meta = read_dicom(data, label, apply_voi_lut=apply_voi_lut)
    meta["modality"] = infer_modality(meta)
    return LoadedImage(pixels=pixels, meta=meta, content_hash=content_hash(hash_pixels))


def header_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without the patient identifier, safe to log or store."""
    return {k: v for k, v in meta.items() if k != "patient_id"}
