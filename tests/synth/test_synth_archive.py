"""write_phantom_archive: folder, zip, tar, tar.gz; manifests inside and beside; determinism; CLI."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.schema import MANIFEST_COLUMNS
from epi_spineage.synth.archive import write_phantom_archive

pydicom = pytest.importorskip("pydicom")


def _read_member(archive: str, member: str) -> bytes:
    if archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        return tf.extractfile(member).read()


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_archive_round_trip(tmp_path, suffix):
    out = str(tmp_path / f"ph{suffix}")
    m = write_phantom_archive(out, n=12, seed=3, scale=0.06)
    assert list(m.columns[:5]) == list(MANIFEST_COLUMNS)
    assert all(c.startswith("true_") for c in m.columns[5:])
    beside = pd.read_csv(out + ".manifest.csv")
    inside = pd.read_csv(io.BytesIO(_read_member(out, "manifest.csv")))
    pd.testing.assert_frame_equal(beside, inside)
    pd.testing.assert_frame_equal(beside, m.astype(beside.dtypes.to_dict()), check_dtype=False)
    for row in m.itertuples():
        archive, member = row.image.split("::")
        assert archive == out
        ds = pydicom.dcmread(io.BytesIO(_read_member(archive, member)))
        # PatientID links the image to its cohort row (the scorer and cohort load hash both with one key)
        assert ds.PatientName and ds.PatientID == row.participant_id
        assert (ds.Modality == "BMD") == (row.modality == "vfa")
        assert ds.PhotometricInterpretation == row.true_photometric
        assert ds.pixel_array.shape[0] > 0


def test_folder_png_and_splits(tmp_path):
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "dir"
    m = write_phantom_archive(out, n=20, seed=4, scale=0.06, modality="vfa", image_format="png")
    assert (out / "manifest.csv").is_file()
    assert (m["modality"] == "vfa").all()
    assert m["split"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}
    assert m["participant_id"].is_unique
    img = cv2.imread(m["image"].iloc[0], cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.ndim == 2


def test_deterministic_bytes_and_age_spread(tmp_path, monkeypatch):
    frames = []
    for sub in ("a", "b"):  # same relative name, so the manifests inside match too
        (tmp_path / sub).mkdir()
        monkeypatch.chdir(tmp_path / sub)
        frames.append(write_phantom_archive("ph.zip", n=8, seed=9, scale=0.05))
    assert (tmp_path / "a" / "ph.zip").read_bytes() == (tmp_path / "b" / "ph.zip").read_bytes()
    pd.testing.assert_frame_equal(frames[0], frames[1])
    m = write_phantom_archive(tmp_path / "c.tar", n=200, seed=1, scale=0.03, modality="mixed")
    assert m["age_years"].between(40, 90).all() and m["age_years"].min() < 45 and m["age_years"].max() > 85
    assert set(m["modality"]) == {"radiograph", "vfa"}
    assert set(m["true_compression"]) == {"none", "rle", "jpeg2000"} or set(m["true_compression"]) == {"none", "rle"}
    assert set(m["true_photometric"]) == {"MONOCHROME1", "MONOCHROME2"}


def test_bad_output_name(tmp_path):
    with pytest.raises(UserError):
        write_phantom_archive(tmp_path / "x.rar", n=2, scale=0.05)
    with pytest.raises(UserError):
        write_phantom_archive(tmp_path / "x.zip", n=0)


def test_imaging_iter_archive_sees_every_image(tmp_path):
    imaging = pytest.importorskip("epi_spineage.imaging")
    if not hasattr(imaging, "iter_archive"):
        pytest.skip("imaging.iter_archive not available")
    out = str(tmp_path / "p.tar.gz")
    m = write_phantom_archive(out, n=6, seed=2, scale=0.05)
    names = {a.name for a in imaging.iter_archive(out, suffixes=[".dcm"])}
    assert names == set(m["image"])


def test_images_for_cohort_participants(tmp_path):
    from epi_spineage.synth import simulate_study

    study = simulate_study(seed=8, n_derivation=30, n_external=12)
    d = study.derivation
    m = write_phantom_archive(tmp_path / "d.zip", participants=d, scale=0.05)
    assert list(m["participant_id"]) == list(d["participant_id"])
    np.testing.assert_allclose(m["true_spine_age_years"], np.clip(d["spine_age_years"], 30, 105))
    assert (m["split"].to_numpy() == d["split"].to_numpy()).all() and (m["modality"] == "radiograph").all()
    assert ((m["true_n_fractures"] > 0).astype(int).to_numpy() == d["prevalent_vf"].to_numpy()).all()
    assert (m["true_prosthesis"].to_numpy() == d["prosthesis"].to_numpy()).all()
    e = write_phantom_archive(tmp_path / "e.tar", participants=study.external, scale=0.05)
    assert (e["modality"] == "vfa").all() and e["split"].isna().all()
    with pytest.raises(UserError):
        write_phantom_archive(tmp_path / "x.zip", participants=d.drop(columns="age_years"), scale=0.05)
