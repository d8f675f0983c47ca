import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from epi_spineage import explain, predict, train  # noqa: E402
from epi_spineage.model import load_checkpoint  # noqa: E402


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def trained(toy_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = [
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
        "2",
        "--lr",
        "1e-3",
        "--workers",
        "0",
        "--bias-folds",
        "2",
        "--fold-epochs",
        "1",
        "--bias-by-modality",
        "--allow-weak-model",
    ]
    mp = pytest.MonkeyPatch()
    mp.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    try:
        assert train.main(args) == 0
    finally:
        mp.undo()
    return out, args


def test_train_writes_a_loadable_checkpoint(trained, capsys):
    out, _ = trained
    for name in ("model.safetensors", "meta.json", "last.pt", "metrics.csv", "metrics.jsonl", "predictions.csv"):
        assert (out / name).is_file(), name
    loaded = load_checkpoint(out)
    meta = loaded.meta
    assert meta["bias_correction_source"] == "oof-2fold" and meta["bias_correction"]["fit_ids"]
    assert all(i.startswith("p_") for i in meta["bias_correction"]["fit_ids"])
    kinds = {(m["split"], m["prediction"]) for m in meta["metrics"]}
    assert ("test", "corrected") in kinds and ("test", "uncorrected") in kinds and ("train", "corrected") not in kinds
    assert {c["modality"] for c in meta["coverage"]} >= {"all", "radiograph", "vfa"}
    assert len(meta["history"]) == 2
    # raw participant ids never leave the manifest: outputs hold keyed hashes only
    for name in ("meta.json", "predictions.csv", "metrics.csv"):
        assert "P000" not in (out / name).read_text().replace("img0", ""), name
    assert "participant_pseudonym" in (out / "predictions.csv").read_text().splitlines()[0]
    per_mod = loaded.bias_correction_by_modality
    assert "radiograph" in per_mod and per_mod["radiograph"].source == "oof-2fold, radiograph only"
    assert per_mod["radiograph"].n_ < loaded.bias_correction.n_


def test_resume_continues_from_last_epoch(trained, tmp_path, monkeypatch, capsys):
    import shutil

    out, args = trained
    run = tmp_path / "resumed"
    shutil.copytree(out, run)
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    args = [a if a != str(out) else str(run) for a in args]
    args[args.index("--epochs") + 1] = "3"
    args[args.index("--bias-folds") + 1] = "0"
    assert train.main(args + ["--resume"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(s)["epoch"] for s in lines if json.loads(s)["stage"] == "train"]
    assert epochs == [1, 2, 3]
    assert "validation-fallback" in json.loads((run / "meta.json").read_text())["bias_correction_source"]


def test_predict_and_explain(trained, toy_manifest, tmp_path, capsys):
    out, _ = trained
    img = str(toy_manifest.parent / "img000.png")
    assert (
        predict.main(
            [
                img,
                "--model",
                str(out),
                "--format",
                "json",
                "--modality",
                "radiograph",
                "--gradcam",
                str(tmp_path / "cams"),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert 40 <= rows[0]["spine_age_years"] <= 100 and rows[0]["spine_age_sd_years"] > 0
    assert (tmp_path / "cams").is_dir() and len(list((tmp_path / "cams").glob("*.png"))) == 1
    assert (
        explain.main(
            [
                "--manifest",
                str(toy_manifest),
                "--top-accelerated",
                "2",
                "--model",
                str(out),
                "--out",
                str(tmp_path / "gallery"),
            ]
        )
        == 0
    )
    html = (tmp_path / "gallery" / "index.html").read_text()
    assert html.count("<figure>") == 4 and "PAD" in html


def test_bad_input_exits_2_with_one_line(trained, toy_manifest, tmp_path, capsys):
    out, _ = trained
    _one_line_error(capsys, predict.main([str(tmp_path / "missing.png"), "--model", str(out)]))
    (tmp_path / "junk.dcm").write_bytes(b"not an image at all")
    _one_line_error(capsys, predict.main([str(tmp_path / "junk.dcm"), "--model", str(out)]))
    _one_line_error(capsys, predict.main([str(toy_manifest), "--model", str(tmp_path)]))
    _one_line_error(capsys, train.main(["--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]))
    _one_line_error(capsys, train.main(["--out", str(tmp_path / "o")]))
    _one_line_error(capsys, train.main(["--preset", "nope", "--out", str(tmp_path / "o")]))
    _one_line_error(
        capsys, train.main(["--manifest", str(toy_manifest), "--out", str(tmp_path / "o"), "--image-size", "big"])
    )
    _one_line_error(capsys, explain.main(["--model", str(out), "--out", str(tmp_path / "g")]))


@pytest.mark.slow
def test_phantom_tiny_preset_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny"
    # The preset exactly as shipped (about 2 CPU minutes): it must pass the quality verdict at the demo's size.
    # With fewer phantoms its epoch budget makes too few steps to leave the mean-age plateau (at 300
    # phantoms it ended flat), so a smaller run would fail the verdict.
    assert train.main(["--preset", "phantom-tiny", "--out", str(out)]) == 0
    loaded = load_checkpoint(out)
    assert loaded.meta["quality"]["verdict"] == "ok"
    assert loaded.meta["synthetic"] and "SYNTHETIC" in loaded.meta["notice"]
    assert loaded.meta["bias_correction_source"] == "validation-fallback"
    assert "SYNTHETIC" in capsys.readouterr().out


def test_preset_on_a_real_manifest_is_not_synthetic_and_needs_the_key(tmp_path, monkeypatch):
    # A preset's settings on the user's own images must not borrow the demo's public key or label.
    from epi_spineage.cli.train import build_parser, config_from_args
    from epi_spineage.errors import UserError
    from epi_spineage.model.pipeline import _pseudonym_key

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,participant_id,age_years,modality\nx.dcm,P1,60,radiograph\n")
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)
    args = build_parser().parse_args(
        ["--preset", "phantom-tiny", "--manifest", str(manifest), "--out", str(tmp_path / "o")]
    )
    with pytest.raises(UserError, match="scorer's key"):
        config_from_args(args)
    key_file = tmp_path / "key"
    key_file.write_text("a-key-of-at-least-16-bytes\n")
    args = build_parser().parse_args(
        [
            "--preset",
            "phantom-tiny",
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "o"),
            "--key-file",
            str(key_file),
        ]
    )
    cfg = config_from_args(args)
    assert cfg.synthetic is False and cfg.key == b"a-key-of-at-least-16-bytes"
    # model code never falls back to a key (the demo key is cli/train.py's decision, for synthetic presets only)
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", "an-environment-key-0123")
    cfg.key = None
    with pytest.raises(UserError):
        _pseudonym_key(cfg)
