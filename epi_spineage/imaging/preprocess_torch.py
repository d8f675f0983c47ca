"""The preprocessing transform in torch, for a batch on any device (imports torch).

Same steps and arithmetic as ``imaging.preprocess`` (8-bit rule in exact integer maths, OpenCV's
``equalizeHist`` table in float32 with round-half-even, the authors' size arithmetic, centring).
The one known difference is the resampler: ``F.interpolate(mode="bilinear", align_corners=False,
antialias=False)`` and ``cv2.resize(INTER_LINEAR)`` share the half-pixel sampling grid and neither
antialiases, but OpenCV computes its source coordinates and weights with less precision when the
scale factor is not an integer. Measured on uniform noise resized 2468x1481 -> 853x512: mean
absolute difference 7e-6, max 1.1e-4 (integer factors: 5e-9, float rounding only).
Images of different sizes are processed one by one and stacked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import MODALITIES, PreprocessConfig, PreprocessError, crop_box, fit_size

_MAX_BINS = 1 << 22


def _as_tensor(image, device) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        t = image.to(device)
    else:
        a = np.ascontiguousarray(image)
        if a.dtype == np.uint16:
            # torch's uint16 support is partial: ship the bits as int16 (half the bytes of int32)
            # and widen on the device, where it is cheap.
            t = torch.from_numpy(a.view(np.int16)).to(device).to(torch.int32) & 0xFFFF
        elif a.dtype == np.uint32:
            t = torch.from_numpy(a.view(np.int32)).to(device).to(torch.int64) & 0xFFFFFFFF
        else:
            if a.dtype == np.bool_:
                a = a.astype(np.uint8)
            t = torch.from_numpy(a).to(device)
    if t.ndim != 2:
        raise PreprocessError(f"preprocess_batch expects 2-D images, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise PreprocessError("preprocess_batch got an empty image")
    return t


def _equalize_lut_u8(hist: torch.Tensor) -> torch.Tensor:
    """OpenCV ``equalizeHist`` table (float32 scale, round half to even) from 256 counts."""
    total = int(hist.sum())
    nz = torch.nonzero(hist).flatten()
    lut = torch.zeros(256, dtype=torch.float32, device=hist.device)
    first = int(nz[0])
    if int(hist[first]) == total:
        return lut.fill_(first)
    scale = torch.tensor(255.0, dtype=torch.float32) / torch.tensor(
        float(total - int(hist[first])), dtype=torch.float32
    )
    sums = torch.cumsum(hist[first + 1 :], 0).to(torch.float32)
    lut[first + 1 :] = torch.round(sums * scale.to(hist.device)).clamp(0, 255)
    return lut


def _cdf_lut(counts: torch.Tensor) -> torch.Tensor:
    cdf = torch.cumsum(counts.to(torch.int64), 0)
    nz = torch.nonzero(counts).flatten()
    c0, total = int(cdf[nz[0]]), int(cdf[-1])
    if total == c0:
        return torch.zeros(counts.shape, dtype=torch.float32, device=counts.device)
    return ((cdf - c0).to(torch.float64) / float(total - c0)).clamp_min(0).to(torch.float32)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    if float(hi) <= float(lo):
        return torch.zeros_like(x, dtype=torch.float32)
    return (x.to(torch.float32) - lo.to(torch.float32)) / (hi - lo).to(torch.float32)


def intensity_transform(t: torch.Tensor, equalization: str = "authors") -> torch.Tensor:
    """Equalise then min-max to [0, 1]; float32, same shape."""
    if t.dtype.is_floating_point:
        if not bool(torch.isfinite(t).all()):
            raise PreprocessError("preprocess_batch got NaN or infinite pixel values")
        x = t.to(torch.float64)
        lo, hi = x.min(), x.max()
        if float(hi) <= float(lo):
            return torch.zeros_like(x, dtype=torch.float32)
        if equalization == "authors":
            u8 = torch.floor((x - lo) * (255.0 / float(hi - lo))).clamp(0, 255).to(torch.int64)
            lut = _equalize_lut_u8(torch.bincount(u8.flatten(), minlength=256))
            return _minmax(lut[u8])
        _, inverse, counts = torch.unique(x.flatten(), return_inverse=True, return_counts=True)
        return _minmax(_cdf_lut(counts)[inverse].reshape(x.shape))
    x = t.to(torch.int64)
    lo_int, hi_int = int(x.min()), int(x.max())
    rng = hi_int - lo_int
    if rng == 0:
        return torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    idx = x - lo_int
    if equalization == "authors":
        u8 = idx * 255 // rng
        lut = _equalize_lut_u8(torch.bincount(u8.flatten(), minlength=256))
        return _minmax(lut[u8])
    if rng < _MAX_BINS:
        counts = torch.bincount(idx.flatten(), minlength=rng + 1)
        return _minmax(_cdf_lut(counts)[idx])
    _, inverse, counts = torch.unique(idx.flatten(), return_inverse=True, return_counts=True)
    return _minmax(_cdf_lut(counts)[inverse].reshape(x.shape))


def preprocess_one(
    image, modality: str = "radiograph", config: PreprocessConfig | None = None, device="cpu"
) -> torch.Tensor:
    """One image to float32 ``(1, H, W)`` on ``device``."""
    cfg = config or PreprocessConfig()
    if modality not in MODALITIES:
        raise PreprocessError(f"modality must be one of {MODALITIES}, got {modality!r}")
    t = _as_tensor(image, device)
    x = intensity_transform(t, cfg.equalization)
    area = cfg.margin_crop_area if modality in cfg.crop_modalities else 0.0
    top, bottom, left, right = crop_box(x.shape[0], x.shape[1], area)
    x = x[top:bottom, left:right]
    nh, nw = fit_size(x.shape[0], x.shape[1], cfg.height, cfg.width)
    if (nh, nw) != tuple(x.shape):
        x = F.interpolate(x[None, None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)[0, 0]
    canvas = torch.zeros((1, cfg.height, cfg.width), dtype=torch.float32, device=x.device)
    y0, x0 = int((cfg.height - nh) / 2), int((cfg.width - nw) / 2)
    canvas[0, y0 : y0 + nh, x0 : x0 + nw] = x
    return canvas


def preprocess_batch(
    images: Sequence[np.ndarray | torch.Tensor],
    modalities: Sequence[str] | str,
    config: PreprocessConfig | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """A list of 2-D images (NumPy or torch, any sizes) to float32 ``(B, 1, H, W)`` on ``device``.

    ``modalities`` gives one "radiograph"/"vfa" per image (or one string for all).
    """
    if isinstance(modalities, str):
        modalities = [modalities] * len(images)
    if len(modalities) != len(images):
        raise PreprocessError(f"{len(images)} images but {len(modalities)} modalities")
    cfg = config or PreprocessConfig()
    if not len(images):
        return torch.zeros((0, 1, cfg.height, cfg.width), dtype=torch.float32, device=device)
    out = [preprocess_one(img, mod, cfg, device) for img, mod in zip(images, modalities)]
    return torch.stack(out)
