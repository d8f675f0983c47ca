"""Folders, zip and tar archives: iteration, references, traversal and bomb refusal."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest

from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging import ArchiveLimits, iter_archive, load_image, read_reference
from epi_spineage.imaging.archive import split_reference

from .conftest import ramp

cv2 = pytest.importorskip("cv2")

FILES = {
    "p001/lat.png": None,  # filled with PNG bytes
    "p002/deep/lat.png": None,
    "p004/IM0001": b"not an image",  # DICOM files often have no suffix: kept
    "readme.txt": b"notes",  # sidecars (SIDECAR_SUFFIXES) and DICOMDIR are skipped
    "manifest.csv": b"image,participant_id\n",
    "DICOMDIR": b"directory record",
    ".hidden.png": b"x",
    "__MACOSX/p001/._lat.png": b"resource fork",
    "p003/.DS_Store": b"junk",
}


def _png(seed):
    ok, buf = cv2.imencode(".png", ramp((12, 9), top=4095, seed=seed))
    return buf.tobytes()


@pytest.fixture
def contents():
    out = dict(FILES)
    out["p001/lat.png"] = _png(1)
    out["p002/deep/lat.png"] = _png(2)
    return out


def _zip(path, contents, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("p001/", b"")  # explicit directory entry
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def _tar(path, contents, mode="w"):
    with tarfile.open(path, mode) as tf:
        d = tarfile.TarInfo("p001")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


EXPECTED = {"p001/lat.png", "p002/deep/lat.png", "p004/IM0001"}


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tgz", "folder"])
def test_iterates_members_and_skips_noise(kind, contents, tmp_path):
    if kind == "zip":
        arc = _zip(tmp_path / "a.zip", contents)
    elif kind == "folder":
        arc = tmp_path / "a"
        for name, data in contents.items():
            (arc / name).parent.mkdir(parents=True, exist_ok=True)
            (arc / name).write_bytes(data)
    else:
        arc = _tar(tmp_path / f"a.{kind}", contents, "w:gz" if "gz" in kind else "w")
    members = list(iter_archive(arc))
    if kind == "folder":
        rel = {str(m.name)[len(str(arc)) + 1 :] for m in members}
    else:
        assert all(m.name.startswith(f"{arc}::") for m in members)
        rel = {m.name.split("::", 1)[1] for m in members}
    assert rel == EXPECTED
    by_rel = {(m.name.split("::", 1)[1] if "::" in m.name else str(m.name)[len(str(arc)) + 1 :]): m for m in members}
    assert by_rel["p001/lat.png"].read_bytes() == contents["p001/lat.png"]
    assert by_rel["p004/IM0001"].size == len(b"not an image")
    pngs = list(iter_archive(arc, suffixes=[".PNG"]))
    assert len(pngs) == 2
    # the names are manifest references: load_image and read_reference take them
    for m in pngs:
        img = load_image(m.name)
        assert img.pixels.shape == (12, 9)
        same = load_image(m)  # the member itself: no second read of the archive
        assert same.source == m.name and same.content_hash == img.content_hash
        assert read_reference(m.name) == m.read_bytes()


def test_zip_members_readable_after_iteration(contents, tmp_path):
    arc = _zip(tmp_path / "a.zip", contents)
    members = list(iter_archive(arc, suffixes=["png"]))
    assert [m.read_bytes() for m in members] == [contents["p001/lat.png"], contents["p002/deep/lat.png"]]


@pytest.mark.parametrize("bad", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png", "..\\evil.png"])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_path_traversal_refused(bad, kind, tmp_path):
    contents = {"ok.png": _png(3), bad: _png(4)}
    if kind == "zip":
        arc = tmp_path / "t.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            for name, data in contents.items():
                zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name as given
    else:
        arc = _tar(tmp_path / "t.tar.gz", contents, "w:gz")
    with pytest.raises(UserError, match="absolute|traversal"):
        list(iter_archive(arc))
    with pytest.raises(UserError, match="absolute|traversal"):
        read_reference(f"{arc}::{bad}")


def test_zip_bomb_refused_by_ratio_and_by_size(tmp_path):
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * (4 << 20))  # 4 MiB of zeros deflates ~1000x
    tight = ArchiveLimits(ratio_floor_bytes=1 << 20, max_ratio=100)
    with pytest.raises(UserError, match="compression ratio"):
        list(iter_archive(arc, limits=tight))
    with pytest.raises(UserError, match="refusing member"):
        list(iter_archive(arc, limits=ArchiveLimits(max_member_bytes=1 << 20)))
    with pytest.raises(UserError, match="compression ratio"):
        read_reference(f"{arc}::zeros.dcm", limits=tight)
    assert len(list(iter_archive(arc))) == 1  # within the generous defaults


def test_zip_header_lying_about_size_is_caught(tmp_path):
    arc = tmp_path / "liar.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("x.dcm", b"A" * 1000)
    raw = bytearray(arc.read_bytes())
    # shrink the declared uncompressed size in the central directory (offset 24 in the entry)
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    arc.write_bytes(bytes(raw))
    members = list(iter_archive(arc))  # listing works; reading the lying member fails alone
    with pytest.raises(ImageReadError, match="x.dcm"):
        members[0].read_bytes()


def test_tar_gz_bomb_refused(tmp_path):
    arc = _tar(tmp_path / "bomb.tar.gz", {"zeros.dcm": b"\0" * (4 << 20)}, "w:gz")
    with pytest.raises(UserError, match="refusing"):
        list(iter_archive(arc, limits=ArchiveLimits(max_member_bytes=1 << 20)))
    with pytest.raises(UserError, match="inflates"):
        list(iter_archive(arc, limits=ArchiveLimits(ratio_floor_bytes=1 << 20, max_ratio=50)))


def test_references_missing_and_odd_inputs(contents, tmp_path):
    arc = _zip(tmp_path / "a.zip", contents)
    with pytest.raises(ImageReadError, match="no such member"):
        read_reference(f"{arc}::p009/none.png")
    with pytest.raises(ImageReadError, match="no such file"):
        read_reference(tmp_path / "missing.dcm")
    with pytest.raises(UserError, match="not a folder, zip or tar"):
        list(iter_archive(_plain(tmp_path)))
    assert split_reference(f"{arc}::dir::odd.png") == (str(arc), "dir::odd.png")
    assert split_reference("plain.dcm") == ("plain.dcm", None)


def _plain(tmp_path):
    p = tmp_path / "plain.bin"
    p.write_bytes(b"neither zip nor tar " * 40)
    return p


def test_tar_member_order_is_stream_order(tmp_path):
    names = [f"img{i:02d}.png" for i in (3, 1, 2)]
    arc = _tar(tmp_path / "o.tar", {n: _png(i) for i, n in enumerate(names)})
    assert [m.name.split("::")[1] for m in iter_archive(arc)] == names
    np.testing.assert_array_equal(load_image(f"{arc}::img01.png").pixels, ramp((12, 9), top=4095, seed=1))
