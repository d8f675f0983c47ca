"""The torch batch path agrees with the NumPy path (CPU); the imaging package stays torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from epi_spineage.imaging import PreprocessConfig, preprocess
from epi_spineage.imaging.preprocess import PreprocessError, intensity_transform

from .conftest import ramp

torch = pytest.importorskip("torch")
from epi_spineage.imaging import preprocess_torch as pt  # noqa: E402


def _images():
    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[0:410, 0:260]
    tissue = 1500 + 900 * np.sin(yy / 31.0) * np.cos(xx / 17.0) + rng.normal(0, 150, yy.shape)
    return [
        np.clip(tissue, 0, 4095).astype(np.uint16),  # 12-bit radiograph-like
        (np.clip(tissue, 0, 4095) - 1024).astype(np.int16),  # signed, CT-like
        (np.clip(tissue, 0, 4095) * 0.37 - 5.5).astype(np.float32),  # non-integer rescale
        ramp((300, 500), top=255, dtype=np.uint8, seed=22),  # wide 8-bit
        np.full((40, 30), 9, np.uint16),  # constant
    ]


@pytest.mark.parametrize("equalization", ["authors", "full"])
def test_batch_agrees_with_numpy(equalization):
    cfg = PreprocessConfig(height=256, width=128, equalization=equalization)
    imgs = _images()
    mods = ["radiograph", "radiograph", "vfa", "vfa", "radiograph"]
    batch = pt.preprocess_batch(imgs, mods, cfg, device="cpu")
    assert batch.shape == (len(imgs), 1, 256, 128) and batch.dtype == torch.float32
    for i, (img, mod) in enumerate(zip(imgs, mods)):
        ref = preprocess(img, mod, cfg)
        diff = np.abs(batch[i].numpy() - ref)
        assert diff.mean() <= 1e-3, (i, diff.mean())
        assert diff.max() <= 5e-3, (i, diff.max())


@pytest.mark.parametrize("equalization", ["authors", "full"])
def test_intensity_steps_are_exact(equalization):
    for img in _images()[:2] + _images()[3:]:
        t = torch.from_numpy(img.astype(np.int32))
        np.testing.assert_array_equal(
            pt.intensity_transform(t, equalization).numpy(), intensity_transform(img, equalization)
        )


def test_default_size_and_tensor_inputs():
    img = ramp((600, 350), seed=23)
    out = pt.preprocess_batch([torch.from_numpy(img.astype(np.int32)), img], "radiograph")
    assert out.shape == (2, 1, 1024, 512)
    assert torch.equal(out[0], out[1])
    assert pt.preprocess_batch([], [], PreprocessConfig(height=64, width=32)).shape == (0, 1, 64, 32)


def test_batch_errors():
    with pytest.raises(PreprocessError, match="modalities"):
        pt.preprocess_batch([ramp()], ["vfa", "vfa"])
    with pytest.raises(PreprocessError, match="modality"):
        pt.preprocess_batch([ramp()], ["ct"])
    with pytest.raises(PreprocessError, match="2-D"):
        pt.preprocess_batch([np.zeros((2, 3, 4))], ["vfa"])


@pytest.mark.gpu
def test_cuda_matches_cpu():
    cfg = PreprocessConfig(height=256, width=128)
    imgs = _images()[:3]
    cpu = pt.preprocess_batch(imgs, "radiograph", cfg)
    gpu = pt.preprocess_batch(imgs, "radiograph", cfg, device="cuda")
    assert (gpu.cpu() - cpu).abs().mean() <= 1e-4


def test_imaging_package_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "import epi_spineage.imaging as im\n"
        "from epi_spineage.imaging.preprocess import PreprocessConfig\n"
        "im.preprocess(np.arange(12, dtype=np.uint16).reshape(3, 4), config=PreprocessConfig(height=16, width=8))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_full_16_bit_range_survives_the_int16_transfer():
    img = ramp((70, 50), top=65535, seed=24)
    assert img.max() > 60000
    cfg = PreprocessConfig(height=64, width=32)
    out = pt.preprocess_batch([img], "vfa", cfg)[0].numpy()
    assert np.abs(out - preprocess(img, "vfa", cfg)).mean() <= 1e-4
