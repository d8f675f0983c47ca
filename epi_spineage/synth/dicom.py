"""Write phantom pixels as real DICOM files (in memory or on disk) with fake but realistic identifiers.

Radiographs: Digital X-Ray Image Storage - For Presentation, Modality ``DX`` (or ``CR``: Computed
Radiography Image Storage). VFA: Secondary Capture Image Storage, Modality ``BMD``, SeriesDescription
``VFA lateral spine``. MONOCHROME1 files store ``(2**bits_stored - 1) - pixels`` so that a reader
which inverts MONOCHROME1 gets back the MONOCHROME2 phantom. The identifiers are invented (names from
common Korean surnames and given names, ``H`` + 8 digits) so that privacy handling can be tested;
``ImageComments`` carries the synthetic notice.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import os
import warnings

import numpy as np

from epi_spineage.errors import UserError
from epi_spineage.schema import SYNTHETIC_NOTICE

log = logging.getLogger(__name__)

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"

SURNAMES = (
    "KIM",
    "LEE",
    "PARK",
    "CHOI",
    "JUNG",
    "KANG",
    "CHO",
    "YOON",
    "JANG",
    "LIM",
    "HAN",
    "OH",
    "SEO",
    "SHIN",
    "KWON",
    "HWANG",
    "AHN",
    "SONG",
    "YOO",
    "HONG",
)
GIVEN_F = (
    "MINJI",
    "SEOYEON",
    "JIYOUNG",
    "EUNJI",
    "SOOJIN",
    "HYEJIN",
    "YOUNGHEE",
    "MIKYUNG",
    "JUNGSOOK",
    "OKJA",
    "SUNHEE",
    "KYUNGJA",
    "MYUNGSOOK",
    "JIHYE",
    "HAEUN",
)
GIVEN_M = (
    "MINJUN",
    "SEOJUN",
    "JIHOON",
    "HYUNWOO",
    "YOUNGSOO",
    "SANGHOON",
    "DONGHYUN",
    "JAEHO",
    "SUNGMIN",
    "KWANGSOO",
    "BYUNGCHUL",
    "CHULSOO",
    "YOUNGHO",
    "JUNHO",
    "TAEYANG",
)

_UID_ROOT = "2.25."  # UUID-derived UIDs (PS3.5 B.2) need no registered root


def fake_identity(rng: np.random.Generator, sex: str = "F") -> tuple[str, str]:
    """A fake but realistic ``(patient_name, patient_id)``, e.g. ``("KIM^MINJI", "H00012345")``."""
    given = GIVEN_F if sex == "F" else GIVEN_M
    name = f"{SURNAMES[rng.integers(len(SURNAMES))]}^{given[rng.integers(len(given))]}"
    return name, f"H{int(rng.integers(10**7, 10**8)):08d}"


def make_uid(rng: np.random.Generator | None = None) -> str:
    """A ``2.25.<decimal>`` UID; deterministic when ``rng`` is given."""
    if rng is None:
        return _UID_ROOT + str(int.from_bytes(os.urandom(16), "big"))
    return _UID_ROOT + str(int.from_bytes(rng.bytes(16), "big") >> 1)


_j2k_checked: bool | None = None


def jpeg2000_available() -> bool:
    """Whether pydicom can encode JPEG 2000 lossless here (needs pylibjpeg-openjpeg)."""
    global _j2k_checked
    if _j2k_checked is None:
        try:
            from pydicom.pixels import get_encoder

            _j2k_checked = bool(get_encoder(JPEG2000_LOSSLESS).is_available)
        except Exception:  # noqa: BLE001 (any import or plugin failure means "not available")
            _j2k_checked = False
    return _j2k_checked


def write_dicom(
    pixels,
    target,
    *,
    modality: str = "radiograph",
    photometric: str = "MONOCHROME2",
    compression: str | None = None,
    patient_name: str = "KIM^MINJI",
    patient_id: str = "H00012345",
    study_date: str = "20240102",
    manufacturer: str = "SYNTHETIC PHANTOM CO",
    view_position: str = "LL",
    body_part: str = "LSPINE",
    bits_stored: int = 12,
    sop_instance_uid: str | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    dicom_modality: str | None = None,
    patient_sex: str | None = None,
    patient_birth_date: str | None = None,
    pixel_spacing_mm: float | None = None,
    rng: np.random.Generator | None = None,
) -> None:
    """Write ``pixels`` (2-D, MONOCHROME2 convention, unsigned, < 2**bits_stored) as one DICOM file.

    ``target`` is a path or a binary file object (e.g. ``io.BytesIO``). ``compression``: ``None``
    (explicit VR little endian), ``"rle"`` or ``"jpeg2000"`` (lossless; falls back to RLE with a log
    note when no JPEG 2000 encoder is installed). ``dicom_modality`` overrides the Modality tag
    (radiographs: ``"DX"`` default or ``"CR"``; VFA: ``"BMD"``). ``rng`` makes the UIDs deterministic.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.size == 0:
        raise UserError(f"write_dicom needs a non-empty 2-D array, got shape {arr.shape}")
    if modality not in ("radiograph", "vfa"):
        raise UserError(f"modality must be 'radiograph' or 'vfa', got {modality!r}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UserError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    if compression not in (None, "rle", "jpeg2000"):
        raise UserError(f"compression must be None, 'rle' or 'jpeg2000', got {compression!r}")
    if not 8 <= int(bits_stored) <= 16:
        raise UserError(f"bits_stored must lie in 8..16, got {bits_stored}")
    bits_stored = int(bits_stored)
    top = 2**bits_stored - 1
    if arr.dtype.kind not in "iu" or (arr.size and (int(arr.min()) < 0 or int(arr.max()) > top)):
        raise UserError(f"pixels must be unsigned integers in 0..{top} for bits_stored={bits_stored}")
    arr = arr.astype(np.uint16 if bits_stored > 8 else np.uint8)
    if photometric == "MONOCHROME1":
        arr = (top - arr).astype(arr.dtype)

    if modality == "vfa":
        sop_class, dmod = SECONDARY_CAPTURE, dicom_modality or "BMD"
    else:
        dmod = dicom_modality or "DX"
        if dmod not in ("DX", "CR"):
            raise UserError(f"radiograph DICOM modality must be DX or CR, got {dmod!r}")
        sop_class = DX_PRESENTATION if dmod == "DX" else CR_STORAGE
    sop_uid = sop_instance_uid or make_uid(rng)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
    meta.ImplementationClassUID = UID("2.25.1234567890123456789")
    meta.ImplementationVersionName = "EPI_SPINEAGE"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = make_uid(rng)
    ds.SeriesInstanceUID = make_uid(rng)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientSex = patient_sex or ""
    ds.PatientBirthDate = patient_birth_date or ""
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "093000"
    ds.AccessionNumber = f"A{patient_id[-7:]}" if patient_id else ""
    ds.ReferringPhysicianName = "LEE^DOCTOR"
    ds.InstitutionName = "SYNTHETIC GENERAL HOSPITAL"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = dmod
    ds.Manufacturer = manufacturer
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.PatientOrientation = ["A", "F"]
    ds.ImageComments = SYNTHETIC_NOTICE
    if modality == "vfa":
        ds.SeriesDescription = "VFA lateral spine"
        ds.ImageType = ["DERIVED", "SECONDARY", "VFA"]
        ds.ConversionType = "WSD"
    else:
        ds.SeriesDescription = "L-SPINE LAT"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        if dmod == "DX":
            ds.PresentationIntentType = "FOR PRESENTATION"
            ds.ImageLaterality = "U"
            ds.DetectorType = "SCINTILLATOR"
    spacing = pixel_spacing_mm if pixel_spacing_mm is not None else (0.18 if modality == "radiograph" else 0.5)
    ds.PixelSpacing = [f"{spacing:.4f}", f"{spacing:.4f}"]
    if modality == "radiograph":
        ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16 if arr.dtype == np.uint16 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{float(rescale_slope):g}"
    ds.RescaleIntercept = f"{float(rescale_intercept):g}"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{top / 2:.1f}"
    ds.WindowWidth = f"{float(top):.1f}"
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated == 16 else "OB"

    if compression == "jpeg2000" and not jpeg2000_available():
        log.info("JPEG 2000 encoder unavailable (install pylibjpeg-openjpeg); using RLE lossless instead")
        compression = "rle"
    if compression == "jpeg2000":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds.compress(JPEG2000_LOSSLESS, arr, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        except RuntimeError as exc:  # openjpeg refuses images smaller than its 6 wavelet levels need
            log.info(
                "JPEG 2000 encoding failed for a %dx%d image (%s); using RLE lossless instead",
                arr.shape[0],
                arr.shape[1],
                exc,
            )
            compression = "rle"
    if compression == "rle":
        ds.compress(RLE_LOSSLESS, arr, generate_instance_uid=False)
    if isinstance(target, (str, os.PathLike)):
        ds.save_as(str(target), enforce_file_format=True)
    else:
        ds.save_as(target, enforce_file_format=True)


def dicom_bytes(pixels, **kwargs) -> bytes:
    """``write_dicom`` into memory; returns the file's bytes."""
    buf = io.BytesIO()
    write_dicom(pixels, buf, **kwargs)
    return buf.getvalue()


def birth_date_for(age_years: float, study_date: str) -> str:
    """A birth date consistent with ``age_years`` at ``study_date`` (YYYYMMDD)."""
    d = _dt.date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
    born = d - _dt.timedelta(days=int(round(float(age_years) * 365.25)))
    return born.strftime("%Y%m%d")
