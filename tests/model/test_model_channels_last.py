"""``TrainConfig.channels_last`` trains in the channels-last memory format on the CPU (phantom-tiny uses it):
the same training, deterministically, up to floating-point rounding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _fit(channels_last: bool):
    from torch.utils.data import TensorDataset

    from epi_spineage.model.network import build_model
    from epi_spineage.model.training import TrainConfig, fit_network

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=g)
    ages = 40 + 60 * torch.rand(16, generator=g)
    torch.manual_seed(0)
    net = build_model("mobilenetv3_small_050", head_hidden=8)
    cfg = TrainConfig(epochs=2, patience=2, batch_size=8, lr=1e-3, augment=True, eval_batch_size=16)
    cfg = dataclasses.replace(cfg, channels_last=channels_last)
    net, history = fit_network(net, TensorDataset(x, ages), TensorDataset(x[:4], ages[:4]), cfg, torch.device("cpu"))
    return net, history


def test_channels_last_on_the_cpu_is_the_same_training_and_deterministic():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the preset trains (and quick on a busy machine)
    try:
        plain_net, plain = _fit(False)
        last_net, last = _fit(True)
        again_net, again = _fit(True)
    finally:
        torch.set_num_threads(before)
    conv = next(m for m in last_net.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert [r["train_loss"] for r in last] == [r["train_loss"] for r in again]
    assert [r["val_mae_years"] for r in last] == [r["val_mae_years"] for r in again]
    np.testing.assert_allclose([r["train_loss"] for r in last], [r["train_loss"] for r in plain], rtol=1e-3)
    np.testing.assert_allclose([r["val_mae_years"] for r in last], [r["val_mae_years"] for r in plain], rtol=1e-3)
    # the saved weights are the same numbers whatever their layout
    for (k, a), b in zip(last_net.state_dict().items(), again_net.state_dict().values()):
        assert torch.equal(a, b), k
