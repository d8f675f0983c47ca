"""``python -m epi_spineage.preprocess``: writes a PNG; user mistakes exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from epi_spineage.preprocess import main

from .conftest import make_dataset, ramp, to_bytes

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def dx_file(tmp_path):
    p = tmp_path / "lat.dcm"
    p.write_bytes(to_bytes(make_dataset(ramp((90, 60), seed=31), modality="DX")))
    return p


def test_writes_png_of_the_model_input(dx_file, tmp_path, capsys):
    out, before = tmp_path / "x.png", tmp_path / "b.png"
    rc = main([str(dx_file), "--out", str(out), "--size", "64x32", "--before", str(before)])
    assert rc == 0
    png = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert png.shape == (64, 32) and png.dtype == np.uint8 and png.max() == 255
    assert cv2.imread(str(before), cv2.IMREAD_UNCHANGED).shape == (90, 60)
    text = capsys.readouterr()
    assert "modality=radiograph (header)" in text.out and "content_hash=" in text.out
    assert "PID-SECRET" not in text.out + text.err


def test_archive_reference_and_16_bit(dx_file, tmp_path):
    arc = tmp_path / "a.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.write(dx_file, "p1/lat.dcm")
    out = tmp_path / "y.png"
    assert (
        main(
            [
                f"{arc}::p1/lat.dcm",
                "--out",
                str(out),
                "--size",
                "32x16",
                "--bit-depth",
                "16",
                "--equalization",
                "full",
                "--modality",
                "vfa",
            ]
        )
        == 0
    )
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["missing.dcm", "--out", "{tmp}/x.png"], "missing.dcm: no such file"),
        (["{dx}", "--out", "{tmp}/x.png", "--size", "big"], "--size"),
        (["{dx}", "--out", "{tmp}/no/such/dir/x.png"], "does not exist"),
        (["{dx}", "--out", "{tmp}/x.png", "--margin-crop", "0.9"], "margin_crop_area"),
        (["{dx}", "--out", "{tmp}/x.png", "--equalization", "clahe"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, needle, dx_file, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, dx=dx_file) for a in argv]
    with _maybe_exit() as code:
        code.value = main(argv)
    assert code.value == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_module_runs_and_has_help():
    res = subprocess.run(
        [sys.executable, "-m", "epi_spineage.preprocess", "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "examples:" in res.stdout and "ARCHIVE::MEMBER" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "epi_spineage.preprocess", "nope.dcm", "--out", "x.png"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "nope.dcm" in res.stderr


class _Code:
    value = None


class _maybe_exit:
    """argparse's own errors raise SystemExit(2); ours return 2. Accept both."""

    def __enter__(self):
        self.code = _Code()
        return self.code

    def __exit__(self, exc_type, exc, tb):
        if exc_type is SystemExit:
            self.code.value = exc.code
            return True
        return False
