"""The Ray Data scale-out writes shards that ingest loads into the same tables, idempotently."""

from __future__ import annotations

import duckdb
import pytest

from .conftest import TEST_KEY, phantom_dicoms, write_zip

N = 6

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_shards_ingest_idempotently(tmp_path, tiny_model, key_env):
    from epi_spineage.score.pipeline import score_archives
    from epi_spineage.score.ray_scale import score_with_ray
    from epi_spineage.score.spool import ingest_folder

    phantoms = phantom_dicoms(N, seed=21)
    members = {p.member: p.data for p in phantoms}
    members["copy.dcm"] = phantoms[0].data
    members["junk.dcm"] = b"junk"
    archive = write_zip(tmp_path / "a.zip", members)
    out = tmp_path / "shards"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        score_with_ray([archive], tiny_model, out, key=TEST_KEY, batch_size=4, concurrency=1, device="cpu")
    finally:
        ray.shutdown()
    dbfile = tmp_path / "s.duckdb"
    first = ingest_folder(dbfile, out)
    assert (first.counts.scored, first.counts.duplicates, first.counts.errors) == (N, 1, 1)
    again = ingest_folder(dbfile, out)
    assert again.counts.scored == 0
    con = duckdb.connect(str(dbfile))
    assert con.execute("SELECT count(*) FROM scores").fetchall()[0][0] == N
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchall()[0][0] == 1
    ray_ages = dict(con.execute("SELECT content_hash, spine_age_years FROM scores").fetchall())
    con.close()
    # The same model through the DataLoader path gives the same predictions for the same pixels.
    local = tmp_path / "local.duckdb"
    score_archives([archive], tiny_model, local, key=TEST_KEY, workers=0, device="cpu")
    con = duckdb.connect(str(local))
    local_ages = dict(con.execute("SELECT content_hash, spine_age_years FROM scores").fetchall())
    assert local_ages.keys() == ray_ages.keys()
    for h, age in local_ages.items():
        assert abs(age - ray_ages[h]) < 1e-4
