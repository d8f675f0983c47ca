"""DICOM reading: pydicom's bundled files (nobody here wrote them) and fixtures with golden pixels."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging import content_hash, infer_modality, load_image

from .conftest import bundled, make_dataset, ramp, to_bytes

pydicom = pytest.importorskip("pydicom")

META_KEYS = {
    "source",
    "format",
    "sop_instance_uid",
    "sop_class_uid",
    "patient_id",
    "photometric_interpretation",
    "bits_stored",
    "dicom_modality",
    "manufacturer",
    "study_date",
    "pixel_spacing",
    "view_position",
    "body_part_examined",
    "series_description",
    "transfer_syntax_uid",
    "modality",
}


def _reference_pixels(path):
    """What pydicom itself decodes, for comparison."""
    return pydicom.dcmread(path).pixel_array


# --- compressed transfer syntaxes (bundled files) ---------------------------------------------------


@pytest.mark.parametrize(
    "name, syntax",
    [
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),  # JPEG 2000
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 lossless
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE
        ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),  # JPEG extended 12 bit
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS
    ],
)
def test_compressed_grey_files_decode_like_pydicom(name, syntax):
    path = bundled(name)
    img = load_image(path)
    assert img.meta["transfer_syntax_uid"] == syntax
    assert img.meta["format"] == "dicom"
    assert img.pixels.ndim == 2
    np.testing.assert_array_equal(img.pixels, _reference_pixels(path).astype(img.pixels.dtype))
    assert set(META_KEYS) <= set(img.meta)


def test_lossless_encodings_share_one_content_hash():
    # Same MR image: explicit/implicit little-endian, big-endian, RLE, JPEG 2000 lossless, JPEG-LS.
    names = [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ]
    hashes = {}
    for name in names:
        try:
            hashes[name] = load_image(bundled(name)).content_hash
        except pytest.skip.Exception:
            continue
    assert len(hashes) >= 3
    assert len(set(hashes.values())) == 1, hashes


def test_jpeg_baseline_rgb_converted_to_grey_with_warning():
    path = bundled("SC_rgb_jpeg.dcm")
    with pytest.warns(UserWarning, match="colour DICOM"):
        img = load_image(path)
    rgb = _reference_pixels(path).astype(np.float64)
    expected = np.rint(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8)
    assert img.meta["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.50"
    assert img.meta["photometric_interpretation"] == "RGB"
    np.testing.assert_array_equal(img.pixels, expected)


def test_jpeg_baseline_grey_written_here():
    cv2 = pytest.importorskip("cv2")
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    pix = ramp((64, 48), top=255, dtype=np.uint8, seed=3)
    ok, jpg = cv2.imencode(".jpg", pix, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds = make_dataset(pix, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "MONOCHROME2"
    img = load_image(to_bytes(ds), name="grey_baseline.dcm")
    assert img.meta["transfer_syntax_uid"] == JPEGBaseline8Bit
    assert img.pixels.shape == pix.shape
    # lossy, so close rather than equal
    assert np.abs(img.pixels.astype(int) - pix.astype(int)).mean() < 3


def test_ct_rescale_applied_keeps_integer_dtype():
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = load_image(path)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    assert (slope, intercept) != (1.0, 0.0)
    expected = ds.pixel_array.astype(np.float64) * slope + intercept
    assert img.pixels.dtype.kind == "i"
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.meta["dicom_modality"] == "CT"
    assert img.meta["modality"] is None


def test_non_integer_rescale_gives_float32(dicom_bytes):
    pix = ramp((20, 10), seed=1)
    img = load_image(dicom_bytes(pix, slope=0.5, intercept=-3.25), name="f.dcm")
    assert img.pixels.dtype == np.float32
    np.testing.assert_allclose(img.pixels, pix * 0.5 - 3.25)


# --- fixtures written here: MONOCHROME1, VOI LUT, bit masking, frames ------------------------------------


def test_monochrome1_inverted_golden(dicom_bytes):
    stored = np.array([[0, 1, 2, 4095], [100, 2000, 4000, 7]], dtype=np.uint16)
    with pytest.warns(UserWarning, match="MONOCHROME1"):
        img = load_image(dicom_bytes(stored, photometric="MONOCHROME1", bits_stored=12), name="m1.dcm")
    golden = np.array([[4095, 4094, 4093, 0], [3995, 2095, 95, 4088]], dtype=np.uint16)
    np.testing.assert_array_equal(img.pixels, golden)
    assert img.pixels.dtype == np.uint16
    assert img.meta["photometric_interpretation"] == "MONOCHROME1"
    # the hash covers the MONOCHROME2 values: same as a MONOCHROME2 file holding the golden pixels
    m2 = load_image(dicom_bytes(golden, photometric="MONOCHROME2", bits_stored=12), name="m2.dcm")
    assert img.content_hash == m2.content_hash


def test_monochrome1_with_rescale_inverts_in_modality_range(dicom_bytes):
    stored = np.array([[0, 10], [20, 1023]], dtype=np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = load_image(
            dicom_bytes(stored, photometric="MONOCHROME1", bits_stored=10, slope=2, intercept=-100), name="x"
        )
    # modality range: [0*2-100, 1023*2-100] = [-100, 1946]; inverted v' = -100 + 1946 - v
    modality = stored.astype(np.int64) * 2 - 100
    np.testing.assert_array_equal(img.pixels, 1846 - modality)


def test_voi_lut_window_optional_golden(dicom_bytes):
    stored = np.array([[0, 1000, 1500], [2000, 2500, 4095]], dtype=np.uint16)
    data = dicom_bytes(stored, bits_stored=12, WindowCenter=2000, WindowWidth=1001)
    plain = load_image(data, name="w.dcm")
    np.testing.assert_array_equal(plain.pixels, stored)  # off by default
    windowed = load_image(data, name="w.dcm", apply_voi_lut=True)
    # DICOM linear window (PS3.3 C.11.2.1.2.1): c=2000, w=1001, output 0..4095
    c, w, top = 2000.0, 1001.0, 4095.0
    x = stored.astype(np.float64)
    golden = np.where(
        x <= c - 0.5 - (w - 1) / 2,
        0.0,
        np.where(x > c - 0.5 + (w - 1) / 2, top, ((x - (c - 0.5)) / (w - 1) + 0.5) * top),
    )
    np.testing.assert_allclose(windowed.pixels, golden, atol=1e-3)
    assert windowed.content_hash == plain.content_hash


def test_voi_lut_sequence_golden(dicom_bytes):
    from pydicom.dataset import Dataset

    stored = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.LUTData = [10, 20, 200, 255]
    item["LUTData"].VR = "US"
    from pydicom.sequence import Sequence

    data = dicom_bytes(stored, bits_stored=2, VOILUTSequence=Sequence([item]))
    img = load_image(data, name="lut.dcm", apply_voi_lut=True)
    np.testing.assert_array_equal(img.pixels, [[10, 20, 200, 255]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inv = load_image(
            dicom_bytes(stored, bits_stored=2, photometric="MONOCHROME1", VOILUTSequence=Sequence([item])),
            name="lut1.dcm",
            apply_voi_lut=True,
        )
    np.testing.assert_array_equal(inv.pixels, [[245, 235, 55, 0]])


def test_bits_stored_12_in_16_masks_garbage_high_bits(dicom_bytes):
    clean = ramp((16, 16), top=4095, seed=2)
    dirty = clean | np.uint16(0xA000)  # garbage in the 4 unused bits
    img = load_image(dicom_bytes(dirty, bits_stored=12), name="dirty.dcm")
    np.testing.assert_array_equal(img.pixels, clean)
    assert img.content_hash == content_hash(clean)


def test_signed_12_bit_sign_extended(dicom_bytes):
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    raw = (values.astype(np.int32) & 0x0FFF).astype(np.int16)  # two's complement in 12 bits, top bits zero
    img = load_image(dicom_bytes(raw, bits_stored=12), name="s.dcm")
    np.testing.assert_array_equal(img.pixels, values)


def test_multiframe_first_frame_with_warning(dicom_bytes):
    frames = np.stack([ramp((12, 10), seed=s) for s in range(3)])
    with pytest.warns(UserWarning, match="multi-frame"):
        img = load_image(dicom_bytes(frames, frames=3), name="mf.dcm")
    np.testing.assert_array_equal(img.pixels, frames[0])


def test_rle_copy_made_by_pydicom_hashes_the_same(dicom_bytes):
    from pydicom.uid import RLELossless

    pix = ramp((50, 40), seed=4)
    ds = make_dataset(pix)
    plain = load_image(to_bytes(ds), name="plain.dcm")
    ds.compress(RLELossless)
    rle = load_image(to_bytes(ds), name="rle.dcm")
    assert rle.meta["transfer_syntax_uid"] == RLELossless
    np.testing.assert_array_equal(rle.pixels, pix)
    assert rle.content_hash == plain.content_hash
    assert plain.content_hash != content_hash(pix.astype(np.int32))  # dtype is part of the hash


def test_meta_fields_and_repr_hides_patient_id(dicom_bytes):
    img = load_image(dicom_bytes(ramp(), modality="DX"), name="meta.dcm")
    m = img.meta
    assert m["patient_id"] == "PID-SECRET-42"
    assert (m["bits_stored"], m["dicom_modality"], m["manufacturer"]) == (12, "DX", "TestCo")
    assert (m["study_date"], m["view_position"], m["body_part_examined"]) == ("20240131", "LL", "LSPINE")
    assert m["pixel_spacing"] == (0.15, 0.16)
    assert m["modality"] == "radiograph"
    assert "PID-SECRET" not in repr(img) and "Secret" not in repr(img)


# --- errors ---------------------------------------------------------------------------------------------


def test_truncated_bundled_file_is_a_typed_error():
    path = bundled("MR_truncated.dcm")
    with pytest.raises(ImageReadError, match="MR_truncated.dcm"):
        load_image(path)


def test_truncated_written_file(dicom_bytes):
    data = dicom_bytes(ramp((64, 64)))
    with pytest.raises(ImageReadError, match="cut.dcm"):
        load_image(data[:-500], name="cut.dcm")


def test_zero_size_file(tmp_path):
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.dcm.*empty"):
        load_image(p)


def test_non_image_dicom_is_a_typed_error():
    with pytest.raises(ImageReadError, match="no pixel data"):
        load_image(bundled("rtplan.dcm"))


def test_garbage_bytes_and_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="junk.bin"):
        load_image(b"this is not an image at all" * 10, name="junk.bin")
    with pytest.raises(ImageReadError, match="nope.dcm"):
        load_image(tmp_path / "nope.dcm")
    assert issubclass(ImageReadError, UserError)


def test_batch_survives_bad_files(dicom_bytes):
    good = dicom_bytes(ramp())
    items = {"a": good, "b": b"", "c": good[:300], "d": b"\x89PNG\r\n\x1a\nbroken"}
    ok, bad = [], []
    for name, data in items.items():
        try:
            load_image(data, name=name)
            ok.append(name)
        except ImageReadError as exc:
            bad.append(exc.source)
    assert ok == ["a"] and bad == ["b", "c", "d"]


# --- modality inference ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "meta, expected",
    [
        ({"dicom_modality": "BMD"}, "vfa"),
        ({"dicom_modality": "OT", "series_description": "VFA lateral spine"}, "vfa"),
        ({"dicom_modality": "DX", "image_type": "ORIGINAL\\PRIMARY\\LVA"}, "vfa"),
        ({"dicom_modality": "DX", "image_type": "DERIVED\\DERIVATIVE"}, "radiograph"),
        ({"dicom_modality": "CR"}, "radiograph"),
        ({"dicom_modality": "RF"}, "radiograph"),
        ({"dicom_modality": "CT"}, None),
        ({}, None),
    ],
)
def test_infer_modality(meta, expected):
    assert infer_modality(meta) == expected


def test_file_object_source_not_needed_bytes_work(dicom_bytes):
    data = dicom_bytes(ramp())
    assert load_image(io.BytesIO(data).getvalue(), name="x").pixels.shape == (40, 30)


def test_bundled_multiframe_colour_and_palette():
    with pytest.warns(UserWarning) as record:
        img = load_image(bundled("examples_ybr_color.dcm"))
    messages = " ".join(str(w.message) for w in record)
    assert "multi-frame" in messages and "colour" in messages
    assert img.pixels.shape == (240, 320)
    with pytest.warns(UserWarning, match="PALETTE"):
        pal = load_image(bundled("examples_palette.dcm"))
    assert pal.pixels.shape == (350, 800) and pal.pixels.ndim == 2


def test_decoder_failure_is_one_line():
    # pydicom's JPEG-lossy.dcm is a known-awkward 12-bit file the installed plugins refuse
    path = bundled("JPEG-lossy.dcm")
    try:
        load_image(path)
    except ImageReadError as exc:
        assert "\n" not in str(exc) and "JPEG-lossy.dcm" in str(exc)
