import numpy as np
import pytest

from epi_spineage.model.calibration import fit_temperature, interval_coverage, predictive_interval

_CLASS_AGES = np.arange(40, 101)


def _gaussian_logits(centres, sd, ages=_CLASS_AGES):
    # log of an (unnormalised) Gaussian over the class ages
    return -((ages[None, :] + 0.5 - centres[:, None]) ** 2) / (2 * sd**2)


@pytest.mark.parametrize("model_sd", [1.5, 12.0])  # over- and under-confident
def test_temperature_moves_coverage_to_090(model_sd):
    rng = np.random.default_rng(0)
    n = 600
    truth = rng.uniform(50, 90, n)
    centres = truth + rng.normal(0, 5.0, n)  # real error SD 5
    logits = _gaussian_logits(centres, model_sd)
    before = interval_coverage(logits, truth)
    t = fit_temperature(logits, truth)
    after = interval_coverage(logits, truth, t)
    assert abs(after - 0.9) < abs(before - 0.9)
    assert abs(after - 0.9) < 0.02
    assert (t > 1) == (model_sd < 5)
    # and on fresh data from the same process the fitted T still covers about 90%
    truth2 = rng.uniform(50, 90, n)
    logits2 = _gaussian_logits(truth2 + rng.normal(0, 5.0, n), model_sd)
    assert abs(interval_coverage(logits2, truth2, t) - 0.9) < 0.04


def test_interval_of_a_point_mass_is_its_year():
    logits = np.full((1, 61), -1e4)
    logits[0, 20] = 0.0  # all mass on class 60 = [60, 61)
    lo, hi = predictive_interval(logits, 1.0, 0.9)
    assert lo[0] == pytest.approx(60.05) and hi[0] == pytest.approx(60.95)


@pytest.mark.needs_imaging  # torch
def test_temperature_widens_sd_but_keeps_the_point_estimate():
    # A temperature fitted for coverage must not move the spine age itself: T > 1 flattens the
    # softmax, which would drag every expectation toward the middle of the age range.
    import torch

    from epi_spineage.model.network import logits_to_age

    gen = torch.Generator().manual_seed(3)
    ages = torch.arange(40, 101, dtype=torch.float32)
    logits = 4 * torch.randn(8, ages.numel(), generator=gen)
    m1, sd1 = logits_to_age(logits, ages, 1.0)
    m3, sd3 = logits_to_age(logits, ages, 3.0)
    p = torch.softmax(logits, dim=1)
    assert torch.allclose(m1, (p * (ages + 0.5)).sum(dim=1), atol=1e-4)  # completed years at their midpoints
    assert torch.allclose(m3, m1)
    assert bool((sd3 > sd1).all())


@pytest.mark.needs_imaging  # torch
def test_a_perfect_completed_year_model_has_no_pad_bias():
    # Targets are completed years; a model certain of floor(age) must still give PAD ~ 0 on fractional ages.
    import torch

    from epi_spineage.model.network import logits_to_age

    rng = np.random.default_rng(0)
    age = rng.uniform(40, 99.99, 2000)
    ages = torch.arange(40, 101, dtype=torch.float32)
    logits = torch.full((age.size, ages.numel()), -30.0)
    logits[torch.arange(age.size), torch.from_numpy(np.floor(age).astype(np.int64) - 40)] = 30.0
    mean, _ = logits_to_age(logits, ages)
    assert abs(float(np.mean(mean.numpy() - age))) < 0.03
