"""Soak: SIGKILL a scoring run at random moments, then finish it, and tally what happened.

Each round starts the scorer (``python -m epi_spineage.score``, decode workers on) on the same phantom
archive, whose member names carry PatientIDs as PACS exports do, kills it with SIGKILL after a random
delay, and counts the processes it left behind. A last run finishes the job. The tally:

* lost: images never scored; duplicated: images with more than one score or images row;
* orphans: worker / forkserver / resource-tracker processes still alive 10 s after a kill;
* identifiers: PatientIDs and patient names found in the bytes of the database and spool, or in the
  runs' stderr (logged at -vv).

    python benchmarks/soak_sigkill.py                 # 20 kills, a few minutes on 2 cores
    python benchmarks/soak_sigkill.py --kills 5 --n 24
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY = "soak-key-0123456789abcdef"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--n", type=int, default=48, help="images in the archive")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-delay", type=float, default=6.0, help="kill after up to this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import duckdb

    from tests.score.conftest import descendants, live_processes, make_checkpoint, phantom_dicoms

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    model = make_checkpoint(work / "model")
    phantoms = phantom_dicoms(args.n, seed=7)
    archive = work / "night.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in phantoms:
            zf.writestr(f"exports/{p.patient_id}/{p.member}", p.data)
    dbfile = work / "s.duckdb"
    env = dict(os.environ, EPI_SPINEAGE_PSEUDONYM_KEY=KEY, PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "epi_spineage.score",
        str(archive),
        "--model",
        str(model),
        "--db",
        str(dbfile),
        "--batch-size",
        "2",
        "--workers",
        str(args.workers),
        "--device",
        "cpu",
        "--commit-interval",
        "0",
        "-vv",
    ]
    logs, orphans, finished_early = [], 0, 0
    for i in range(args.kills):
        err = work / f"run{i}.log"
        with open(err, "w") as fh:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)
            # half the kills at any moment after start (before the first commit, during start-up), half
            # once the decode workers run (mid-batch, at commits, while spooling)
            delay = rng.uniform(0.5, args.max_delay)
            wait_for_workers = i % 2 == 1
            seen: set[int] = set()
            t0 = started = time.monotonic()
            while proc.poll() is None:
                seen |= descendants(proc.pid)
                if wait_for_workers and len(seen) <= args.workers:
                    t0 = time.monotonic()  # the clock starts once the workers are up
                    if time.monotonic() - started > 120:
                        break
                elif time.monotonic() - t0 >= delay:
                    break
                time.sleep(0.1)
            if proc.poll() is None:
                seen |= descendants(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
            else:
                finished_early += 1
            proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p in live_processes() for p in seen):
            time.sleep(0.2)
        left = [p for p in seen if p in live_processes()]
        orphans += len(left)
        for p in left:  # do not let one round's orphans slow the next
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        logs.append(err)
        print(
            f"kill {i + 1:2d}: after {delay:4.1f} s, {len(seen)} child process(es), {len(left)} left alive"
            + (" (run had finished)" if proc.returncode == 0 else ""),
            flush=True,
        )
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    con = duckdb.connect(str(dbfile), read_only=True)
    try:
        n_scores, n_unique = con.execute("SELECT count(*), count(DISTINCT content_hash) FROM scores").fetchall()[0]
        n_images, n_paths = con.execute("SELECT count(*), count(DISTINCT source_path) FROM images").fetchall()[0]
        runs = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY ALL").fetchall())
    finally:
        con.close()
    haystack = dbfile.read_bytes() + final.stderr.encode() + b"".join(p.read_bytes() for p in logs)
    spool = Path(str(dbfile) + ".spool")
    if spool.is_dir():
        haystack += b"".join(f.read_bytes() for f in spool.rglob("*") if f.is_file())
    needles = [p.patient_id.encode() for p in phantoms] + [p.patient_name.split("^")[0].encode() for p in phantoms]
    found = sum(n in haystack for n in needles)
    print(
        f"tally: {args.kills} SIGKILLs ({finished_early} runs finished before their kill); final run exit "
        f"{final.returncode}"
    )
    print(
        f"  images {args.n}: scored {n_unique}, lost {args.n - n_unique}, duplicated scores {n_scores - n_unique}, "
        f"images rows {n_images} ({n_images - n_paths} duplicated)"
    )
    print(f"  orphan processes after kills: {orphans}; runs by status: {runs}")
    print(f"  identifiers found in database, spool and -vv logs: {found} of {len(needles)} searched")
    ok = n_unique == args.n and n_scores == n_unique and n_images == n_paths == args.n and orphans == 0 and found == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
