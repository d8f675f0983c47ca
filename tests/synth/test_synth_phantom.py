"""Phantoms: shape, determinism, conditions, age-monotone statistics, and a ridge baseline."""

from __future__ import annotations

import numpy as np
import pytest

from epi_spineage.errors import UserError
from epi_spineage.synth.phantom import render_phantom, render_phantom_with_truth

cv2 = pytest.importorskip("cv2")


def test_shapes_dtype_and_bits():
    r = render_phantom(60, style="radiograph", seed=1, scale=0.1)
    v = render_phantom(60, style="vfa", seed=1, scale=0.25)
    assert r.dtype == np.uint16 and r.shape == (240, 160)
    assert v.dtype == np.uint16 and v.shape == (250, 100)
    img, truth = render_phantom_with_truth(60, style="radiograph", seed=2, scale=0.1, bits_stored=14)
    assert truth["bits_stored"] == 14 and img.max() < 2**14 and img.max() > 2**12
    full = render_phantom(60, style="radiograph", seed=1, scale=1.0)
    assert 2000 <= full.shape[0] <= 3000


def test_deterministic_for_seed_and_rng():
    a = render_phantom(70, seed=3, scale=0.1)
    b = render_phantom(70, rng=np.random.default_rng(3), scale=0.1)
    c = render_phantom(70, seed=4, scale=0.1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_conditions_are_drawn():
    _, t = render_phantom_with_truth(
        55, seed=5, scale=0.1, fractures=[("L1", "wedge", 3)], prosthesis=True, aortic_plaques=6
    )
    assert t["fractures"] == [{"level": "L1", "kind": "wedge", "grade": 3}] and t["fracture_grade_max"] == 3
    assert t["prosthesis"] and len(t["instrumented_levels"]) >= 2 and t["aortic_plaques"] == 6
    plain, tp = render_phantom_with_truth(55, seed=6, scale=0.1, prosthesis=False, bits_stored=12)
    metal, tm = render_phantom_with_truth(55, seed=6, scale=0.1, prosthesis=True, bits_stored=12)
    # Metal saturates: many more near-white pixels inside the field with a prosthesis.
    assert (metal > 0.97 * 4095).sum() > (plain > 0.97 * 4095).sum() + 20


def test_bad_arguments():
    with pytest.raises(UserError):
        render_phantom(60, style="ct")
    with pytest.raises(UserError):
        render_phantom(60, scale=0.1, colour="red")
    with pytest.raises(UserError):
        render_phantom(60, style="vfa", scale=0.2, fractures=[("L5", "wedge", 1)])  # VFA stops at L4
    with pytest.raises(UserError):
        render_phantom(60, scale=0.1, fractures=[("L2", "wedge", 4)])


@pytest.mark.parametrize("style,scale", [("radiograph", 0.08), ("vfa", 0.25)])
def test_statistics_move_monotonically_with_age(style, scale):
    bins = [42, 52, 62, 72, 82, 92]
    intensity, osteophytes, plaques = [], [], []
    for k, age in enumerate(bins):
        vals, ost, pl = [], [], []
        for i in range(40):
            img, t = render_phantom_with_truth(age, style=style, seed=10_000 * k + i, scale=scale)
            mask = t["vertebra_mask"] > 0
            vals.append(img[mask].mean() / (2 ** t["bits_stored"] - 1))
            ost.append(t["n_osteophytes"])
            pl.append(t["aortic_plaques"])
        intensity.append(np.mean(vals))
        osteophytes.append(np.mean(ost))
        plaques.append(np.mean(pl))
    assert np.all(np.diff(intensity) < 0), intensity
    assert np.all(np.diff(osteophytes) > 0), osteophytes
    assert np.all(np.diff(plaques[1:]) > 0), plaques


def _features(img, bits):
    f = img.astype(np.float32) / (2**bits - 1)
    return cv2.resize(f, (16, 32), interpolation=cv2.INTER_AREA).ravel()


@pytest.mark.parametrize("style,scale", [("radiograph", 0.08), ("vfa", 0.2)])
def test_ridge_baseline_learns_age_but_not_perfectly(style, scale):
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(42)
    n = 360
    ages = rng.uniform(40, 90, n)
    spine = ages + rng.normal(0, 4.5, n)  # images follow spine age; the label is chronological age
    x = []
    for i in range(n):
        img, t = render_phantom_with_truth(spine[i], style=style, seed=i, scale=scale)
        x.append(_features(img, t["bits_stored"]))
    x = np.array(x)
    n_tr = 250
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[:n_tr], ages[:n_tr])
    mae = np.abs(model.predict(x[n_tr:]) - ages[n_tr:]).mean()
    base = np.abs(ages[:n_tr].mean() - ages[n_tr:]).mean()
    assert 0.5 <= mae / base <= 0.9, (mae, base, mae / base)
