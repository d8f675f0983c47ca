"""Each archive is read once: workers split the members of one index instead of each streaming the archive."""

from __future__ import annotations

import io
import tarfile
from collections import Counter

import duckdb
import pytest

from epi_spineage.score import dataset as dataset_mod
from epi_spineage.score.members import iter_members
from epi_spineage.score.shards import MemberReader, index_archives

from .conftest import TEST_KEY, phantom_dicoms, write_zip


def _write_tar(path, members: dict[str, bytes], mode: str):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def members() -> dict[str, bytes]:
    out = {f"sub/{p.member}": p.data for p in phantom_dicoms(7, seed=11)}
    out["notes.txt"] = b"a sidecar, skipped"
    out["broken.dcm"] = b"not a dicom"
    return out


@pytest.fixture(params=["folder", "zip", "tar", "tar.gz"])
def archive(request, tmp_path, members):
    kind = request.param
    if kind == "folder":
        root = tmp_path / "folder"
        for name, data in members.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return kind, str(root)
    if kind == "zip":
        return kind, str(write_zip(tmp_path / "a.zip", members))
    mode = "w" if kind == "tar" else "w:gz"
    return kind, str(_write_tar(tmp_path / f"a.{kind}", members, mode))


class _Info:
    def __init__(self, id: int, num_workers: int):
        self.id, self.num_workers = id, num_workers


def test_with_n_workers_every_member_is_read_exactly_once(archive, monkeypatch):
    kind, path = archive
    reads: Counter[str] = Counter()
    real_read = MemberReader.read

    def counting_read(self, ref):
        reads[ref.name] += 1
        return real_read(self, ref)

    monkeypatch.setattr(MemberReader, "read", counting_read)
    ds = dataset_mod.ArchiveDataset([path], ctx=None)
    expected = [name for name, _, _ in iter_members([path])]
    n_workers = 3
    seen = []
    for worker in range(n_workers):  # each simulated worker in turn, as the DataLoader would run them
        monkeypatch.setattr(dataset_mod, "get_worker_info", lambda w=worker: _Info(w, n_workers))
        for name, _size, member in ds.entries():
            if not isinstance(member, Exception):
                assert member.read_bytes()  # what process_entry does
            seen.append(name)
    assert sorted(seen) == sorted(expected)
    if kind == "tar.gz":
        # A compressed tar has no offsets: split by position, each worker streams it (documented).
        assert all(r.kind == "stream" for r in ds.refs)
    else:
        assert {r.kind for r in ds.refs} == {"folder": {"file"}, "zip": {"zip"}, "tar": {"tar"}}[kind]
        assert set(reads) == set(expected) and set(reads.values()) == {1}


def test_a_refused_tar_keeps_what_came_before_and_reports_the_archive(tmp_path):
    path = _write_tar(tmp_path / "evil.tar", {"ok.dcm": b"x" * 10, "../../etc/passwd": b"y"}, "w")
    refs = index_archives([str(path)])
    assert [r.kind for r in refs] == ["tar", "error"]
    assert "path-traversal" in refs[1].error
    assert MemberReader().read(refs[0]) == b"x" * 10


def test_scores_with_two_workers_equal_the_single_process_run(tmp_path, members, tiny_model, key_env):
    from epi_spineage.score.pipeline import score_archives

    path = _write_tar(tmp_path / "night.tar", members, "w")
    results = []
    for workers in (0, 2):
        db = tmp_path / f"w{workers}.duckdb"
        summary = score_archives([path], tiny_model, db, key=TEST_KEY, batch_size=3, workers=workers, device="cpu")
        assert summary.n_scored == 7 and summary.n_errors == 1
        con = duckdb.connect(str(db))
        results.append(
            con.execute("SELECT source_path, content_hash, spine_age_years, decoder FROM scores ORDER BY 1").fetchall()
        )
        con.close()
    assert results[0] == results[1]
    assert {r[3] for r in results[0]} == {"cpu:pydicom"}
