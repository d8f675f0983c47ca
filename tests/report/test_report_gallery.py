"""Grad-CAM gallery in the report: built with a tiny checkpoint; a clear note without the inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from epi_spineage.report import main
from epi_spineage.report.gallery import build_gallery


def test_gallery_needs_model_and_images():
    reason = build_gallery(None, "manifest.csv")
    assert isinstance(reason, str) and "--model" in reason


@pytest.mark.slow
def test_report_with_gradcam_gallery(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    cv2 = pytest.importorskip("cv2")
    from epi_spineage.model import build_model
    from epi_spineage.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(build_model("mobilenetv3_small_050"), ckpt, {"preprocess": {"height": 64, "width": 32}})
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        img = rng.normal(800, 60, size=(96, 48)).clip(0, 4095).astype(np.uint16)
        img[40 + 5 * i :, 16:32] += 1500
        cv2.imwrite(str(tmp_path / f"img{i}.png"), img)
        rows.append(
            {"image": f"img{i}.png", "participant_id": f"P{i}", "age_years": 50.0 + 5 * i, "modality": "radiograph"}
        )
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "out"
    rc = main(
        [
            "--n-derivation",
            "1000",
            "--n-external",
            "500",
            "--out",
            str(out),
            "--no-svg",
            "--model",
            str(ckpt),
            "--images",
            str(tmp_path / "manifest.csv"),
            "--gallery-size",
            "4",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    text = (out / "index.html").read_text()
    assert 'id="gradcam"' in text and 'id="fig-gradcam_gallery"' in text
    assert (out / "figures" / "gradcam_gallery.png").stat().st_size > 5000
    assert json.loads((out / "results.json").read_text())["meta"]["synthetic"] is True
