"""Preprocessing: properties (hypothesis), the authors' arithmetic, OpenCV equality, config."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
hyp = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from epi_spineage.errors import UserError  # noqa: E402
from epi_spineage.imaging import PreprocessConfig, preprocess  # noqa: E402
from epi_spineage.imaging.preprocess import (  # noqa: E402
    PreprocessError,
    crop_box,
    equalize_lut_u8,
    fit_size,
    intensity_transform,
    minmax01,
    preprocess_reference,
    resize_pad,
    to_uint8,
)

from .conftest import ramp  # noqa: E402

FAST = settings(max_examples=40, deadline=None, derandomize=True)
SMALL = PreprocessConfig(height=64, width=32)


def images(dtypes=(np.uint8, np.uint16, np.int16), max_side=48):
    return st.sampled_from(dtypes).flatmap(
        lambda dt: hnp.arrays(dt, st.tuples(st.integers(2, max_side), st.integers(2, max_side)))
    )


# --- the size arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (2500, 1500, (853, 512)),  # h=1024, w=int(1500*1024/2500)=614 > 512 -> w=512, h=int(2500*512/1500)
        (3000, 1000, (1024, 341)),  # tall: h=1024, w=int(1000*1024/3000)
        (1000, 2000, (256, 512)),  # wide: w=512, h=int(1000*512/2000)
        (1024, 512, (1024, 512)),
        (100, 100, (512, 512)),  # square is not "w > h": h=1024, w=1024 -> clamp to 512
        (999, 1000, (511, 512)),  # int() truncates 511.488
    ],
)
def test_fit_size_authors_arithmetic(h, w, expected):
    assert fit_size(h, w) == expected


@FAST
@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([(1024, 512), (512, 512), (256, 512), (96, 40)]))
def test_fit_size_fits_and_keeps_aspect_within_one_pixel(h, w, size):
    H, W = size
    nh, nw = fit_size(h, w, H, W)
    assert 1 <= nh <= H and 1 <= nw <= W
    assert nh == H or nw == W  # one side touches the canvas
    if min(nh, nw) > 1:  # the 1-pixel floor aside, the other side is the truncated exact value
        assert abs(nh - h * nw / w) < 1 or abs(nw - w * nh / h) < 1


@FAST
@given(st.integers(2, 300), st.integers(2, 300))
def test_resize_pad_is_centred_symmetrically(h, w):
    out = resize_pad(np.ones((h, w), np.float32), 64, 32)
    assert out.shape == (64, 32) and out.dtype == np.float32
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    nh, nw = fit_size(h, w, 64, 32)
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (nh, nw)
    top, bottom = rows[0], 64 - 1 - rows[-1]
    left, right = cols[0], 32 - 1 - cols[-1]
    assert 0 <= bottom - top <= 1 and 0 <= right - left <= 1  # int((H-h)/2) puts the odd pixel below/right
    np.testing.assert_allclose(out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1.0, atol=1e-6)


# --- intensity steps -------------------------------------------------------------------------------------


@FAST
@given(hnp.arrays(np.int64, 256, elements=st.integers(0, 5000)))
def test_equalize_lut_matches_opencv(hist):
    if hist.sum() == 0:
        hist[7] = 1
    u8 = np.repeat(np.arange(256, dtype=np.uint8), hist)[None, :]
    assert np.array_equal(equalize_lut_u8(hist)[u8], cv2.equalizeHist(u8))


def test_to_uint8_rule():
    a = np.array([[100, 101, 4095], [2097, 100, 3000]], dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8(a), (a.astype(np.int64) - 100) * 255 // 3995)
    assert to_uint8(a).min() == 0 and to_uint8(a).max() == 255
    assert not to_uint8(np.full((3, 3), 77, np.uint16)).any()
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_uint8(f), [[0, 127, 255]])


@FAST
@given(images(), st.sampled_from(["authors", "full"]), st.sampled_from(["radiograph", "vfa"]))
def test_fast_path_equals_step_by_step_reference(a, eq, modality):
    cfg = PreprocessConfig(height=64, width=32, equalization=eq)
    assert np.array_equal(preprocess(a, modality, cfg), preprocess_reference(a, modality, cfg))


@FAST
@given(images(dtypes=(np.uint16, np.int16, np.float32)), st.sampled_from(["authors", "full"]))
def test_output_shape_range_and_minmax_idempotence(a, eq):
    if a.dtype.kind == "f":
        a = np.nan_to_num(a, nan=0.0, posinf=1e6, neginf=-1e6).clip(-1e6, 1e6)
    out = preprocess(a, "radiograph", PreprocessConfig(height=64, width=32, equalization=eq))
    assert out.shape == (1, 64, 32) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    x = intensity_transform(a, eq)
    if x.max() > x.min():
        assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(minmax01(x), x, atol=1e-6)
    np.testing.assert_allclose(minmax01(minmax01(x)), minmax01(x), atol=1e-6)


@FAST
@given(images(dtypes=(np.uint16,), max_side=32), st.integers(1, 5), st.integers(-1000, 1000))
def test_full_equalisation_depends_only_on_ranks(a, scale, shift):
    b = a.astype(np.int64) * scale + shift  # strictly increasing map keeps the histogram's shape
    np.testing.assert_array_equal(intensity_transform(a, "full"), intensity_transform(b, "full"))


def test_constant_image_gives_zeros():
    for eq in ("authors", "full"):
        out = preprocess(
            np.full((50, 30), 1234, np.uint16), config=PreprocessConfig(height=64, width=32, equalization=eq)
        )
        assert not out.any()


def test_margin_crop_radiograph_only():
    cfg = PreprocessConfig()
    assert math.isclose(cfg.crop_side_fraction, (1 - math.sqrt(0.95)) / 2)
    top, bottom, left, right = crop_box(2500, 1500, 0.05)
    assert (top, 2500 - bottom, left, 1500 - right) == (32, 32, 19, 19)
    assert abs((bottom - top) * (right - left) / (2500 * 1500) - 0.95) < 0.002
    a = ramp((120, 80), seed=11)
    x = intensity_transform(a)
    np.testing.assert_array_equal(preprocess(a, "vfa", SMALL)[0], resize_pad(x, 64, 32))
    t, b, lft, r = crop_box(120, 80, 0.05)
    np.testing.assert_array_equal(preprocess(a, "radiograph", SMALL)[0], resize_pad(x[t:b, lft:r], 64, 32))
    assert not np.array_equal(preprocess(a, "radiograph", SMALL), preprocess(a, "vfa", SMALL))
    no_crop = PreprocessConfig(height=64, width=32, margin_crop_area=0.0)
    np.testing.assert_array_equal(preprocess(a, "radiograph", no_crop), preprocess(a, "vfa", SMALL))


def test_default_output_is_1024_by_512():
    out = preprocess(ramp((300, 200), seed=12))
    assert out.shape == (1, 1024, 512) and out.dtype == np.float32


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(PreprocessError, match="2-D"):
        preprocess(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(PreprocessError, match="modality"):
        preprocess(np.zeros((3, 4), np.uint8), modality="ct")
    with pytest.raises(PreprocessError, match="NaN"):
        preprocess(np.array([[0.0, np.nan]]))
    with pytest.raises(PreprocessError, match="empty"):
        preprocess(np.zeros((0, 4), np.uint8))


# --- config -----------------------------------------------------------------------------------------------


def test_config_round_trip_json_and_hash():
    cfg = PreprocessConfig(height=512, width=256, equalization="full", crop_modalities=["radiograph", "vfa"])
    assert cfg.crop_modalities == ("radiograph", "vfa")
    d = json.loads(cfg.to_json())
    assert d == cfg.to_dict() and list(d) == sorted(d)
    back = PreprocessConfig.from_dict(d)
    assert back == cfg and back.config_hash() == cfg.config_hash()
    assert len(cfg.config_hash()) == 64
    assert PreprocessConfig().config_hash() != cfg.config_hash()
    assert PreprocessConfig().config_hash() == PreprocessConfig.from_dict({}).config_hash()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.height = 3  # frozen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 4},
        {"width": 10.5},
        {"equalization": "clahe"},
        {"margin_crop_area": 0.6},
        {"margin_crop_area": -0.1},
        {"crop_modalities": ("ct",)},
        {"apply_voi_lut": "yes"},
        {"interpolation": "bicubic"},
    ],
)
def test_bad_config_fails_in_constructor(kwargs):
    with pytest.raises(PreprocessError) as info:
        PreprocessConfig(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(PreprocessError, match="unknown"):
        PreprocessConfig.from_dict({"height": 1024, "gamma": 2.2})
