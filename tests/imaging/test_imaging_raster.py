"""PNG, JPEG and TIFF reading, 8 and 16 bit."""

from __future__ import annotations

import io

import numpy as np
import pytest

from epi_spineage.errors import ImageReadError
from epi_spineage.imaging import content_hash, load_image

from .conftest import ramp

cv2 = pytest.importorskip("cv2")


def _encode(ext, arr, *params):
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535), (np.uint16, 4095)])
def test_png_lossless_round_trip(dtype, top):
    pix = ramp((33, 21), top=top, dtype=dtype, seed=5)
    img = load_image(_encode(".png", pix), name="x.png")
    assert img.meta["format"] == "png"
    assert img.pixels.dtype == dtype
    np.testing.assert_array_equal(img.pixels, pix)
    assert img.content_hash == content_hash(pix)
    assert img.meta["bits_stored"] == np.dtype(dtype).itemsize * 8
    assert img.meta["modality"] is None and img.meta["patient_id"] is None


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_tiff_round_trip_cv2_and_tifffile(dtype, top, tmp_path):
    pix = ramp((25, 17), top=top, dtype=dtype, seed=6)
    img = load_image(_encode(".tiff", pix), name="a.tif")
    assert img.meta["format"] == "tiff"
    np.testing.assert_array_equal(img.pixels, pix)
    tifffile = pytest.importorskip("tifffile")
    buf = io.BytesIO()
    tifffile.imwrite(buf, pix, compression="zlib")
    img2 = load_image(buf.getvalue(), name="b.tif")
    np.testing.assert_array_equal(img2.pixels, pix)
    assert img2.content_hash == img.content_hash


def test_float_tiff_via_tifffile():
    tifffile = pytest.importorskip("tifffile")
    pix = ramp((10, 8), seed=7).astype(np.float32) / 7.0
    buf = io.BytesIO()
    tifffile.imwrite(buf, pix)
    img = load_image(buf.getvalue(), name="f.tif")
    assert img.pixels.dtype == np.float32
    np.testing.assert_allclose(img.pixels, pix)


def test_jpeg_grey_close_to_source():
    pix = ramp((40, 40), top=255, dtype=np.uint8, seed=8)
    img = load_image(_encode(".jpg", pix, cv2.IMWRITE_JPEG_QUALITY, 95), name="x.jpg")
    assert img.meta["format"] == "jpeg"
    assert img.pixels.shape == pix.shape and img.pixels.dtype == np.uint8
    assert np.abs(img.pixels.astype(int) - pix).mean() < 3


def test_colour_png_to_grey_with_warning():
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R, G, B
    bgr = rgb[..., ::-1].copy()
    with pytest.warns(UserWarning, match="colour PNG"):
        img = load_image(_encode(".png", bgr), name="c.png")
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert (img.pixels == expected).all()
    assert img.meta["photometric_interpretation"] == "RGB"


def test_grey_saved_as_three_channels_needs_no_warning(recwarn):
    pix = ramp((6, 6), top=255, dtype=np.uint8)
    img = load_image(_encode(".png", np.dstack([pix] * 3)), name="g.png")
    np.testing.assert_array_equal(img.pixels, pix)
    assert not [w for w in recwarn if "colour" in str(w.message)]


def test_path_source_and_truncated_png(tmp_path):
    pix = ramp((30, 30), top=65535, seed=9)
    data = _encode(".png", pix)
    p = tmp_path / "ok.png"
    p.write_bytes(data)
    assert load_image(p).source == str(p)
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(data[: len(data) // 3], name="cut.png")
