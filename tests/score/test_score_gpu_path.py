"""The GPU scoring path, run on the CPU: dispatch, the optional extra, and the loop itself with a CPU
stand-in for nvImageCodec (the device-only checks are in test_score_gpu_device.py, marked ``gpu``).

The loop's logic (header parsing in workers, the device-side pixel arithmetic, torch preprocessing,
asynchronous hashing, de-duplication, fallback to the CPU reader, provenance) is the same code on
either device; only the codestream decoder differs.
"""

from __future__ import annotations

import importlib.util
import io
import shutil

import duckdb
import numpy as np
import pytest

from epi_spineage.errors import UserError
from epi_spineage.imaging.gpu_decode import CpuCodestreamDecoder
from epi_spineage.score import gpu_batches
from epi_spineage.score.pipeline import score_archives

from .conftest import TEST_KEY, phantom_dicoms


def _j2k(data: bytes, pid: str) -> bytes:
    import pydicom

    from epi_spineage.synth.dicom import dicom_bytes

    arr = pydicom.dcmread(io.BytesIO(data)).pixel_array
    return dicom_bytes(arr, compression="jpeg2000", patient_id=pid, bits_stored=12, rng=np.random.default_rng(len(pid)))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Native, JPEG 2000, RLE, MONOCHROME1 + rescale, colour, not-spine, duplicate and broken files."""
    from pydicom.data import get_testdata_file

    from epi_spineage.synth.dicom import dicom_bytes, jpeg2000_available

    if not jpeg2000_available():
        pytest.skip("no JPEG 2000 encoder")
    folder = tmp_path_factory.mktemp("gpu-archive") / "night"
    folder.mkdir()
    ph = phantom_dicoms(6, seed=7)
    for p in ph[:4]:
        (folder / p.member).write_bytes(p.data)
    (folder / "j2k_a.dcm").write_bytes(_j2k(ph[4].data, "J1"))
    (folder / "j2k_b.dcm").write_bytes(_j2k(ph[5].data, "J2"))
    import pydicom

    arr = pydicom.dcmread(io.BytesIO(ph[0].data)).pixel_array
    (folder / "rle.dcm").write_bytes(dicom_bytes(np.flipud(arr).copy(), compression="rle", patient_id="R1"))
    (folder / "mono1.dcm").write_bytes(
        dicom_bytes(
            np.fliplr(arr).copy(),
            photometric="MONOCHROME1",
            rescale_slope=2.0,
            rescale_intercept=-100.0,
            patient_id="M1",
        )
    )
    (folder / "ap.dcm").write_bytes(dicom_bytes(arr[::2].copy(), view_position="AP", patient_id="A1"))
    shutil.copy(folder / ph[1].member, folder / "copy_of_img.dcm")  # same pixels, same SOP: a duplicate
    colour = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)  # YBR_FULL baseline JPEG
    if colour is None:
        pytest.skip("pydicom's test files are not installed")
    shutil.copy(colour, folder / "colour.dcm")
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"garbage")
    _ARCHIVE[:] = [folder]
    _NAMES.clear()
    return folder


def _use_stand_in(monkeypatch, decoder_factory=CpuCodestreamDecoder):
    real = gpu_batches.resolve_decode

    def resolve(decode, device):
        if decode == "gpu":
            return gpu_batches.DecodeChoice("gpu", lambda _device: decoder_factory())
        return real(decode, device)

    monkeypatch.setattr(gpu_batches, "resolve_decode", resolve)


#: stored (hashed) source_path -> file name, for the archive folder of this module
_NAMES: dict[str, str] = {}


def _name(source_path: str) -> str:
    if not _NAMES and _ARCHIVE:
        from .conftest import stored

        _NAMES.update({stored(str(p.resolve())): p.name for p in _ARCHIVE[0].iterdir()})
    return _NAMES.get(source_path, source_path.rsplit("/", 1)[-1])


_ARCHIVE: list = []


def _results(db):
    con = duckdb.connect(str(db))
    try:
        images = {
            _name(r[0]): r[1:]
            for r in con.execute("SELECT source_path, qc_status, content_hash FROM images").fetchall()
        }
        scores = {
            _name(r[0]): r[1:]
            for r in con.execute(
                "SELECT source_path, content_hash, spine_age_years, spine_age_sd_years, decoder FROM scores"
            ).fetchall()
        }
        errors = sorted(_name(r[0]) for r in con.execute("SELECT source_path FROM errors").fetchall())
        run = con.execute("SELECT decode, n_gpu_decoded, n_cpu_fallback FROM runs").fetchall()[0]
    finally:
        con.close()
    return images, scores, errors, run


def _score(archive, tiny_model, db, decode, workers=0):
    return score_archives(
        [archive],
        tiny_model,
        db,
        key=TEST_KEY,
        batch_size=4,
        workers=workers,
        device="cpu",
        decode=decode,
        progress=False,
    )


@pytest.fixture(scope="module")
def cpu_run(archive, tiny_model, tmp_path_factory):
    import os

    os.environ.setdefault("EPI_SPINEAGE_PSEUDONYM_KEY", "test-key-0123456789abcdef")
    db = tmp_path_factory.mktemp("cpu") / "cpu.duckdb"
    summary = _score(archive, tiny_model, db, "cpu")
    return summary, _results(db)


def _assert_same_as_cpu(cpu, gpu, *, tol=0.01):
    images_c, scores_c, errors_c, _ = cpu
    images_g, scores_g, errors_g, _ = gpu
    assert images_g == images_c  # same QC outcome and the same content hash for every image
    assert errors_g == errors_c
    assert scores_g.keys() == scores_c.keys()
    for name, (h, age, sd, _) in scores_c.items():
        assert scores_g[name][0] == h
        assert abs(scores_g[name][1] - age) < tol and abs(scores_g[name][2] - sd) < tol


def test_the_gpu_loop_gives_the_cpu_hashes_and_scores(archive, tiny_model, tmp_path, cpu_run, monkeypatch, key_env):
    _use_stand_in(monkeypatch)
    summary = _score(archive, tiny_model, tmp_path / "gpu.duckdb", "gpu")
    gpu = _results(tmp_path / "gpu.duckdb")
    cpu_summary, cpu = cpu_run
    _assert_same_as_cpu(cpu, gpu)
    images, scores, errors, run = gpu
    assert (summary.n_scored, summary.n_duplicates, summary.n_not_spine, summary.n_errors) == (
        cpu_summary.n_scored,
        cpu_summary.n_duplicates,
        cpu_summary.n_not_spine,
        cpu_summary.n_errors,
    )
    decoders = {name: s[3] for name, s in scores.items()}
    assert decoders["j2k_a.dcm"] == decoders["j2k_b.dcm"] == "stand-in:openjpeg"
    assert decoders["rle.dcm"] == decoders["mono1.dcm"] == decoders["img0000.dcm"] == "gpu:raw"
    assert decoders["colour.dcm"] == "cpu:pydicom"  # colour is the CPU reader's, on either path
    assert images["ap.dcm"][0] == "not_spine" and "ap.dcm" not in scores
    assert {s[3] for s in cpu[1].values()} == {"cpu:pydicom"}
    assert run[0] == "gpu" and run[1] == summary.n_gpu_decoded and run[2] == summary.n_cpu_fallback
    assert summary.n_cpu_fallback == 1  # the colour image
    assert "decoded" in summary.line() and "by the CPU reader" in summary.line()


def test_images_the_decoder_refuses_go_to_the_cpu_reader_and_are_counted(
    archive, tiny_model, tmp_path, cpu_run, monkeypatch, key_env
):
    from epi_spineage.imaging.encapsulated import parse_dicom

    refuse = [len(parse_dicom((archive / "j2k_a.dcm").read_bytes()).data)]
    _use_stand_in(monkeypatch, lambda: CpuCodestreamDecoder(refuse=refuse))
    summary = _score(archive, tiny_model, tmp_path / "gpu.duckdb", "gpu", workers=1)
    gpu = _results(tmp_path / "gpu.duckdb")
    _assert_same_as_cpu(cpu_run[1], gpu)
    scores = gpu[1]
    assert scores["j2k_a.dcm"][3] == "cpu:pydicom"  # decoded by the CPU reader, and it says so
    assert scores["j2k_b.dcm"][3] == "stand-in:openjpeg"
    assert summary.n_cpu_fallback == 2  # the refused codestream and the colour image


def test_decode_dispatch(monkeypatch):
    monkeypatch.setattr(gpu_batches, "gpu_extra_available", lambda: False)
    assert gpu_batches.resolve_decode("cpu", "cuda").path == "cpu"
    assert gpu_batches.resolve_decode("auto", "cuda").path == "cpu"  # no extra: the CPU reader
    assert gpu_batches.resolve_decode("auto", "cpu").path == "cpu"
    with pytest.raises(UserError, match="needs a CUDA device"):
        gpu_batches.resolve_decode("gpu", "cpu")
    with pytest.raises(UserError, match=r"pip install 'epi-spineage\[gpu\]'"):
        gpu_batches.resolve_decode("gpu", "cuda")
    with pytest.raises(UserError, match="auto, cpu or gpu"):
        gpu_batches.resolve_decode("fast", "cpu")
    monkeypatch.setattr(gpu_batches, "gpu_extra_available", lambda: True)
    assert gpu_batches.resolve_decode("auto", "cuda").path == "gpu"
    assert gpu_batches.resolve_decode("gpu", "cuda").path == "gpu"
    assert gpu_batches.resolve_decode("auto", "cpu").path == "cpu"
    assert gpu_batches.default_batch_size("cuda") == 64 and gpu_batches.default_batch_size("cpu") == 16
    assert gpu_batches.default_workers("cpu") == 1 and 1 <= gpu_batches.default_workers("cuda") <= 15


def test_decode_gpu_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys, tiny_model, archive, key_env):
    import torch

    from epi_spineage.cli.score import main

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    code = main([str(archive), "--model", str(tiny_model), "--db", str(tmp_path / "x.duckdb"), "--decode", "gpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--decode gpu needs a CUDA device" in err
    assert not (tmp_path / "x.duckdb").exists()


def test_the_gpu_extra_is_optional():
    """Nothing imports nvImageCodec unless the GPU decoder is built; the extra is declared, not required."""
    import sys

    import epi_spineage.imaging.gpu_decode as gd

    assert "nvidia.nvimgcodec" not in sys.modules
    if importlib.util.find_spec("nvidia.nvimgcodec") is None:
        assert gd.gpu_extra_available() is False
        with pytest.raises(ImportError, match=r"epi-spineage\[gpu\]"):
            gd.NvImageCodecDecoder()
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    gpu = meta["project"]["optional-dependencies"]["gpu"]
    assert any(d.startswith("nvidia-nvimgcodec-cu13") for d in gpu)
    assert any(d.startswith("nvidia-nvjpeg2k-cu13") for d in gpu)
    assert not any("nvimgcodec" in d for d in meta["project"]["dependencies"])
