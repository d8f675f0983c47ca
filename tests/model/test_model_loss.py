import math

import pytest

torch = pytest.importorskip("torch")

from epi_spineage.model import MeanVarianceLoss  # noqa: E402


def test_loss_matches_hand_computed_values():
    # 3 classes: ages 40, 41, 42.
    loss = MeanVarianceLoss(min_age=40, max_age=42)
    logits = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    ages = torch.tensor([42.0, 40.7])  # completed years: 42 and 40
    # row 1: p = (1/4, 1/2, 1/4), m = 41, v = 1/2, CE = ln 4; row 2: p = 1/3 each, m = 41, v = 2/3, CE = ln 3
    l_s = (math.log(4) + math.log(3)) / 2
    l_m = ((41 - 42) ** 2 + (41 - 40) ** 2) / (2 * 2)
    l_v = (0.5 + 2 / 3) / 2
    parts = loss.components(logits, ages)
    assert float(parts["softmax"]) == pytest.approx(l_s, rel=1e-6)
    assert float(parts["mean"]) == pytest.approx(l_m, rel=1e-6)
    assert float(parts["variance"]) == pytest.approx(l_v, rel=1e-6)
    total = loss(logits, ages)
    assert float(total) == pytest.approx(l_s + 0.2 * l_m + 0.05 * l_v, rel=1e-6)
    assert loss.last_components["total"] == pytest.approx(float(total))


def test_weights_are_configurable_and_gradients_flow():
    logits = torch.randn(4, 61, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ages = torch.tensor([45.2, 60.0, 77.9, 99.0])
    plain = MeanVarianceLoss(lambda_mean=0.0, lambda_var=0.0)
    ce = torch.nn.functional.cross_entropy(logits, (torch.floor(ages) - 40).long())
    assert float(plain(logits, ages).detach()) == pytest.approx(float(ce.detach()), rel=1e-6)
    heavy = MeanVarianceLoss(lambda_mean=1.0, lambda_var=1.0)
    total = heavy(logits, ages)
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert float(total.detach()) > float(ce.detach())


def test_ages_outside_range_are_clipped():
    loss = MeanVarianceLoss(min_age=40, max_age=42)
    logits = torch.tensor([[0.3, -0.2, 1.0]])
    assert float(loss(logits, torch.tensor([105.0]))) == pytest.approx(float(loss(logits, torch.tensor([42.0]))))
    assert float(loss(logits, torch.tensor([20.0]))) == pytest.approx(float(loss(logits, torch.tensor([40.0]))))


def test_bad_shapes_and_settings_fail():
    with pytest.raises(ValueError):
        MeanVarianceLoss(min_age=50, max_age=40)
    with pytest.raises(ValueError):
        MeanVarianceLoss()(torch.zeros(2, 5), torch.tensor([50.0, 60.0]))
