"""Regenerate docs/img/preprocess_before.png and preprocess_after.png (the README's imaging figure).

The input is a synthetic lateral-spine-like DICOM written here (12-bit, MONOCHROME1, Modality DX,
a bright collimator edge and low contrast), so the figure needs no patient data. It goes through
the same CLI a user runs:
    python -m epi_spineage.preprocess synthetic.dcm --out after.png --before before.png --size 512x256
Run from the repository root: ``.venv/bin/python docs/img/make_preprocess_figure.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from epi_spineage.preprocess import main as preprocess_main

OUT = Path(__file__).resolve().parent


def synthetic_spine(h: int = 640, w: int = 400, seed: int = 7) -> np.ndarray:
    """Stored values of a MONOCHROME1 image (bone = low values), uint16 with 12 bits used."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    density = 1300 + 250 * np.exp(-(((xx - 0.55 * w) / (0.3 * w)) ** 2)) + 0.15 * yy  # soft tissue + heel effect
    centre = 0.52 * w + 0.06 * w * np.sin(yy / h * np.pi)  # a gentle lordosis
    for k in range(5):  # vertebral bodies with brighter endplates, discs between them
        top, bottom = 70 + k * 108, 70 + k * 108 + 84
        inside = (yy >= top) & (yy < bottom) & (np.abs(xx - centre) < 0.13 * w)
        density += 260 * inside
        density += 120 * inside * ((yy - top < 6) | (bottom - yy <= 6))
    density += rng.normal(0, 18, (h, w)).astype(np.float32)
    img = np.clip(density, 0, 4095)
    label = np.zeros((h, w), np.uint8)  # putText draws on 8-bit images only
    cv2.putText(label, "SYNTHETIC", (int(0.08 * w), h - 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2)
    img = np.where(label > 0, 1900.0, img)
    edge = 8  # collimator: unexposed, displayed white in MONOCHROME2 terms
    img[:edge], img[-edge:], img[:, :edge], img[:, -edge:] = 3900, 3900, 3900, 3900
    return (4095 - img).astype(np.uint16)  # MONOCHROME1 stores dense = low


def write_dicom(pixels: np.ndarray, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["epi_spineage docs figure"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesDescription = "DX", "SYNTHETIC", "SYNTHETIC phantom"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        dcm = Path(tmp) / "synthetic.dcm"
        write_dicom(synthetic_spine(), dcm)
        return preprocess_main(
            [
                str(dcm),
                "--out",
                str(OUT / "preprocess_after.png"),
                "--before",
                str(OUT / "preprocess_before.png"),
                "--size",
                "512x256",
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
