"""Read PNG, JPEG and TIFF (8 and 16 bit) into a 2-D grey array.

OpenCV decodes all three with ``IMREAD_UNCHANGED`` (keeping 16-bit depth); tifffile covers the
TIFF variants OpenCV refuses (float samples, unusual compressions, multi-page), and Pillow is the
last resort. Colour is converted to grey with a warning; an alpha channel is dropped.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np

from epi_spineage.errors import ImageReadError

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "tiff",  # BigTIFF
    b"MM\x00+": "tiff",
}


def sniff_raster(data: bytes) -> str | None:
    """ "png", "jpeg" or "tiff" from the file's first bytes, else None."""
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            return fmt
    return None


def _rgb_to_grey(arr: np.ndarray, bgr: bool) -> np.ndarray:
    channels = arr[..., :3].astype(np.float64)
    weights = np.array([0.114, 0.587, 0.299]) if bgr else np.array([0.299, 0.587, 0.114])
    grey = channels @ weights
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(arr.dtype)
    return grey.astype(np.float32)


def _decode_cv2(data: bytes) -> np.ndarray | None:
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    # OpenCV logs decoder errors to stderr itself; we report them as ImageReadError instead.
    quiet = getattr(getattr(cv2, "utils", None), "logging", None)
    level = quiet.getLogLevel() if quiet else None
    try:
        if quiet:
            quiet.setLogLevel(quiet.LOG_LEVEL_SILENT)
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        if quiet:
            quiet.setLogLevel(level)


def _decode_tifffile(data: bytes) -> np.ndarray | None:
    try:
        import tifffile
    except ImportError:
        return None
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its complaints about a bad file become our one error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                pages = len(tif.pages)
                arr = tif.pages[0].asarray()
    except Exception:  # tifffile raises many types on bad input
        return None
    finally:
        logger.setLevel(level)
    if pages > 1:
        warnings.warn("multi-page TIFF; using the first page", stacklevel=4)
    return arr


def _decode_pil(data: bytes) -> np.ndarray | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return np.asarray(img)
    except Exception:
        return None


def read_raster(data: bytes, source: str, fmt: str | None = None) -> tuple[np.ndarray, dict]:
    """Decode PNG/JPEG/TIFF bytes; returns ``(pixels, meta)`` with the package's meta keys."""
    if not data:
        raise ImageReadError(source, "empty file (0 bytes)")
    fmt = fmt or sniff_raster(data)
    if fmt is None:
        raise ImageReadError(source, "not a DICOM, PNG, JPEG or TIFF file")
    arr = _decode_cv2(data)
    bgr = arr is not None
    if arr is None and fmt == "tiff":
        arr = _decode_tifffile(data)
    if arr is None:
        arr = _decode_pil(data)
    if arr is None or arr.size == 0:
        raise ImageReadError(source, f"cannot decode {fmt.upper()} data (truncated or corrupt)")
    arr = np.asarray(arr)
    photometric = "MONOCHROME2"
    if arr.ndim == 3 and arr.shape[2] in (1, 2):  # grey, or grey + alpha
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        grey3 = np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])
        if arr.shape[2] == 4 or not grey3:
            warnings.warn(f"{source}: colour {fmt.upper()} converted to grey", stacklevel=3)
            photometric = "RGB"
            arr = _rgb_to_grey(arr, bgr)
        else:  # a grey image saved as three equal channels: no conversion, no warning
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise ImageReadError(source, f"unsupported {fmt.upper()} layout with shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ImageReadError(source, "image holds NaN or infinite values")
    meta = {
        "source": source,
        "format": fmt,
        "sop_instance_uid": None,
        "sop_class_uid": None,
        "patient_id": None,
        "photometric_interpretation": photometric,
        "bits_stored": int(arr.dtype.itemsize * 8),
        "dicom_modality": None,
        "manufacturer": None,
        "study_date": None,
        "pixel_spacing": None,
        "view_position": None,
        "body_part_examined": None,
        "series_description": None,
        "image_type": None,
        "transfer_syntax_uid": None,
        "number_of_frames": 1,
    }
    return np.ascontiguousarray(arr), meta
