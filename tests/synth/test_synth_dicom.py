"""DICOM writer: SOP classes and tags, photometric, compression, privacy fields, pixel round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest

from epi_spineage.errors import UserError
from epi_spineage.schema import SYNTHETIC_NOTICE

pydicom = pytest.importorskip("pydicom")

from epi_spineage.synth import dicom as dcm  # noqa: E402


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return (rng.random((64, 48)) * 4095).astype(np.uint16)


@pytest.mark.parametrize(
    "compression,ts",
    [(None, "1.2.840.10008.1.2.1"), ("rle", "1.2.840.10008.1.2.5"), ("jpeg2000", "1.2.840.10008.1.2.4.90")],
)
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("modality", ["radiograph", "vfa"])
def test_round_trip_and_tags(pixels, compression, ts, photometric, modality):
    if compression == "jpeg2000" and not dcm.jpeg2000_available():
        pytest.skip("no JPEG 2000 encoder installed")
    buf = io.BytesIO()
    dcm.write_dicom(
        pixels,
        buf,
        modality=modality,
        photometric=photometric,
        compression=compression,
        patient_name="PARK^JIHOON",
        patient_id="H00054321",
        study_date="20230405",
        manufacturer="SYNTHETIC PHANTOM CO",
        bits_stored=12,
        rng=np.random.default_rng(1),
    )
    ds = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert ds.file_meta.TransferSyntaxUID == ts
    stored = ds.pixel_array
    got = 4095 - stored if photometric == "MONOCHROME1" else stored
    np.testing.assert_array_equal(got, pixels)
    assert ds.PhotometricInterpretation == photometric and ds.BitsStored == 12
    if modality == "radiograph":
        assert ds.SOPClassUID == dcm.DX_PRESENTATION and ds.Modality == "DX"
        assert ds.PresentationIntentType == "FOR PRESENTATION"
    else:
        assert ds.SOPClassUID == dcm.SECONDARY_CAPTURE and ds.Modality == "BMD"
        assert ds.SeriesDescription == "VFA lateral spine"
    assert ds.ViewPosition == "LL" and ds.BodyPartExamined == "LSPINE"
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    # Privacy fields are present so that later tests can prove they never leak.
    assert str(ds.PatientName) == "PARK^JIHOON" and ds.PatientID == "H00054321"
    assert ds.StudyDate == "20230405" and ds.AccessionNumber and ds.InstitutionName
    assert ds.ImageComments == SYNTHETIC_NOTICE


def test_cr_modality_and_file_target(tmp_path, pixels):
    p = tmp_path / "x.dcm"
    dcm.write_dicom(pixels, p, dicom_modality="CR", rescale_slope=2.0, rescale_intercept=-10)
    ds = pydicom.dcmread(p)
    assert ds.Modality == "CR" and ds.SOPClassUID == dcm.CR_STORAGE
    assert float(ds.RescaleSlope) == 2.0 and float(ds.RescaleIntercept) == -10


def test_jpeg2000_falls_back_to_rle(monkeypatch, pixels, caplog):
    monkeypatch.setattr(dcm, "jpeg2000_available", lambda: False)
    with caplog.at_level("INFO", logger=dcm.log.name):
        data = dcm.dicom_bytes(pixels, compression="jpeg2000")
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == dcm.RLE_LOSSLESS
    assert "RLE" in caplog.text


def test_deterministic_uids_with_rng(pixels):
    a = dcm.dicom_bytes(pixels, rng=np.random.default_rng(5))
    b = dcm.dicom_bytes(pixels, rng=np.random.default_rng(5))
    assert a == b


def test_bad_input(pixels):
    with pytest.raises(UserError):
        dcm.dicom_bytes(pixels.astype(np.float32))
    with pytest.raises(UserError):
        dcm.dicom_bytes(pixels, bits_stored=10)  # values above 1023
    with pytest.raises(UserError):
        dcm.dicom_bytes(pixels, compression="jpeg")
    with pytest.raises(UserError):
        dcm.dicom_bytes(np.zeros((3, 3, 3), np.uint16))


def test_fake_identity_looks_real():
    name, pid = dcm.fake_identity(np.random.default_rng(0), "F")
    assert "^" in name and name.isupper()
    assert pid.startswith("H") and len(pid) == 9 and pid[1:].isdigit()


def test_imaging_reader_reads_it_back(pixels):
    imaging = pytest.importorskip("epi_spineage.imaging")
    if not hasattr(imaging, "load_image"):
        pytest.skip("imaging.load_image not available")
    data = dcm.dicom_bytes(pixels, modality="vfa", photometric="MONOCHROME1", compression="rle")
    with pytest.warns(UserWarning):
        im = imaging.load_image(data, name="phantom.dcm")
    np.testing.assert_array_equal(im.pixels, pixels)
    assert im.meta["modality"] == "vfa" and im.meta["dicom_modality"] == "BMD"
    im2 = imaging.load_image(dcm.dicom_bytes(pixels), name="r.dcm")
    assert im2.meta["modality"] == "radiograph"


def test_every_phantom_says_synthetic_in_its_manufacturer(tmp_path):
    # The report recognises scored phantoms by this tag (provenance.SYNTHETIC_MANUFACTURER_MARK).
    from epi_spineage.provenance import SYNTHETIC_MANUFACTURER_MARK
    from epi_spineage.synth.archive import write_phantom_archive

    write_phantom_archive(tmp_path / "ph", n=12, seed=1, scale=0.1)
    files = sorted((tmp_path / "ph").rglob("*.dcm"))
    assert len(files) == 12
    for f in files:
        assert SYNTHETIC_MANUFACTURER_MARK in str(pydicom.dcmread(f, stop_before_pixels=True).Manufacturer).upper()
