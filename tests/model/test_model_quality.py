"""Issue 11 item 2: a degenerate model must not look perfect.

Presets budget by epochs (same steps on a slow machine as on a fast one); training ends with a quality
verdict; a weak model is refused (exit 2, one line) unless --allow-weak-model, which saves it flagged."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from epi_spineage.model.evaluation import model_quality

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


@pytest.fixture(autouse=True)
def one_torch_thread():
    # On a loaded two-core machine two OpenMP threads spin against each other (60x slower measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- the verdict's rules
def test_verdict_rules_on_both_sides():
    rng = np.random.default_rng(0)
    age = rng.uniform(45, 90, 200)
    good = age + rng.normal(0, 5, 200)
    q = model_quality(age, good, mean_predictor_age=age.mean(), alphas={"pooled": -0.3})
    assert q["verdict"] == "ok" and q["reasons"] == [] and q["r"] > 0.8
    assert q["mae_years"] < q["mae_mean_predictor_years"] and not q["allowed_weak"]
    # the flat predictor of the issue: every prediction 66.12, alpha -1
    flat = model_quality(age, np.full(200, 66.12), mean_predictor_age=66.12, alphas={"pooled": -1.0})
    assert flat["verdict"] == "weak" and flat["prediction_sd_years"] == 0.0
    text = " ".join(flat["reasons"])
    assert "flat predictor" in text and "no better than the mean-age predictor" in text and "|alpha| > 0.9" in text
    # each rule alone, just past its bound and just inside it
    sd = age.std(ddof=1)
    shrunk = age.mean() + 0.09 * (age - age.mean()) + 0.0  # SD = 9% of the age SD
    assert any("flat" in r for r in model_quality(age, shrunk, mean_predictor_age=0.0)["reasons"])
    wider = age.mean() + 0.11 * (age - age.mean())
    assert not any("flat" in r for r in model_quality(age, wider, mean_predictor_age=0.0)["reasons"])
    assert model_quality(age, good, mean_predictor_age=age.mean(), alphas={"vfa": -0.91})["verdict"] == "weak"
    assert model_quality(age, good, mean_predictor_age=age.mean(), alphas={"vfa": -0.89})["verdict"] == "ok"
    worse = age.mean() + (age - age.mean()) * 0.5 + rng.normal(0, 3 * sd, 200)  # noisier than the mean
    assert any("no better" in r for r in model_quality(age, worse, mean_predictor_age=age.mean())["reasons"])
    assert model_quality(age[:4], good[:4], mean_predictor_age=60.0)["verdict"] == "weak"  # too few to judge


# ---------------------------------------------------------------------------- deterministic budget
def test_presets_budget_by_epochs_not_the_clock():
    from epi_spineage.model.presets import PRESETS

    for name, settings in PRESETS.items():
        assert settings.get("max_minutes") is None, name
        assert settings["epochs"] >= 1 and settings["patience"] >= settings["epochs"], name


def _fit(monkeypatch, cfg, *, seconds_per_tick: float):
    """Train a tiny network with the clock advancing ``seconds_per_tick`` on every reading."""
    import types

    from torch.utils.data import TensorDataset

    from epi_spineage.model import training
    from epi_spineage.model.network import build_model

    clock = {"t": 0.0}

    def fake_monotonic():
        clock["t"] += seconds_per_tick
        return clock["t"]

    monkeypatch.setattr(training, "time", types.SimpleNamespace(monotonic=fake_monotonic))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=g)
    ages = 40 + 60 * torch.rand(16, generator=g)
    torch.manual_seed(0)
    net = build_model("mobilenetv3_small_050", head_hidden=8)
    _, history = training.fit_network(
        net, TensorDataset(x, ages), TensorDataset(x[:4], ages[:4]), cfg, torch.device("cpu")
    )
    return history


def test_the_same_steps_on_a_slow_machine_as_on_a_fast_one(monkeypatch, tmp_path):
    import dataclasses

    from epi_spineage.cli.train import build_parser, config_from_args

    # a preset on the user's own manifest needs the real key (the CLI resolves it)
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,participant_id,age_years,modality\nx.png,P1,60,radiograph\n")
    cfg = config_from_args(
        build_parser().parse_args(
            ["--preset", "phantom-tiny", "--manifest", str(manifest), "--out", str(tmp_path / "o")]
        )
    )
    assert cfg.max_minutes is None and cfg.epochs == 24
    small = dataclasses.replace(
        cfg, epochs=3, patience=3, batch_size=8, warmup_steps=2, augment=False, eval_batch_size=16
    )
    fast = _fit(monkeypatch, small, seconds_per_tick=0.001)
    slow = _fit(monkeypatch, small, seconds_per_tick=600.0)  # ten minutes pass at every clock reading
    assert [r["steps"] for r in fast] == [r["steps"] for r in slow] == [2, 4, 6]
    assert [r["lr"] for r in fast] == [r["lr"] for r in slow]
    np.testing.assert_allclose([r["train_loss"] for r in fast], [r["train_loss"] for r in slow], rtol=1e-5)
    # the old preset's wall-clock budget stopped after the first epoch on such a machine
    timed = _fit(monkeypatch, dataclasses.replace(small, max_minutes=1.5), seconds_per_tick=600.0)
    assert len(timed) == 1


# ---------------------------------------------------------------------------- refusal and the flag
@pytest.fixture
def flat_network(monkeypatch):
    """Training builds a network whose output is a constant: the last layer's weights are zero and only
    its bias learns (a 'constant output head', the degenerate model of the issue)."""
    from epi_spineage.model import pipeline
    from epi_spineage.model.network import build_model

    def build_flat(*args, **kwargs):
        net = build_model(*args, **kwargs)
        last = net.head[-1]
        with torch.no_grad():
            last.weight.zero_()
        for p in net.parameters():
            p.requires_grad_(p is last.bias)
        return net

    monkeypatch.setattr(pipeline, "build_model", build_flat)
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")


def _args(toy_manifest, out):
    return [
        "--manifest",
        str(toy_manifest),
        "--out",
        str(out),
        "--backbone",
        "mobilenetv3_small_050",
        "--image-size",
        "64x32",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--lr",
        "1e-2",
        "--workers",
        "0",
        "--bias-folds",
        "0",
    ]


def test_a_flat_model_is_refused_in_one_line(flat_network, toy_manifest, tmp_path, capsys):
    from epi_spineage import train

    out = tmp_path / "flat"
    assert train.main(_args(toy_manifest, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weak model, not saved" in err and "flat predictor" in err
    assert "--allow-weak-model" in err and "Traceback" not in err
    assert not (out / "meta.json").exists() and not (out / "model.safetensors").exists()


def test_allow_weak_model_saves_it_flagged_in_meta_and_the_model_row(flat_network, toy_manifest, tmp_path, capsys):
    from epi_spineage import train
    from epi_spineage.db.store import model_row
    from epi_spineage.model import load_checkpoint

    out = tmp_path / "flat"
    assert train.main(_args(toy_manifest, out) + ["--allow-weak-model"]) == 0
    printed = capsys.readouterr().out
    quality = json.loads((out / "meta.json").read_text())["quality"]
    assert quality["verdict"] == "weak" and quality["allowed_weak"] is True
    assert quality["prediction_sd_years"] < 1e-3 and quality["split"] == "test"
    assert {"mae_years", "mae_mean_predictor_years", "r", "prediction_sd_years", "reasons"} <= set(quality)
    # the summary says so; an exactly flat model gets no bias correction at all (its fit is degenerate)
    assert "WEAK MODEL" in printed and "saved only because of --allow-weak-model" in printed
    assert json.loads((out / "meta.json").read_text())["bias_correction"] is None
    # the scorer stores this meta in models.metadata_json: every score carries the flag through its model
    row = model_row(load_checkpoint(out))
    assert json.loads(row["metadata_json"])["quality"]["verdict"] == "weak"


def test_the_summary_of_a_weak_model_never_shows_corrected_accuracy_alone():
    # The case: alpha -1.0000 made "corrected MAE 0.00, r 1.000" look perfect.
    from epi_spineage.model.pipeline import summary_text

    rows = [
        {
            "split": "test",
            "modality": "all",
            "prediction": p,
            "n": 160,
            "mae_years": m,
            "rmse_years": m,
            "pearson_r": r,
            "pad_mean_years": 0.0,
            "pad_sd_years": 1.0,
            "coverage90": float("nan"),
        }
        for p, m, r in (("uncorrected", 13.1, -0.02), ("corrected", 0.0, 1.0))
    ]
    age = np.linspace(45, 90, 160)
    quality = model_quality(
        age, np.full(160, 66.12) + 1e-3 * np.sin(age), mean_predictor_age=66.12, alphas={"pooled": -1.0}
    )
    quality["allowed_weak"] = True
    meta = {
        "model_id": "m",
        "backbone": "b",
        "image_size": [64, 32],
        "metrics": rows,
        "temperature": 1.0,
        "bias_correction": {
            "method": "beheshti",
            "source": "validation-fallback",
            "alpha": -1.0,
            "beta": 66.0,
            "n": 160,
        },
        "quality": quality,
    }
    text = summary_text(meta)
    assert "WEAK MODEL" in text.splitlines()[0] and "corrected (weak model: meaningless)" in text
    assert not re.search(r"\scorrected\s+160\s", text)  # no bare "corrected" row
    assert "|alpha| > 0.9" in text and "flat predictor" in text
    ok = dict(meta, quality=dict(quality, verdict="ok", reasons=[]))
    assert "model quality: ok" in summary_text(ok) and "meaningless" not in summary_text(ok)
