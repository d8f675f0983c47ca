import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


@pytest.mark.gpu
def test_cuda_bf16_prediction_matches_cpu(tmp_path):
    from epi_spineage.imaging.preprocess import PreprocessConfig
    from epi_spineage.model import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(
        build_model("mobilenetv3_small_050"), tmp_path, {"preprocess": PreprocessConfig(height=128, width=64)}
    )
    x = torch.rand(4, 1, 128, 64, generator=torch.Generator().manual_seed(0))
    cpu_mean, cpu_sd = load_checkpoint(tmp_path).predict(x)
    gpu = load_checkpoint(tmp_path, map_location="cuda")
    mean, sd = gpu.predict(x)  # bf16 autocast, channels-last
    assert next(gpu.network.parameters()).is_cuda
    np.testing.assert_allclose(mean, cpu_mean, atol=0.5)
    np.testing.assert_allclose(sd, cpu_sd, atol=0.5)
