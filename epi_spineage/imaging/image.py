"""The loaded-image record, its content hash, and modality inference from the header."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_HASH_TAG = b"epi_spineage.pixels.v1"
_VFA_TOKENS = {"VFA", "IVA", "LVA"}
_RADIOGRAPH_MODALITIES = {"DX", "CR", "RF"}


def content_hash(pixels: np.ndarray) -> str:
    """SHA-256 (hex) of the pixel values with their shape and dtype.

    Byte order is normalised to little-endian, so the same image stored big-endian, little-endian,
    uncompressed or losslessly compressed, or under two names, hashes the same.
    """
    arr = np.asarray(pixels)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(_HASH_TAG)
    h.update(f"|{arr.dtype.newbyteorder('<').str}|{tuple(int(s) for s in arr.shape)}|".encode())
    h.update(memoryview(arr).cast("B"))  # type: ignore[arg-type]  # numpy's stubs: ndarray is a buffer
    return h.hexdigest()


def _tokens(text: Any) -> set[str]:
    if text is None:
        return set()
    if isinstance(text, (list, tuple)):
        text = "\\".join(str(t) for t in text)
    return set(re.split(r"[^A-Z0-9]+", str(text).upper())) - {""}


def infer_modality(meta: Mapping[str, Any]) -> str | None:
    """``"vfa"``, ``"radiograph"`` or None from DICOM header fields in ``meta``.

    VFA: DICOM Modality "BMD", or the words VFA / IVA / LVA in SeriesDescription or ImageType
    (whole words, so "DERIVATIVE" does not count as IVA). Radiograph: Modality DX, CR or RF.
    """
    dicom_modality = (meta.get("dicom_modality") or "").strip().upper()
    words = _tokens(meta.get("series_description")) | _tokens(meta.get("image_type"))
    if dicom_modality == "BMD" or words & _VFA_TOKENS:
        return "vfa"
    if dicom_modality in _RADIOGRAPH_MODALITIES:
        return "radiograph"
    return None


@dataclass(frozen=True)
class LoadedImage:
    """Decoded pixels (2-D, MONOCHROME2, modality LUT applied), header fields, content hash.

    ``meta["patient_id"]`` is for in-memory pseudonymisation only: the repr leaves ``meta`` out
    so an identifier never reaches a log by accident.
    """

    pixels: np.ndarray = field(repr=False, compare=False)
    meta: dict = field(repr=False, compare=False)
    content_hash: str

    @property
    def source(self) -> str:
        return self.meta.get("source", "")

    @property
    def modality(self) -> str | None:
        return self.meta.get("modality")

    def __repr__(self) -> str:
        return (
            f"LoadedImage(source={self.source!r}, format={self.meta.get('format')!r}, "
            f"shape={tuple(self.pixels.shape)}, dtype={self.pixels.dtype}, "
            f"modality={self.modality!r}, content_hash={self.content_hash[:12]!r}...)"
        )
