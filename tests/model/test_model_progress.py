"""Training's progress (issue 16): epochs with loss, validation MAE and ETA on a terminal; one INFO line
per epoch and a summary off it (epi_spineage.progress)."""

from __future__ import annotations

import io
import logging
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(epochs: int = 2):
    from torch.utils.data import TensorDataset

    from epi_spineage.model import training
    from epi_spineage.model.network import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=g)
    ages = 40 + 60 * torch.rand(16, generator=g)
    torch.manual_seed(0)
    net = build_model("mobilenetv3_small_050", head_hidden=8)
    cfg = training.TrainConfig(
        manifest="unused.csv", out="unused", epochs=epochs, patience=epochs, batch_size=8, eval_batch_size=16
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return training.fit_network(
            net, TensorDataset(x, ages), TensorDataset(x[:4], ages[:4]), cfg, torch.device("cpu"), desc="train"
        )[1]
    finally:
        torch.set_num_threads(before)


def test_training_shows_epochs_with_loss_mae_and_eta_on_a_terminal(monkeypatch):
    from epi_spineage import progress

    progress.set_quiet(False)
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    history = _fit()
    drawn = tty.getvalue()
    last = history[-1]
    assert "train: 100%" in drawn and "2/2" in drawn
    assert re.search(r"\d{2}:\d{2}<\d{2}:\d{2}", drawn)  # elapsed<ETA
    assert f"loss {last['train_loss']:.3f}, val MAE {last['val_mae_years']:.2f}" in drawn
    assert f"(best {last['best_val_mae_years']:.2f} at epoch {last['best_epoch']})" in drawn
    assert "epoch 1/2" in drawn  # the inner bar over the batches


def test_training_off_a_terminal_logs_each_epoch_and_a_summary_at_info(caplog):
    with caplog.at_level(logging.INFO, logger="epi_spineage"):
        history = _fit()
    msgs = [r.getMessage() for r in caplog.records if r.name == "epi_spineage.model.training"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "epi_spineage.model.training")
    assert [m for m in msgs if re.match(r"train epoch \d: loss", m)] and len(history) == 2
    summary = [m for m in msgs if m.startswith("train: 2/2 epoch in ")]
    assert len(summary) == 1 and "val MAE" in summary[0]
