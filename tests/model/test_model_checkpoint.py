import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from epi_spineage.errors import UserError  # noqa: E402
from epi_spineage.imaging.preprocess import PreprocessConfig  # noqa: E402
from epi_spineage.model import BiasCorrection, build_model, load_checkpoint, load_init_weights, save_checkpoint  # noqa: E402

BACKBONE = "mobilenetv3_small_050"
CFG = PreprocessConfig(height=64, width=32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model(BACKBONE, max_age=90)
    rng = np.random.default_rng(0)
    age = rng.uniform(40, 90, 50)
    bias = BiasCorrection(source="test").fit(age, age + 0.3 * (65 - age) + rng.normal(0, 1, 50))
    out = tmp_path_factory.mktemp("ckpt")
    meta = save_checkpoint(
        net,
        out,
        {
            "preprocess": CFG,
            "temperature": 1.7,
            "bias_correction": bias,
            "manifest_hash": "abc",
            "metrics": [{"split": "val", "mae_years": 3.0}],
        },
    )
    return net.eval(), out, meta


def test_round_trip_predicts_the_same(saved):
    net, out, meta = saved
    assert (out / "model.safetensors").is_file() and (out / "meta.json").is_file()
    loaded = load_checkpoint(out, expect_preprocess=CFG)
    assert loaded.model_id == meta["model_id"] and loaded.temperature == 1.7
    assert (loaded.min_age, loaded.max_age) == (40, 90)
    assert loaded.preprocess_config == CFG
    assert loaded.bias_correction.alpha_ == pytest.approx(meta["bias_correction"]["alpha"])
    assert len(loaded.weights_hash) == 64 and loaded.weights_hash == meta["weights_sha256"]
    x = torch.rand(3, 1, 64, 32, generator=torch.Generator().manual_seed(1))
    mean, sd = loaded.predict(x)
    with torch.no_grad():
        logits = net(x)
    ages = torch.arange(40, 91, dtype=torch.float32)
    m = (torch.softmax(logits, dim=1) * (ages + 0.5)).sum(1)  # class midpoints; ignores the temperature
    p_t = torch.softmax(logits / 1.7, dim=1)  # the stored temperature widens the spread only
    np.testing.assert_allclose(mean, m.numpy(), rtol=1e-5)
    np.testing.assert_allclose(sd, (p_t * (ages + 0.5 - m[:, None]) ** 2).sum(1).sqrt().numpy(), rtol=1e-4)
    assert mean.shape == sd.shape == (3,) and (sd > 0).all()
    stored = json.loads((out / "meta.json").read_text())
    for key in (
        "backbone",
        "preprocess",
        "preprocess_hash",
        "image_size",
        "manifest_hash",
        "metrics",
        "package_version",
        "temperature",
        "bias_correction",
        "model_id",
    ):
        assert key in stored
    assert stored["image_size"] == [64, 32]


def test_preprocessing_mismatch_is_refused(saved):
    _, out, _ = saved
    with pytest.raises(UserError, match="height"):
        load_checkpoint(out, expect_preprocess=PreprocessConfig())
    with pytest.raises(UserError, match="other preprocessing"):
        load_checkpoint(out, expect_preprocess="0" * 64)
    load_checkpoint(out, expect_preprocess=CFG.config_hash())


def test_tampered_files_are_refused(saved, tmp_path):
    _, out, _ = saved
    for name in ("model.safetensors", "meta.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["preprocess"]["height"] = 128
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="stored hash"):
        load_checkpoint(tmp_path)
    (tmp_path / "meta.json").write_bytes((out / "meta.json").read_bytes())
    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(UserError, match="sha256"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="not a model directory"):
        load_checkpoint(tmp_path / "nothing")


def test_predict_rejects_a_wrong_batch_shape(saved):
    _, out, _ = saved
    with pytest.raises(UserError):
        load_checkpoint(out).predict(torch.zeros(2, 3, 64, 32))


def test_init_weights_sum_rgb_first_conv(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = timm.create_model(BACKBONE, pretrained=False, in_chans=3, num_classes=1000)
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(tmp_path / "w.safetensors"))
    net = build_model(BACKBONE)
    report = load_init_weights(net, tmp_path / "w.safetensors")
    first = "conv_stem.weight"
    np.testing.assert_allclose(
        net.backbone.state_dict()[first].numpy(), rgb.state_dict()[first].sum(1, keepdim=True).numpy(), rtol=1e-6
    )
    assert any("classifier" in k for k in report["unexpected"] + report["skipped"])
    torch.save({"state_dict": {"module." + k: v for k, v in rgb.state_dict().items()}}, tmp_path / "w.pth")
    load_init_weights(build_model(BACKBONE), tmp_path / "w.pth")
    with pytest.raises(UserError):
        load_init_weights(net, tmp_path / "missing.safetensors")
