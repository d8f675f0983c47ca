"""``--engine ray`` on a two-node local Ray cluster: the same rows as the local engine, exactly once
when a replica or a node dies mid-run, and a killed job resumes from its shards (issue 14)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tarfile

import duckdb
import pytest

from .conftest import TEST_KEY, phantom_dicoms, run_cli, write_tar, write_zip
from .test_score_gpu_path import archive  # noqa: F401 (fixture: native, JPEG 2000, RLE, colour... files)

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

# run-specific columns (ids, clocks) differ between any two runs; everything else must match
_VOLATILE = {"run_id", "recorded_at", "scored_at", "occurred_at", "error_id", "device"}


@pytest.fixture(scope="module")
def cluster():
    """Two nodes on this machine, one CPU each: two replicas, one per node."""
    c = cluster_utils.Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            # notice a lost node in about a second, not half a minute
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2},
        },
    )
    c.add_node(num_cpus=1)
    c.wait_for_nodes(timeout=120)
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def write_plain_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_archives(root, n_each: int = 6) -> list:
    """zip (with one bad file), plain tar, tar.gz and folder."""
    phantoms = phantom_dicoms(4 * n_each, seed=14)
    parts = [phantoms[i * n_each : (i + 1) * n_each] for i in range(4)]
    zipped = {p.member: p.data for p in parts[0]}
    zipped["junk.dcm"] = b"junk"
    plain = {f"sub/{p.member}": p.data for p in parts[1]}
    gz = {p.member: p.data for p in parts[2]}
    folder = root / "folder"
    (folder / "d").mkdir(parents=True)
    for p in parts[3]:
        (folder / "d" / p.member).write_bytes(p.data)
    return [
        write_zip(root / "a.zip", zipped),
        write_plain_tar(root / "b.tar", plain),
        write_tar(root / "c.tar.gz", gz),
        folder,
    ]


def table_rows(dbfile, table: str) -> list[tuple]:
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in _VOLATILE]
        rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]


def assert_same_database(a, b) -> None:
    for table in ("images", "scores", "errors"):
        assert table_rows(a, table) == table_rows(b, table), table


def scored_once(dbfile) -> tuple[int, int, int]:
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM scores").fetchall()[0][0]
        distinct = con.execute("SELECT count(DISTINCT source_path) FROM scores").fetchall()[0][0]
        images = con.execute("SELECT count(*) FROM images").fetchall()[0][0]
    finally:
        con.close()
    return n, distinct, images


def test_cli_ray_two_nodes_matches_local(tmp_path, tiny_model, key_env, cluster):
    archives = make_archives(tmp_path)
    local, onray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    common = ["-m", "epi_spineage.score", *map(str, archives), "--model", str(tiny_model), "--device", "cpu"]
    r = run_cli([*common, "--db", str(local), "--workers", "0"], key_env)
    assert r.returncode == 0, r.stderr
    r = run_cli(
        [*common, "--db", str(onray), "--engine", "ray", "--ray-address", cluster.address], key_env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "scored 24 image(s)" in r.stdout, r.stdout
    assert "HOSP" not in r.stdout + r.stderr and str(tmp_path) not in r.stdout + r.stderr
    assert_same_database(local, onray)
    assert not list((tmp_path / "ray.duckdb.ray-shards").glob("*.parquet"))


def test_plan_reads_each_archive_once(tmp_path, key_env, monkeypatch):
    """A tar is indexed (headers only) and read by seeking; zip members come from the central directory."""
    from epi_spineage.score import ray_engine
    from epi_spineage.score.members import MemberContext

    archives = [str(a.resolve()) for a in make_archives(tmp_path, n_each=3)]
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: (opened.append(a[0]), real_open(*a, **k))[1])
    ctx = MemberContext(run_id="t", key=b"k", preprocess_config=None)
    plan = ray_engine.plan_work(archives, ctx)
    assert plan.n_seen == 13 and plan.n_skipped_known == 0
    kinds = [e.loc[0] for e in plan.entries]
    assert kinds.count("zip") == 4 and kinds.count("tar") == 3 and kinds.count("data") == 3
    assert kinds.count("file") == 3
    # the plain tar: opened once to test it is plain, once to index it; never per member
    assert opened.count(archives[1]) == 2
    tar_entries = [e for e in plan.entries if e.loc[0] == "tar"]
    data, err, fp = ray_engine.Replica._read(tar_entries[1], {})
    with tarfile.open(archives[1]) as tf:
        assert data == tf.extractfile(tar_entries[1].name.split("::")[1]).read()
    assert err is None and fp.startswith("t:")


def _run(tmp_path, archives, model, dbfile, cluster, on_event=None):
    from epi_spineage.score.ray_engine import score_archives_ray

    return score_archives_ray(
        archives,
        model,
        dbfile,
        key=TEST_KEY,
        ray_address=cluster.address,
        unit_size=3,
        batch_size=3,
        device="cpu",
        progress=False,
        _on_event=on_event,
        _start_together=True,
    )


def test_killed_replica_process_still_exactly_once(tmp_path, tiny_model, key_env, cluster):
    archives = [write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(24, seed=3)})]
    killed = []

    def on_event(what, replica, info):
        if what == "done" and not killed:
            _, pid = ray.get(replica.where.remote())
            os.kill(pid, signal.SIGKILL)  # the replica that just finished a unit has another in flight
            killed.append(pid)

    dbfile = tmp_path / "k.duckdb"
    summary = _run(tmp_path, archives, tiny_model, dbfile, cluster, on_event)
    assert killed and summary.ray.n_replicas_lost >= 1 and summary.ray.n_units_requeued >= 1
    assert summary.n_scored == 24
    assert scored_once(dbfile) == (24, 24, 24)
    # the rerun sends nothing: every image is skipped before any work reaches the cluster
    again = _run(tmp_path, archives, tiny_model, dbfile, cluster)
    assert (again.n_scored, again.n_skipped_known, again.ray.n_units) == (0, 24, 0)
    assert scored_once(dbfile) == (24, 24, 24)


def test_killed_job_resumes_from_its_shards(tmp_path, tiny_model, key_env, cluster):
    archives = [write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(18, seed=4)})]
    done = []

    def on_event(what, replica, info):
        if what == "done":
            done.append(info)
            if len(done) == 2:
                raise KeyboardInterrupt  # the whole job dies after two shards are on disk

    dbfile = tmp_path / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, archives, tiny_model, dbfile, cluster, on_event)
    shards = sorted((tmp_path / "r.duckdb.ray-shards").glob("unit-*.parquet"))
    assert [p.name for p in shards] == sorted(f"unit-{u}.parquet" for u in done)
    summary = _run(tmp_path, archives, tiny_model, dbfile, cluster)
    assert summary.ray.n_units_resumed == 2 and summary.ray.n_rows_resumed == 6
    assert summary.n_skipped_known == 6 and summary.ray.n_units == 4  # 12 left, in units of 3
    assert scored_once(dbfile) == (18, 18, 18)
    con = duckdb.connect(str(dbfile), read_only=True)
    statuses = sorted(r[0] for r in con.execute("SELECT status FROM runs").fetchall())
    con.close()
    assert statuses == ["finished", "interrupted"]


def test_dry_run_lists_what_would_be_sent_and_sends_nothing(tmp_path, tiny_model, key_env, capsys, monkeypatch):
    """No Ray, no lock, no database, no shards: the plan (how each archive is read, the work units)."""
    from epi_spineage.cli.score import main
    from epi_spineage.score import ray_engine

    monkeypatch.setattr(ray_engine, "_connect_ray", lambda address: pytest.fail("a dry run must not reach Ray"))
    archives = make_archives(tmp_path, n_each=3)
    dbfile = tmp_path / "d.duckdb"
    args = [*map(str, archives), "--model", str(tiny_model), "--db", str(dbfile), "--engine", "ray", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dry run: 13 of 13 file(s) would be read and scored" in out
    assert "ray: 1 work unit(s) would be sent" in out  # 13 entries, units of 64
    assert "read as zip (central directory)" in out and "read as tar (header index, read by seeking)" in out
    assert str(tmp_path) not in out  # archive paths are shown as their keyed hashes
    assert not dbfile.exists() and not (tmp_path / "d.duckdb.ray-shards").exists()
    assert main([*args, "--limit", "4"]) == 0
    assert "dry run: 4 of 13 file(s)" in capsys.readouterr().out
    # after a local run of the folder, its 3 images are skipped before anything would be sent
    from epi_spineage.score.pipeline import score_archives

    score_archives([archives[3]], tiny_model, dbfile, key=TEST_KEY, workers=0, device="cpu", progress=False)
    assert main(args) == 0
    assert "dry run: 10 of 13 file(s) would be read and scored by" in capsys.readouterr().out


def test_gpu_path_on_two_nodes_with_limit_then_the_rest(tmp_path, tiny_model, key_env, cluster, monkeypatch, archive):
    """The replicas' GPU path (stand-in decoder, CPU device) over the cluster: the local GPU path's rows
    to 1e-6, scores.decoder included; --limit takes the first N new images, the rerun the rest."""
    from epi_spineage.imaging.gpu_decode import CpuCodestreamDecoder
    from epi_spineage.score.pipeline import score_archives
    from epi_spineage.score.ray_engine import score_archives_ray

    from .test_score_gpu_path import _use_stand_in

    _use_stand_in(monkeypatch)
    local = tmp_path / "local.duckdb"
    for limit in (5, None):  # the same two runs locally: a rerun marks a duplicate by its stored SOP UID
        score_archives(
            [archive], tiny_model, local, key=TEST_KEY, batch_size=3, workers=0, device="cpu", decode="gpu", limit=limit
        )
    onray = tmp_path / "ray.duckdb"
    runs = []
    for limit in (5, None):
        runs.append(
            score_archives_ray(
                [archive],
                tiny_model,
                onray,
                key=TEST_KEY,
                ray_address=cluster.address,
                unit_size=3,
                batch_size=3,
                device="cpu",
                progress=False,
                limit=limit,
                _decoder_factory=CpuCodestreamDecoder,
            )
        )
    first, rest = runs
    n_files = len(list(archive.iterdir()))
    assert first.n_seen == n_files and first.ray.n_units == 2  # 5 entries in units of 3
    # the other 7, and the broken file again (an error is retried on a rerun, as with the local engine)
    assert rest.n_skipped_known == 4 and rest.ray.n_units == 3
    assert first.decode == rest.decode == "gpu" and first.n_gpu_decoded + rest.n_gpu_decoded >= 8
    assert_same_database(local, onray)
    con = duckdb.connect(str(onray), read_only=True)
    decoders = {r[0] for r in con.execute("SELECT decoder FROM scores").fetchall()}
    decode = con.execute("SELECT DISTINCT decode FROM runs").fetchall()
    con.close()
    assert decoders == {"stand-in:openjpeg", "gpu:raw", "cpu:pydicom"} and decode == [("gpu",)]


def test_run_units_survives_a_lost_node_exactly_once(cluster):
    """The scheduler alone, with light replicas (no torch, no model: seconds, not minutes): the second
    node dies while its replica has units in flight; every unit is still done exactly once.

    Made deterministic: the node goes when its own replica finishes its first unit. Work remains
    then (24 units, 4 in flight), and the driver feeds that replica again right after the unit is
    written, so the replica surely holds units when it is found dead. (Removing the node when the
    *other* replica finishes a unit raced under load: in the one failure seen nothing was lost, so a
    starved head replica had finished its first unit only once no work was left.) The replica's
    process is killed with its raylet (a worker can outlive its raylet), and the fresh node put
    back is waited for before the next test.
    """
    import collections
    import time

    from epi_spineage.score.ray_engine import RayStats, run_units

    @ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
    class Light:
        def where(self):
            return ray.get_runtime_context().get_node_id(), os.getpid()

        def score(self, unit_id, entries):
            time.sleep(0.2)  # long enough that the node dies with units in flight
            return unit_id, list(entries)

    worker_node = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)
    units = [(f"u{i:02d}", [i]) for i in range(24)]
    on_worker, done, removed = {}, collections.Counter(), []

    def on_event(what, replica, info):
        if what == "up" and info[0] == worker_node.node_id:
            on_worker[replica] = info[1]

    events: list = []  # shown if the test fails

    def on_done(unit_id, rows, replica):
        done[unit_id] += 1
        events.append((unit_id, "worker" if replica in on_worker else "head", len(done)))
        if not removed and replica in on_worker:
            events.append("node removed")
            cluster.remove_node(worker_node, allow_graceful=False)
            removed.append(worker_node.node_id)
            for pid in on_worker.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    stats = RayStats()
    try:
        run_units(units, Light.remote, 2, on_done, stats, on_event=on_event, start_together=True)
    finally:
        if removed:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes(timeout=120)
    assert removed and stats.n_replicas_lost >= 1 and stats.n_units_requeued >= 1, (stats, events)
    assert done == collections.Counter(u for u, _ in units)  # each unit once, none lost


@pytest.mark.skipif(
    not os.environ.get("EPI_SPINEAGE_RAY_FAULT_TESTS"),
    reason="multi-node fault run: a node removed mid-run; set EPI_SPINEAGE_RAY_FAULT_TESTS=1 "
    "(kept out of the default suite for its time: 30-50 s on a loaded 2-core VM; "
    "test_run_units_survives_a_lost_node_exactly_once covers the scheduler in seconds)",
)
def test_lost_node_still_exactly_once(tmp_path, tiny_model, key_env, cluster):
    """Runs last in this module: it removes the second node (and puts a fresh one back)."""
    archives = [write_zip(tmp_path / "a.zip", {p.member: p.data for p in phantom_dicoms(24, seed=5)})]
    worker_node = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)
    removed, pids = [], []

    def on_event(what, replica, info):
        if what == "up" and info[0] == worker_node.node_id:
            pids.append(info[1])
        elif what == "done" and not removed:  # both replicas are up and busy (start_together)
            # a machine lost: its raylet, and its replica (which would otherwise outlive the raylet and
            # finish its units on its own)
            cluster.remove_node(worker_node, allow_graceful=False)
            removed.append(worker_node.node_id)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    dbfile = tmp_path / "n.duckdb"
    try:
        summary = _run(tmp_path, archives, tiny_model, dbfile, cluster, on_event)
    finally:
        if removed:
            cluster.add_node(num_cpus=1)
    assert removed and summary.ray.n_replicas_lost >= 1 and summary.ray.n_units_requeued >= 1
    assert summary.n_scored == 24
    assert scored_once(dbfile) == (24, 24, 24)
