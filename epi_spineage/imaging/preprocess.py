"""The model-input transform, exactly as docs/methods.md#preprocessing defines it (NumPy + OpenCV).

1. Histogram equalisation. ``authors`` (default, the published pipeline): min-max the stored values
   to 0..255, truncate to uint8, then ``cv2.equalizeHist``. ``full``: the same cumulative-histogram
   mapping on the full bit depth (no 8-bit quantisation).
2. Min-max to [0, 1] (a constant image gives zeros).
3. Margin crop, radiographs only by default: ``margin_crop_area`` of the *area* removed equally from
   the four sides (each side ``(1 - sqrt(1 - area)) / 2``, 1.27 % for 5 %), rounded to whole pixels.
4. Aspect-preserving resize with the authors' integer arithmetic (``fit_size``), bilinear
   ``cv2.resize``, centred on a zero canvas at ``(int((H-h)/2), int((W-w)/2))``.

Output: float32 ``(1, H, W)``. The transform is pointwise until the crop, so for integer images it
runs as one lookup table over the stored values (the histogram is taken once), applied to the
cropped region only; ``tests/imaging`` checks it equals the step-by-step reference bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from epi_spineage.errors import UserError

EQUALIZATIONS = ("authors", "full")
MODALITIES = ("radiograph", "vfa")
INTERPOLATIONS = ("bilinear",)
# Integer images whose value range fits this many entries use the lookup-table path.
_MAX_LUT = 1 << 22


class PreprocessError(UserError, ValueError):
    """A bad preprocessing setting or input array."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing settings; travels with model weights (``to_dict`` / ``config_hash``)."""

    height: int = 1024
    width: int = 512
    equalization: str = "authors"
    margin_crop_area: float = 0.05
    crop_modalities: tuple[str, ...] = ("radiograph",)
    apply_voi_lut: bool = False
    interpolation: str = "bilinear"

    def __post_init__(self):
        mods = self.crop_modalities
        if isinstance(mods, str):
            mods = (mods,)
        object.__setattr__(self, "crop_modalities", tuple(mods))
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 8:
                raise PreprocessError(f"PreprocessConfig.{name} must be an integer >= 8, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.equalization not in EQUALIZATIONS:
            raise PreprocessError(
                f"PreprocessConfig.equalization must be one of {EQUALIZATIONS}, got {self.equalization!r}"
            )
        area = self.margin_crop_area
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not 0.0 <= float(area) < 0.5:
            raise PreprocessError(f"PreprocessConfig.margin_crop_area must be in [0, 0.5), got {area!r}")
        object.__setattr__(self, "margin_crop_area", float(area))
        bad = [m for m in self.crop_modalities if m not in MODALITIES]
        if bad:
            raise PreprocessError(f"PreprocessConfig.crop_modalities must be among {MODALITIES}, got {bad}")
        if not isinstance(self.apply_voi_lut, bool):
            raise PreprocessError(f"PreprocessConfig.apply_voi_lut must be True or False, got {self.apply_voi_lut!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(
                f"PreprocessConfig.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )

    @property
    def crop_side_fraction(self) -> float:
        """Fraction of height (and of width) removed from each side."""
        return (1.0 - math.sqrt(1.0 - self.margin_crop_area)) / 2.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop_modalities"] = list(self.crop_modalities)
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): what ``config_hash`` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of ``to_dict``; unknown keys are refused (a newer config must not be misread)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PreprocessError(f"unknown PreprocessConfig field(s): {', '.join(unknown)}")
        return cls(**dict(d))

    def config_hash(self) -> str:
        """SHA-256 hex of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def make_preprocess_config(
    value: PreprocessConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> PreprocessConfig:
    """A ``PreprocessConfig`` from None (defaults), a dict, or a config; ``overrides`` that are not None replace
    fields. The config travels with a model's weights (its checkpoint), so the scorer preprocesses as training did."""
    if value is None:
        base = PreprocessConfig().to_dict()
    elif isinstance(value, Mapping):
        base = dict(value)
    else:
        base = value.to_dict()
    base.update({k: v for k, v in overrides.items() if v is not None})
    return PreprocessConfig.from_dict(base)


def preprocess_hash(value: PreprocessConfig | Mapping[str, Any] | str | None) -> str:
    """Hash of a config, a config dict, or a hash string (returned as is)."""
    if isinstance(value, str):
        return value
    return make_preprocess_config(value).config_hash()


# --- the size arithmetic ------------------------------------------------------------------------


def fit_size(h: int, w: int, height: int = 1024, width: int = 512) -> tuple[int, int]:
    """The resized ``(h, w)``: the authors' integer arithmetic, generalised from 1024 x 512.

    If w > h: w = width, h = int(h*width/w). Otherwise h = height, w = int(w*height/h), and if
    w > width: w = width, h = int(h*width/w) (with the *original* h and w). Python true division
    and truncation, as in the authors' code. Two guards the default size never reaches: a result
    taller than ``height`` (possible only when height < width) is refitted to the height, and no
    side drops below one pixel.
    """
    if w > h:
        nw, nh = width, int(h * width / w)
    else:
        nh, nw = height, int(w * height / h)
        if nw > width:
            nw, nh = width, int(h * width / w)
    if nh > height:
        nh, nw = height, int(w * height / h)
    return max(nh, 1), max(nw, 1)


def crop_box(h: int, w: int, area: float) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the margin crop removing ``area`` of the image."""
    if area <= 0:
        return 0, h, 0, w
    f = (1.0 - math.sqrt(1.0 - area)) / 2.0
    dy, dx = int(round(h * f)), int(round(w * f))
    dy, dx = min(dy, (h - 1) // 2), min(dx, (w - 1) // 2)
    return dy, h - dy, dx, w - dx


def place_on_canvas(resized: np.ndarray, height: int, width: int) -> np.ndarray:
    nh, nw = resized.shape
    canvas = np.zeros((height, width), dtype=np.float32)
    y0, x0 = int((height - nh) / 2), int((width - nw) / 2)
    canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
    return canvas


def resize_pad(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear ``cv2.resize`` to ``fit_size`` and centre on a zero ``height x width`` canvas."""
    import cv2

    nh, nw = fit_size(x.shape[0], x.shape[1], height, width)
    src = np.ascontiguousarray(x, dtype=np.float32)
    resized = src if (nh, nw) == src.shape else cv2.resize(src, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return place_on_canvas(resized, height, width)


# --- intensity steps (reference, one step each) -------------------------------------------------


def _check_pixels(pixels: Any) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise PreprocessError(f"preprocess expects a 2-D grey image, got shape {a.shape}")
    if a.size == 0:
        raise PreprocessError("preprocess got an empty image")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "iuf":
        raise PreprocessError(f"preprocess expects numeric pixels, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise PreprocessError("preprocess got NaN or infinite pixel values")
    return a


def _min_max(a: np.ndarray) -> tuple[Any, Any]:
    if a.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64) and a.flags.c_contiguous:
        import cv2

        lo, hi, _, _ = cv2.minMaxLoc(a)
        if a.dtype.kind in "iu":
            return int(lo), int(hi)
        return lo, hi
    lo, hi = a.min(), a.max()
    return (int(lo), int(hi)) if a.dtype.kind in "iu" else (float(lo), float(hi))


def to_uint8(a: np.ndarray) -> np.ndarray:
    """The authors' 8-bit rule: ``floor((a - min) * 255 / (max - min))`` as uint8 (constant -> 0).

    Integer images use exact integer arithmetic; float images float64.
    """
    a = _check_pixels(a)
    lo, hi = _min_max(a)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    if a.dtype.kind in "iu":
        return ((a.astype(np.int64) - lo) * 255 // (hi - lo)).astype(np.uint8)
    scaled = np.floor((a.astype(np.float64) - lo) * (255.0 / (hi - lo)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def equalize_lut_u8(hist: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist``'s lookup table from a 256-bin histogram (bit-exact float32 maths)."""
    hist = np.asarray(hist, dtype=np.int64)
    total = int(hist.sum())
    nz = np.flatnonzero(hist)
    lut = np.zeros(256, dtype=np.uint8)
    if nz.size == 0:
        return lut
    first = int(nz[0])
    if hist[first] == total:
        lut[:] = first
        return lut
    scale = np.float32(255.0) / np.float32(total - hist[first])
    sums = np.cumsum(hist[first + 1 :]).astype(np.float32)
    lut[first + 1 :] = np.clip(np.rint(sums * scale), 0, 255).astype(np.uint8)
    return lut


def equalize_authors(a: np.ndarray) -> np.ndarray:
    """uint8 equalised image: ``cv2.equalizeHist(to_uint8(a))``."""
    import cv2

    return cv2.equalizeHist(to_uint8(a))


def equalize_full(a: np.ndarray) -> np.ndarray:
    """Full-bit-depth equalisation: ``(cdf(v) - cdf(min)) / (N - cdf(min))`` as float32.

    The same mapping as ``equalizeHist`` without rounding to 256 levels: the smallest value goes
    to 0, the largest to 1 (a constant image to 0).
    """
    a = _check_pixels(a)
    values, inverse, counts = np.unique(a.ravel(), return_inverse=True, return_counts=True)
    lut = _cdf_lut(counts)
    return lut[inverse].reshape(a.shape)


def _cdf_lut(counts: np.ndarray) -> np.ndarray:
    """Cumulative-histogram LUT: present minimum -> 0, maximum -> 1 (all zeros if constant)."""
    counts = np.asarray(counts, dtype=np.int64)
    lut = np.zeros(counts.shape, dtype=np.float32)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return lut
    cdf = np.cumsum(counts)
    c0, total = int(cdf[nz[0]]), int(cdf[-1])
    if total == c0:
        return lut
    return np.clip((cdf - c0) / float(total - c0), 0.0, None).astype(np.float32)


def minmax01(x: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min)`` in float32; a constant image gives zeros."""
    x = np.asarray(x)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float32)
    return (x.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)


def _minmax_lut(lut: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``minmax01`` folded into a lookup table, over the entries the image actually uses."""
    used = lut[present]
    lo, hi = float(used.min()), float(used.max())
    if hi <= lo:
        return np.zeros(lut.shape, dtype=np.float32)
    return (lut.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)


# --- the whole transform ------------------------------------------------------------------------


def _intensity_lut(a: np.ndarray, equalization: str) -> tuple[np.ndarray, np.ndarray] | None:
    """For an integer image with a modest range: (float32 LUT over min..max, index array)."""
    if a.dtype.kind not in "iu":
        return None
    import cv2

    lo, hi = _min_max(a)
    rng = hi - lo
    if rng >= _MAX_LUT:
        return None
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
        idx = np.subtract(a, a.dtype.type(lo), dtype=a.dtype)
    else:
        idx = (a.astype(np.int64) - lo).astype(np.uint32 if rng >= 1 << 16 else np.uint16)
    if idx.dtype.itemsize <= 2 and rng < 1 << 16:
        counts = cv2.calcHist([idx], [0], None, [rng + 1], [0, rng + 1]).ravel().astype(np.int64)
    else:
        counts = np.bincount(idx.ravel(), minlength=rng + 1)
    present = counts > 0
    if rng == 0:
        return np.zeros(1, dtype=np.float32), idx
    if equalization == "authors":
        to8 = (np.arange(rng + 1, dtype=np.int64) * 255 // rng).astype(np.uint8)
        hist8 = np.bincount(to8, weights=counts, minlength=256).astype(np.int64)
        eq = equalize_lut_u8(hist8)[to8]
    else:
        eq = _cdf_lut(counts)
    return _minmax_lut(eq, present), idx


def intensity_transform(a: np.ndarray, equalization: str = "authors") -> np.ndarray:
    """Steps 1-2 (equalise, then min-max to [0, 1]) on the whole image, float32."""
    a = _check_pixels(a)
    if equalization not in EQUALIZATIONS:
        raise PreprocessError(f"equalization must be one of {EQUALIZATIONS}, got {equalization!r}")
    fused = _intensity_lut(a, equalization)
    if fused is not None:
        lut, idx = fused
        return lut[idx]
    eq = equalize_authors(a) if equalization == "authors" else equalize_full(a)
    return minmax01(eq)


def preprocess(pixels: np.ndarray, modality: str = "radiograph", config: PreprocessConfig | None = None) -> np.ndarray:
    """Model input from 2-D pixels (``LoadedImage.pixels``): float32 ``(1, height, width)``.

    ``modality`` is "radiograph" or "vfa" and decides the margin crop (``config.crop_modalities``).
    """
    cfg = config or PreprocessConfig()
    if modality not in MODALITIES:
        raise PreprocessError(f"modality must be one of {MODALITIES}, got {modality!r}")
    a = _check_pixels(pixels)
    area = cfg.margin_crop_area if modality in cfg.crop_modalities else 0.0
    top, bottom, left, right = crop_box(a.shape[0], a.shape[1], area)
    fused = _intensity_lut(a, cfg.equalization)
    if fused is not None:
        lut, idx = fused
        # Pointwise until here, so only the kept region needs the lookup.
        x = np.take(lut, idx[top:bottom, left:right])
    else:
        x = intensity_transform(a, cfg.equalization)[top:bottom, left:right]
    return resize_pad(x, cfg.height, cfg.width)[None]


def preprocess_reference(
    pixels: np.ndarray, modality: str = "radiograph", config: PreprocessConfig | None = None
) -> np.ndarray:
    """The same transform written step by step as docs/methods.md#preprocessing reads (slower; for tests and docs)."""
    cfg = config or PreprocessConfig()
    if modality not in MODALITIES:
        raise PreprocessError(f"modality must be one of {MODALITIES}, got {modality!r}")
    a = _check_pixels(pixels)
    eq = equalize_authors(a) if cfg.equalization == "authors" else equalize_full(a)
    x = minmax01(eq)
    area = cfg.margin_crop_area if modality in cfg.crop_modalities else 0.0
    top, bottom, left, right = crop_box(x.shape[0], x.shape[1], area)
    return resize_pad(x[top:bottom, left:right], cfg.height, cfg.width)[None]
