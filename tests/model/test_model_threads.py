"""Training pins torch's CPU threads when asked (phantom-tiny: 1) and gives the caller's setting back.

On a loaded two-core machine two intra-op threads wait on each other at every operation (6 steps took 48 s
on 2 threads vs 0.85 s on 1), so the CPU demo preset trains on one thread."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


def test_the_cpu_presets_train_on_one_thread():
    from epi_spineage.model.presets import PRESETS

    assert PRESETS["phantom-tiny"]["threads"] == 1
    assert PRESETS["phantom-bench"]["threads"] == 1


def test_threads_pin_the_training_and_the_caller_gets_its_setting_back(toy_manifest, tmp_path, monkeypatch):
    from epi_spineage import train
    from epi_spineage.model import pipeline

    seen: list[int] = []
    real = pipeline.fit_network

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_network", spy)
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "m"
        argv = ["--manifest", str(toy_manifest), "--out", str(out), "--backbone", "mobilenetv3_small_050"]
        argv += ["--image-size", "64x32", "--epochs", "1", "--workers", "0", "--bias-folds", "0"]
        assert train.main([*argv, "--threads", "1", "--allow-weak-model"]) == 0
        assert seen == [1]
        assert torch.get_num_threads() == 2  # restored for the caller (e.g. the rest of a test session)
        assert json.loads((out / "meta.json").read_text())["training"]["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_threads_below_one_is_a_one_line_error(tmp_path, capsys):
    from epi_spineage import train

    assert train.main(["--preset", "phantom-tiny", "--out", str(tmp_path / "o"), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads must be at least 1" in err
