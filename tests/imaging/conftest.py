"""Fixtures for the imaging tests: pydicom's bundled files and DICOM objects written here."""

from __future__ import annotations

import io

import numpy as np
import pytest

# pydicom is imported inside the helpers, so the torch and preprocessing tests also run where only
# torch and OpenCV are installed (a GPU host, say).

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def bundled(name: str) -> str:
    """Path of a pydicom test file that ships offline; skips the test when it is absent."""
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # some pydicom versions raise instead of returning None offline
        path = None
    if path is None:
        pytest.skip(f"pydicom test file {name} is not available offline")
    return path


def make_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    modality: str = "DX",
    slope: float | None = None,
    intercept: float | None = None,
    frames: int | None = None,
    patient_id: str = "PID-SECRET-42",
    **tags,
):
    """A minimal, valid Part 10 dataset with native (uncompressed) pixel data."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(pixels)
    signed = arr.dtype.kind == "i"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS if modality in ("DX", "CR") else SC_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(arr.tobytes()[:64]), photometric, modality])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = "Secret^Person"
    ds.Modality = modality
    ds.Manufacturer = "TestCo"
    ds.StudyDate = "20240131"
    ds.ViewPosition = "LL"
    ds.BodyPartExamined = "LSPINE"
    ds.PixelSpacing = [0.15, 0.16]
    ds.SamplesPerPixel = 3 if arr.ndim == 3 and arr.shape[-1] == 3 and frames is None else 1
    ds.PhotometricInterpretation = photometric
    if frames:
        ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
    else:
        ds.Rows, ds.Columns = arr.shape[0], arr.shape[1]
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept if intercept is not None else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    return ds


def to_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ramp(shape=(40, 30), top=4095, dtype=np.uint16, seed=0) -> np.ndarray:
    """A deterministic test image: a diagonal ramp plus seeded noise, within 0..top."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = (yy / max(shape[0] - 1, 1) + xx / max(shape[1] - 1, 1)) / 2 * top
    noisy = base + rng.normal(0, top * 0.02, shape)
    return np.clip(np.rint(noisy), 0, top).astype(dtype)


@pytest.fixture
def dicom_bytes():
    """Factory: ``dicom_bytes(pixels, **make_dataset kwargs) -> bytes``."""
    return lambda pixels, **kw: to_bytes(make_dataset(pixels, **kw))
