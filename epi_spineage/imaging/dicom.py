"""Read one DICOM image into MONOCHROME2 pixels with the modality LUT applied.

The pixel convention (one for the whole package): 2-D array, larger value = brighter (denser)
on screen, in modality units (RescaleSlope/Intercept applied). MONOCHROME1 is inverted with a
warning; colour is converted to grey with a warning; only the first frame of a multi-frame object
is kept, with a warning. Anything unreadable becomes ``ImageReadError`` naming the file, so one bad
file never ends a batch.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from epi_spineage.errors import ImageReadError

# ITU-R BT.601 luma, the weights OpenCV and PIL use for RGB -> grey.
_LUMA = np.array([0.299, 0.587, 0.114])


def _reason(exc: BaseException) -> str:
    """One line, however chatty the decoder's message (some plugins list every attempt)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def is_dicom_bytes(data: bytes) -> bool:
    """True when the Part 10 preamble marker ``DICM`` sits at byte 128."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    return text or None


def _int(ds: Any, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _spacing(ds: Any) -> tuple[float, float] | None:
    # Projection radiographs often carry only ImagerPixelSpacing (at the detector).
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None:
            try:
                row, col = (float(v) for v in value)
                return (row, col)
            except (TypeError, ValueError):
                continue
    return None


def dicom_meta(ds: Any, source: str) -> dict[str, Any]:
    """The header fields the package keeps. ``patient_id`` must stay in memory only."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = None
    if file_meta is not None and "TransferSyntaxUID" in file_meta:
        tsyntax = str(file_meta.TransferSyntaxUID)
    return {
        "source": source,
        "format": "dicom",
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "patient_id": _text(ds, "PatientID"),
        "photometric_interpretation": _text(ds, "PhotometricInterpretation"),
        "bits_stored": _int(ds, "BitsStored"),
        "dicom_modality": _text(ds, "Modality"),
        "manufacturer": _text(ds, "Manufacturer"),
        "study_date": _text(ds, "StudyDate"),
        "pixel_spacing": _spacing(ds),
        "view_position": _text(ds, "ViewPosition"),
        "body_part_examined": _text(ds, "BodyPartExamined"),
        "series_description": _text(ds, "SeriesDescription"),
        "image_type": _text(ds, "ImageType"),
        "transfer_syntax_uid": tsyntax,
        "number_of_frames": _int(ds, "NumberOfFrames") or 1,
    }


def _stored_range(ds: Any) -> tuple[int, int]:
    bits = _int(ds, "BitsStored") or _int(ds, "BitsAllocated") or 16
    if _int(ds, "PixelRepresentation") == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _mask_unused_bits(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Ignore bits above BitsStored (PS3.5 8.1.1: their content is undefined).

    pydicom 3 already does this for native data; JPEG decoders emit the codestream precision.
    This guard costs one min/max and only copies when a value is out of range.
    """
    if arr.dtype.kind not in "iu":
        return arr
    bits = _int(ds, "BitsStored")
    if not bits or bits >= arr.dtype.itemsize * 8:
        return arr
    lo, hi = _stored_range(ds)
    if arr.size and lo <= int(arr.min()) and int(arr.max()) <= hi:
        return arr
    shift = arr.dtype.itemsize * 8 - bits
    out = np.array(arr, copy=True)
    if arr.dtype.kind == "u":
        out &= np.array((1 << bits) - 1, dtype=arr.dtype)
    else:  # sign-extend from bit `bits - 1`
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)
    return out


def _smallest_int_dtype(lo: float, hi: float) -> np.dtype | None:
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return None


def _is_integral(value: Any) -> bool:
    return float(value) == int(float(value))


def apply_modality(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, tuple[float, float]]:
    """Modality LUT via pydicom, keeping an integer dtype when slope and intercept are integers.

    Returns the array and the range its values can take (used to invert MONOCHROME1 so that the
    inversion does not depend on the image content).
    """
    from pydicom.pixels import apply_modality_lut

    lo, hi = _stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        out = apply_modality_lut(arr, ds)
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return out, (0.0, float(2**depth - 1))
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        ends = sorted((lo * slope + intercept, hi * slope + intercept))
        if slope == 1.0 and intercept == 0.0:
            return arr, (float(lo), float(hi))
        out = apply_modality_lut(arr, ds)
        if _is_integral(slope) and _is_integral(intercept):
            dtype = _smallest_int_dtype(*ends)
            if dtype is not None:
                return np.rint(out).astype(dtype), (ends[0], ends[1])
        return out.astype(np.float32), (ends[0], ends[1])
    return arr, (float(lo), float(hi))


def invert(arr: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Mirror values inside their possible range, keeping the dtype (MONOCHROME1 -> 2)."""
    lo, hi = value_range
    if arr.dtype.kind in "iu":
        out = (int(lo) + int(hi)) - arr.astype(np.int64)
        return out.astype(arr.dtype)
    return (np.float32(lo + hi) - arr).astype(arr.dtype, copy=False)


def to_grey(arr: np.ndarray) -> np.ndarray:
    """RGB (..., 3) to grey with BT.601 weights, back in the input's dtype."""
    grey = arr[..., :3].astype(np.float64) @ _LUMA
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(arr.dtype)
    return grey.astype(arr.dtype)


def read_dicom(data: bytes, source: str, *, apply_voi_lut: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Decode DICOM bytes.

    Returns ``(pixels, hash_pixels, meta)``: ``hash_pixels`` are the MONOCHROME2 modality values
    (what the content hash covers); ``pixels`` equal them unless ``apply_voi_lut`` asked for the
    VOI LUT / window, in which case they are float32 in the window's output range.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ImageReadError(source, "empty file (0 bytes)")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not is_dicom_bytes(data))
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, OSError) as exc:
        raise ImageReadError(source, f"not a readable DICOM file ({_reason(exc)})") from None
    except Exception as exc:  # pydicom raises a variety of errors on garbage bytes
        raise ImageReadError(source, f"not a readable DICOM file ({_reason(exc)})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if not is_dicom_bytes(data) and len(ds) == 0:
            raise ImageReadError(source, "not a DICOM, PNG, JPEG or TIFF file")
        raise ImageReadError(source, "DICOM object has no pixel data (not an image)")
    rows, cols = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    if rows <= 0 or cols <= 0:
        raise ImageReadError(source, f"DICOM image has zero size ({rows} x {cols})")

    meta = dicom_meta(ds, source)
    frames = meta["number_of_frames"]
    try:
        if frames > 1:
            warnings.warn(f"{source}: multi-frame DICOM ({frames} frames); using the first frame", stacklevel=3)
            ds.pixel_array_options(index=0)
        arr = ds.pixel_array
    except Exception as exc:  # truncated data, missing decoder, corrupt codestream
        raise ImageReadError(source, f"cannot decode pixel data ({_reason(exc)})") from None
    arr = np.asarray(arr)
    photometric = (meta["photometric_interpretation"] or "MONOCHROME2").upper()
    samples = _int(ds, "SamplesPerPixel") or 1

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        warnings.warn(f"{source}: PALETTE COLOR DICOM converted to grey", stacklevel=3)
        arr = to_grey(apply_color_lut(arr, ds))
        value_range = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        hash_pixels = arr
    elif samples > 1 or arr.ndim == 3:
        # pydicom already converted YBR to RGB for us (pixel_array's default as_rgb=True).
        warnings.warn(f"{source}: colour DICOM ({photometric}) converted to grey", stacklevel=3)
        arr = to_grey(arr)
        hash_pixels, value_range = apply_modality(_mask_unused_bits(arr, ds), ds)
    else:
        hash_pixels, value_range = apply_modality(_mask_unused_bits(arr, ds), ds)

    if hash_pixels.ndim != 2 or hash_pixels.size == 0:
        raise ImageReadError(source, f"unexpected pixel array shape {hash_pixels.shape}")
    monochrome1 = photometric == "MONOCHROME1"
    modality_values = hash_pixels
    if monochrome1:
        warnings.warn(f"{source}: MONOCHROME1 inverted to MONOCHROME2", stacklevel=3)
        hash_pixels = invert(hash_pixels, value_range)

    pixels = hash_pixels
    if apply_voi_lut and ("WindowCenter" in ds or ds.get("VOILUTSequence")):
        from pydicom.pixels import apply_voi_lut as _voi

        voi = np.asarray(_voi(modality_values, ds), dtype=np.float64)
        if monochrome1:
            if ds.get("VOILUTSequence"):
                out_range = (0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1))
            else:
                out_range = value_range
            voi = out_range[0] + out_range[1] - voi
        pixels = voi.astype(np.float32)
    return np.ascontiguousarray(pixels), np.ascontiguousarray(hash_pixels), meta
