import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from epi_spineage.model.gradcam import gradcam, overlay  # noqa: E402


class BrightnessAgeNet(nn.Module):
    """Toy network: features = ReLU(1x1 conv(x)); expected age rises with mean feature brightness."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[[[1.0]]], [[[0.5]]]])
        self.fc = nn.Linear(2, 11)
        with torch.no_grad():
            self.fc.weight[:] = torch.linspace(-1, 1, 11)[:, None].repeat(1, 2)
            self.fc.bias.zero_()
        self.register_buffer("ages", torch.arange(40, 51, dtype=torch.float32))

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, f):
        return self.fc(f.mean(dim=(2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _image(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.1, size=(1, 1, 64, 32)).astype("float32")
    x[0, 0, 40:52, 6:18] = 1.0  # the planted bright region
    return torch.from_numpy(x)


def test_gradcam_highlights_the_planted_region():
    net = BrightnessAgeNet()
    x = _image()
    cam = gradcam(net, x, target="older")
    assert cam.shape == (1, 64, 32) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    inside = np.zeros((64, 32), bool)
    inside[40:52, 6:18] = True
    assert cam[0][inside].mean() > 5 * cam[0][~inside].mean()
    r, c = np.unravel_index(cam[0].argmax(), cam[0].shape)
    assert inside[r, c]


def test_younger_target_finds_no_younger_evidence_here():
    # Every bright pixel pushes the age up, so evidence for "younger" is empty: an all-zero map.
    cam = gradcam(BrightnessAgeNet(), _image(), target="younger")
    assert np.all(cam == 0)


def test_hooked_layer_and_overlay():
    net = BrightnessAgeNet()
    x = _image(1)
    cam = gradcam(net, x, layer="conv")  # pre-ReLU conv output through a forward hook
    assert cam[0, 45, 10] > 0.9
    img = overlay(x[0, 0].numpy(), cam[0])
    assert img.shape == (64, 32, 3) and img.dtype == np.uint8
    # the planted region is drawn red (JET high end) more than the background
    assert img[40:52, 6:18, 2].mean() > img[:30, :, 2].mean() + 50


def test_gradcam_on_a_spine_age_network():
    pytest.importorskip("timm")
    from epi_spineage.model import build_model

    torch.manual_seed(0)
    net = build_model("mobilenetv3_small_050")
    cam = gradcam(net, torch.rand(2, 1, 64, 32))
    assert cam.shape == (2, 64, 32) and np.isfinite(cam).all()
    assert cam.min() >= 0 and cam.max() <= 1
