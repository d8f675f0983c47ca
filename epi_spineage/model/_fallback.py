"""Stand-in for ``epi_spineage.imaging.preprocess`` (CONTRACTS "Imaging") used only while that module
is absent from the tree. Same fields, same canonical-JSON hash, METHODS 1 pipeline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    height: int = 1024
    width: int = 512
    equalization: str = "authors"
    margin_crop_area: float = 0.05
    crop_modalities: tuple = ("radiograph",)
    apply_voi_lut: bool = False
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop_modalities"] = list(self.crop_modalities)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        if "crop_modalities" in d:
            d["crop_modalities"] = tuple(d["crop_modalities"])
        return cls(**d)

    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def preprocess(pixels, modality="radiograph", config=None) -> np.ndarray:
    import cv2

    cfg = config or PreprocessConfig()
    a = np.asarray(pixels, dtype=np.float64)
    lo, hi = a.min(), a.max()
    u8 = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).astype(np.uint8)
    img = cv2.equalizeHist(u8).astype(np.float32)
    lo, hi = img.min(), img.max()
    img = np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)
    if modality in cfg.crop_modalities and cfg.margin_crop_area > 0:
        f = (1 - math.sqrt(1 - cfg.margin_crop_area)) / 2
        h, w = img.shape
        dh, dw = int(round(h * f)), int(round(w * f))
        img = img[dh:h - dh or None, dw:w - dw or None]
    H, W = cfg.height, cfg.width
    h, w = img.shape
    if w > h:
        nw, nh = W, int(h * W / w)
    else:
        nh, nw = H, int(w * H / h)
        if nw > W:
            nw, nh = W, int(h * W / w)
    img = cv2.resize(img, (max(nw, 1), max(nh, 1)), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((H, W), np.float32)
    y0, x0 = int((H - nh) / 2), int((W - nw) / 2)
    canvas[y0:y0 + nh, x0:x0 + nw] = img
    return canvas[None]
