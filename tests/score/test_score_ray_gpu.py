"""What a Ray replica runs (issue 14): the GPU path of the scorer where it has a GPU, the CPU reader
where it has none. No Ray here: a ``Replica`` is built in this process (as a Ray actor builds it)
and given one work unit; the GPU path's loop runs on the CPU with the stand-in codestream decoder
(``CpuCodestreamDecoder``), as the local GPU-path tests run it. The two-node run of the same path
is in test_score_ray_engine.py.
"""

from __future__ import annotations

import pytest

from epi_spineage.imaging.gpu_decode import CpuCodestreamDecoder
from epi_spineage.score import gpu_batches, ray_engine

from .conftest import TEST_KEY
from .test_score_gpu_path import _name, _results, _use_stand_in, archive  # noqa: F401 (fixture)


def _replica(model, *, decode="auto", factory=None, device="cpu"):
    options = {
        "store_paths": False,
        "max_pixels": 50_000_000,
        "include_non_spine": False,
        "decode": decode,
        "decoder_factory": factory,
    }
    return ray_engine.Replica(ray_engine._model_files(model), TEST_KEY.encode(), "run-t", options, {}, device, 4, 1)


def _unit(folder):
    from epi_spineage.score.members import MemberContext

    ctx = MemberContext(run_id="plan", key=TEST_KEY.encode(), preprocess_config=None)
    plan = ray_engine.plan_work([str(folder.resolve())], ctx)
    return plan.entries


def _rows(table) -> dict[str, dict]:
    return {_name(r["source_path"]): r for r in table.to_pylist()}


def test_a_replica_with_a_gpu_takes_the_gpu_path_and_one_without_the_cpu_reader(monkeypatch):
    import torch

    monkeypatch.setattr(gpu_batches, "gpu_extra_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device, choice = ray_engine.choose_path("auto", "auto")
    assert (device, choice.path) == ("cuda", "gpu")  # Ray gave it a GPU (num_gpus=1): nvImageCodec's loop
    assert ray_engine.choose_path("auto", "cpu")[1].path == "cpu"  # --decode cpu is obeyed on a GPU replica
    monkeypatch.setattr(gpu_batches, "gpu_extra_available", lambda: False)
    assert ray_engine.choose_path("auto", "auto")[1].path == "cpu"  # no gpu extra on that worker
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, choice = ray_engine.choose_path("auto", "auto")
    assert (device, choice.path) == ("cpu", "cpu")
    device, choice = ray_engine.choose_path("cpu", "auto", CpuCodestreamDecoder)
    assert (device, choice.path) == ("cpu", "gpu") and isinstance(choice.decoder("cpu"), CpuCodestreamDecoder)


def test_the_replicas_gpu_path_gives_the_local_gpu_paths_rows(archive, tiny_model, tmp_path, monkeypatch, key_env):  # noqa: F811
    from epi_spineage.score.pipeline import score_archives

    entries = _unit(archive)
    gpu_replica = _replica(tiny_model, factory=CpuCodestreamDecoder)
    assert gpu_replica.choice.path == "gpu"
    unit_id, table = gpu_replica.score("u1", entries)
    assert unit_id == "u1" and table.schema.metadata[b"decode"] == b"gpu"
    on_gpu = _rows(table)
    cpu_replica = _replica(tiny_model)
    assert cpu_replica.choice.path == "cpu"
    _, cpu_table = cpu_replica.score("u1", entries)
    assert cpu_table.schema.metadata[b"decode"] == b"cpu"
    on_cpu = _rows(cpu_table)

    _use_stand_in(monkeypatch)
    db = tmp_path / "local-gpu.duckdb"
    score_archives([archive], tiny_model, db, key=TEST_KEY, batch_size=4, workers=0, device="cpu", decode="gpu")
    images, local, _, _ = _results(db)
    duplicates = {n for n, (qc, _) in images.items() if qc == "duplicate"}

    assert on_gpu.keys() == on_cpu.keys() == {p.name for p in archive.iterdir()}
    assert [n for n, r in on_gpu.items() if r["status"] == "error"] == ["broken.dcm"]
    for name, (content_hash, age, sd, decoder) in local.items():
        row = on_gpu[name]
        assert row["status"] == "scored" and row["content_hash"] == content_hash and row["decoder"] == decoder
        assert abs(row["spine_age_years"] - age) < 1e-6 and abs(row["spine_age_sd_years"] - sd) < 1e-6
        # the CPU reader's hashes are the GPU path's; its scores differ by the torch preprocessing only
        assert on_cpu[name]["content_hash"] == content_hash and on_cpu[name]["decoder"] == "cpu:pydicom"
        assert abs(on_cpu[name]["spine_age_years"] - age) < 0.01
    # scored here but not in the local run: only the local run's duplicate (settled at ingest on Ray)
    extra = {n for n, r in on_gpu.items() if r["status"] == "scored"} - set(local)
    assert len(duplicates) == 1 and extra == duplicates
    assert on_gpu["j2k_a.dcm"]["decoder"] == "stand-in:openjpeg" and on_gpu["rle.dcm"]["decoder"] == "gpu:raw"
    assert on_gpu["ap.dcm"]["status"] == "not_spine" and "_name" not in table.column_names


def test_a_read_error_on_the_gpu_path_is_the_members_error_row(tiny_model, tmp_path, key_env):
    from epi_spineage.score.ray_engine import Entry

    missing = Entry(str(tmp_path / "gone.dcm"), 10, ("file", str(tmp_path / "gone.dcm")))
    refused = Entry(str(tmp_path / "big.dcm"), 10, ("error", "declared size over the limit"))
    _, table = _replica(tiny_model, factory=CpuCodestreamDecoder).score("u", [missing, refused])
    rows = table.to_pylist()
    assert [r["status"] for r in rows] == ["error", "error"]
    assert "over the limit" in rows[1]["message"] and str(tmp_path) not in str(rows)


def test_decode_gpu_on_a_cluster_without_gpus_is_refused(tiny_model, tmp_path, key_env, monkeypatch):
    """Refused before any replica starts; the message names the fix (one line from the CLI)."""
    from epi_spineage.errors import UserError

    monkeypatch.setattr(ray_engine, "_connect_ray", lambda address: False)
    monkeypatch.setattr(ray_engine, "_replica_resources", lambda replicas: (1, {"num_cpus": 1}))
    folder = tmp_path / "night"
    folder.mkdir()
    from .conftest import phantom_dicoms

    (folder / "a.dcm").write_bytes(phantom_dicoms(1)[0].data)
    with pytest.raises(UserError, match="needs GPUs in the Ray cluster"):
        ray_engine.score_archives_ray(
            [folder], tiny_model, tmp_path / "x.duckdb", key=TEST_KEY, decode="gpu", progress=False
        )
