"""``python -m epi_spineage.demo``: the whole product on synthetic data, in one command (``make demo``).

Trains the ``phantom-tiny`` model on CPU in the background while it simulates the study, renders one phantom
DICOM per analysed participant into a zip archive and loads the cohort into ``reports/demo/demo.duckdb`` with
the public demo key; then scores the archive into that database, builds the report from it (saving the
accelerated-ageing cut into it, with a Grad-CAM gallery of the most accelerated phantoms) and prints where
everything is and three SQL queries to try.

Each step runs the package's own command-line tool in a child process, exactly as a user would, so the
demo also shows the commands. Rerunning reuses what is there: the cohort and archive (same settings), the
trained model, and the database (the scorer skips images it has already scored).
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from epi_spineage.cli import EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError
from epi_spineage.model.presets import PRESETS
from epi_spineage.schema import SYNTHETIC_NOTICE

#: Why these sizes and event rates (docs/quickstart.md#demo): the report analyses the scored participants
#: only and refuses a Cox model with fewer than 5 events per parameter. The paper's main models are any
#: fracture models 1-3 and mortality models 1-2 in both cohorts; the largest, fracture model 3 (10
#: parameters, complete cases for DXA: ~30 % missing in the derivation cohort), needs 50 fractures and
#: mortality model 2 (7 parameters) 35 deaths. At the simulator's published-like shares (derivation 12.2 %
#: fractures and 6 % deaths) that takes about 1,000 derivation participants; the demo instead scores
#: 500 + 500 (1,000 phantoms to render and score) with enriched event shares, so the main models are
#: estimable with a margin (at seed 2025: 83 fractures for model 3 and 50 deaths for mortality model 2
#: in the derivation cohort; 91 and 54 in the external). The planted hazard ratios are unchanged, and
#: truth.json records the shares. The demo model is trained on separate phantoms, so the derivation
#: cohort is analysed in full ([cohorts] derivation_split = "" in the demo config).
DEFAULT_N_DERIVATION = 500
DEFAULT_N_EXTERNAL = 500
#: Observed event shares of the demo's cohorts (the simulator's CohortSpec.fracture_share/death_share).
DEMO_EVENT_SHARES: dict[str, dict[str, float]] = {
    "derivation": {"fracture_share": 0.25, "death_share": 0.14},
    "external": {"fracture_share": 0.20, "death_share": 0.12},
}
DEFAULT_SEED = 2025
DEFAULT_OUT = Path("reports/demo")
#: The archive's phantoms are drawn at the training phantoms' scale (phantom-tiny's phantom_scale), so the
#: model scores images like those it learned from.
ARCHIVE_SCALE: float = PRESETS["phantom-tiny"]["phantom_scale"]
DEMO_KEY_FILE_NAME = "PUBLIC-DEMO-KEY-not-for-real-data.txt"
#: Phantoms in the report's Grad-CAM gallery: the most accelerated of the whole archive, picked from the
#: database's scores, so that the report decodes and explains only these (given the whole archive's
#: manifest, the gallery would first re-score up to 256 images of it: 17 of the report's 48 s of CPU).
GALLERY_SIZE = 8

DEMO_CONFIG = """\
# The demo's study config (written by `python -m epi_spineage.demo`).
# The demo model was trained on its own phantoms, so every derivation participant is held out:
# analyse them all instead of the 20 % test split a real derivation cohort would use.
[cohorts]
derivation_split = ""

[report]
title = "Spine age and incident fracture and mortality (whole-product demo)"
"""

QUERIES = (
    (
        "accelerated spine ageing per cohort (the cut saved by the report)",
        "SELECT cohort, count(*) AS n, sum(accelerated::INT) AS accelerated, "
        "round(avg(pad_years), 2) AS mean_pad_years FROM v_accelerated GROUP BY cohort ORDER BY cohort;",
    ),
    (
        "the ten oldest-looking spines",
        "SELECT participant_id, round(age_years, 1) AS age, round(spine_age_years, 1) AS spine_age, "
        "round(pad_years, 1) AS pad FROM v_cohort_scores ORDER BY pad_years DESC LIMIT 10;",
    ),
    (
        "what the nightly runs did",
        "SELECT run_id, status, n_seen, n_scored, n_skipped_known, n_errors FROM runs ORDER BY started_at;",
    ),
)


@dataclass(frozen=True)
class DemoSettings:
    seed: int
    n_derivation: int
    n_external: int
    event_shares: str  # "demo" (DEMO_EVENT_SHARES) or "published" (the simulator's defaults)
    train_phantoms: int | None
    train_epochs: int | None
    allow_weak_model: bool

    def stamp(self) -> dict:
        return asdict(self)

    def inputs_stamp(self) -> dict:
        """What the cohort tables and the archive depend on (a rerun with the same stamp reuses them)."""
        keep = ("seed", "n_derivation", "n_external", "event_shares")
        shares = DEMO_EVENT_SHARES if self.event_shares == "demo" else None
        return {**{k: v for k, v in self.stamp().items() if k in keep}, "shares": shares, "scale": ARCHIVE_SCALE}


EPILOG = """\
examples:
  python -m epi_spineage.demo                       # the whole chain (make demo), about 2 min on 2 idle cores
  python -m epi_spineage.demo --out /tmp/demo --n-derivation 60 --n-external 40 --train-phantoms 120 \\
      --allow-weak-model                              # a quick, small run (the model may be weak)
  python -m epi_spineage.demo --out /tmp/demo-published --event-shares published --n-derivation 1000

The demo's cohorts have enriched event shares (--event-shares demo, the default) so that the paper's main
models are estimable at 500 + 500 participants; --event-shares published keeps the simulator's shares, which
needs about twice the participants for the same models. Everything made here is synthetic: the cohorts come
from the simulator, the images are phantoms and the key is the package's public demo key (never use it for
real data).
"""


def build_parser():
    p = make_parser(
        "epi-spineage demo",
        "Run the whole product on synthetic data: phantom archive -> model -> DuckDB -> report.",
        EPILOG,
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"simulator seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--n-derivation",
        type=int,
        default=DEFAULT_N_DERIVATION,
        help=f"derivation participants scored (default {DEFAULT_N_DERIVATION})",
    )
    p.add_argument(
        "--n-external",
        type=int,
        default=DEFAULT_N_EXTERNAL,
        help=f"external participants scored (default {DEFAULT_N_EXTERNAL})",
    )
    p.add_argument(
        "--event-shares",
        choices=("demo", "published"),
        default="demo",
        help="fracture and death shares of the simulated cohorts: demo (enriched, the default: derivation "
        "fractures 25 %%, deaths 14 %%; external 20 %%, 12 %%) or published (the simulator's defaults)",
    )
    p.add_argument(
        "--train-phantoms",
        type=int,
        default=None,
        help="phantoms the phantom-tiny preset trains on (default: the preset's)",
    )
    p.add_argument(
        "--train-epochs", type=int, default=None, help="epochs the phantom-tiny preset trains (default: the preset's)"
    )
    p.add_argument(
        "--allow-weak-model",
        action="store_true",
        help="keep going when the trained model fails the quality verdict (flagged everywhere)",
    )
    p.add_argument("--no-gallery", action="store_true", help="skip the Grad-CAM gallery")
    return p


def _children_cpu() -> float:
    """CPU seconds (user + system) of the child processes waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Steps:
    """One progress display for the chain: a numbered header per step with its wall and CPU time.

    CPU time is printed beside wall time because the demo is often timed on a shared machine: there the
    wall time grows with the machine's load, the CPU time much less (docs/quickstart.md#demo).
    """

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.timings: dict[str, dict[str, float]] = {}

    def header(self, title: str, argv: list[str] | None = None) -> int:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {title}", flush=True)
        if argv is not None:
            print(f"    $ {_shown(argv)}", flush=True)
        return self.done

    def record(self, name: str, wall: float, cpu: float, number: int | None = None) -> None:
        self.timings[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        prefix = f"    [{number}/{self.total}] " if number is not None else "    "
        print(f"{prefix}done in {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)

    def run(self, name: str, title: str, argv: list[str], env: dict[str, str]) -> None:
        """Run ``python -m <argv>`` as a child process; a failed step ends the demo with one line."""
        number = self.header(title, argv)
        t, c = time.perf_counter(), _children_cpu()
        proc = subprocess.run([sys.executable, "-m", *argv], env=env)
        if proc.returncode != 0:
            raise UserError(f"demo step {number} ({title}) failed with exit code {proc.returncode}")
        self.record(name, time.perf_counter() - t, _children_cpu() - c)

    def skip(self, title: str, why: str) -> None:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {title}: {why}", flush=True)


def _shown(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["python", "-m", *argv])


class _Background:
    """A demo step running as a child process while the demo does something else; output to a log file."""

    def __init__(self, number: int, title: str, argv: list[str], env: dict[str, str], log: Path):
        self.number, self.title, self.log = number, title, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.t = time.perf_counter()
        with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=fh, stderr=subprocess.STDOUT)

    def wait(self, steps: _Steps, name: str) -> None:
        """Wait for the child; print its summary lines; a failure ends the demo with the log's last lines."""
        c = _children_cpu()
        code = self.proc.wait()
        cpu = _children_cpu() - c  # only this child ended in the meantime
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        if code != 0:
            tail = "\n".join(f"    | {line}" for line in text[-15:])
            print(f"\n[{self.number}/{steps.total}] {self.title}: failed; the end of {self.log}:\n{tail}", flush=True)
            raise UserError(f"demo step {self.number} ({self.title}) failed with exit code {code}; see {self.log}")
        for line in text:
            if line.startswith("model quality:"):
                print(f"    [{self.number}/{steps.total}] {line}", flush=True)
        steps.record(name, time.perf_counter() - self.t, cpu, self.number)

    def stop(self) -> None:
        """End the child (the demo itself failed or was interrupted)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _specs(s: DemoSettings) -> dict:
    """The simulator's cohort specs with the demo's event shares (none: the simulator's defaults)."""
    from epi_spineage.synth.cohort import DERIVATION, EXTERNAL

    if s.event_shares != "demo":
        return {}
    d, e = DEMO_EVENT_SHARES["derivation"], DEMO_EVENT_SHARES["external"]
    return {
        "derivation_spec": replace(DERIVATION, fracture_share=d["fracture_share"], death_share=d["death_share"]),
        "external_spec": replace(EXTERNAL, fracture_share=e["fracture_share"], death_share=e["death_share"]),
    }


def _write_inputs(out: Path, s: DemoSettings) -> tuple[Path, Path, Path, bool]:
    """The cohort tables (derivation and external) and the phantom archive, unless already there.

    Returns the two tables, the archive and whether they were reused.
    """
    data = out / "data"
    stamp = data / "demo-settings.json"
    archive = out / "archive" / "phantoms.zip"
    wanted = s.inputs_stamp()
    if stamp.is_file() and archive.is_file() and json.loads(stamp.read_text()) == wanted:
        return data / "derivation.parquet", data / "external.parquet", archive, True
    import pandas as pd

    from epi_spineage.synth.archive import write_phantom_archive
    from epi_spineage.synth.cohort import simulate_study, write_study

    try:  # one thread for OpenCV's blurs: the training child uses the other core
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV comes with the imaging extra
        pass
    study = simulate_study(seed=s.seed, n_derivation=s.n_derivation, n_external=s.n_external, **_specs(s))
    write_study(study, data)
    archive.parent.mkdir(parents=True, exist_ok=True)
    both = pd.concat([study.derivation, study.external], ignore_index=True)
    write_phantom_archive(archive.resolve(), participants=both, seed=s.seed, scale=ARCHIVE_SCALE)
    stamp.write_text(json.dumps(wanted))
    return data / "derivation.parquet", data / "external.parquet", archive, False


def _gallery_images(db: Path, manifest: Path, out: Path, n: int, key: bytes) -> Path:
    """A manifest of the ``n`` scored phantoms with the largest PAD (``v_cohort_scores``), for the gallery.

    The database holds keyed hashes only, so the archive's manifest is matched through the same key.
    """
    import duckdb
    import pandas as pd

    from epi_spineage.privacy import pseudonymise

    con = duckdb.connect(str(db), read_only=True)
    try:
        top = con.execute(
            "SELECT participant_id FROM v_cohort_scores WHERE pad_years IS NOT NULL "
            "ORDER BY pad_years DESC, participant_id LIMIT ?",
            [n],
        ).fetchall()
    finally:
        con.close()
    rank = {row[0]: i for i, row in enumerate(top)}
    images = pd.read_csv(manifest)
    hashed = images["participant_id"].map(lambda p: pseudonymise(p, key))
    chosen = images[hashed.isin(rank)].assign(_rank=hashed.map(rank)).sort_values("_rank").drop(columns="_rank")
    path = out / "gallery-images.csv"
    chosen.to_csv(path, index=False)
    return path


def _sizes_line(s: DemoSettings) -> str:
    if s.event_shares == "demo":
        d, e = DEMO_EVENT_SHARES["derivation"], DEMO_EVENT_SHARES["external"]
        shares = (
            f"enriched event shares (derivation {d['fracture_share']:.0%} fractures, {d['death_share']:.0%} deaths; "
            f"external {e['fracture_share']:.0%}, {e['death_share']:.0%})"
        )
    else:
        shares = "the simulator's published-like event shares"
    return (
        f"Sizes: {s.n_derivation} derivation + {s.n_external} external participants, one phantom each, with "
        f"{shares},\nso that the paper's main models (any fracture models 1-3, mortality models 1-2) have at "
        "least 5 events per parameter\n(docs/quickstart.md#demo). The model trains on its own phantoms."
    )


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.n_derivation < 20 or args.n_external < 20:
        raise UserError("--n-derivation and --n-external must be at least 20 (the report needs 20 per cohort)")
    for name in ("train_phantoms", "train_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    settings = DemoSettings(
        args.seed,
        args.n_derivation,
        args.n_external,
        args.event_shares,
        args.train_phantoms,
        args.train_epochs,
        args.allow_weak_model,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(SYNTHETIC_NOTICE)
    print(_sizes_line(settings), flush=True)
    from epi_spineage.privacy import DEMO_KEY

    key_file = out / DEMO_KEY_FILE_NAME
    key_file.write_bytes(DEMO_KEY + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPI_SPINEAGE_PSEUDONYM_KEY")}
    db = out / "demo.duckdb"
    model = out / "model"
    config = out / "demo-study.toml"
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    steps = _Steps(total=6)
    t0, cpu0 = time.perf_counter(), _self_cpu() + _children_cpu()

    # The model trains on its own phantoms in a child process (1 torch thread, the preset's) while this
    # process renders the cohort's archive on the other core: the two longest steps overlap.
    training: _Background | None = None
    if (model / "meta.json").is_file():
        steps.skip("train the phantom-tiny model", f"reusing {model} (delete it to retrain)")
    else:
        train = ["epi_spineage.train", "--preset", "phantom-tiny", "--out", str(model)]
        if args.train_phantoms:
            train += ["--phantoms", str(args.train_phantoms)]
        if args.train_epochs:
            train += ["--epochs", str(args.train_epochs)]
        if args.allow_weak_model:
            train += ["--allow-weak-model"]
        title = "train the phantom-tiny model on its own phantoms (CPU, 1 thread, deterministic budget)"
        number = steps.header(f"{title}, in the background", train)
        log_path = out / "train.log"
        print(f"    log: {log_path}", flush=True)
        training = _Background(number, title, train, env, log_path)
    try:
        number = steps.header("simulate the cohorts and render one phantom DICOM per participant")
        t, c = time.perf_counter(), _self_cpu()
        derivation, external, archive, reused = _write_inputs(out, settings)
        size = f"{archive} ({archive.stat().st_size / 1e6:.1f} MB)"
        if reused:
            print(f"    reusing {size} (same settings)", flush=True)
        else:
            print(f"    {size}", flush=True)
        steps.record("simulate_and_render", time.perf_counter() - t, _self_cpu() - c, number)
        # Loading the cohort needs no scores (the database joins them later, in v_cohort_scores), so it
        # also runs while the model trains, off the demo's critical path.
        for role, table in (("derivation", derivation), ("external", external)):
            steps.run(
                f"load_{role}",
                f"load the {role} cohort table (ids pseudonymised with the demo key)",
                ["epi_spineage.cohort", "load", str(table), "--db", str(db), "--key-file", str(key_file)],
                env,
            )
        if training is not None:
            print(f"\n    waiting for step {training.number} (training) ...", flush=True)
            training.wait(steps, "train")
    finally:
        if training is not None:
            training.stop()

    steps.run(
        "score",
        "score the archive into DuckDB (idempotent: a rerun skips what is scored)",
        [
            "epi_spineage.score",
            str(archive),
            "--model",
            str(model),
            "--db",
            str(db),
            "--key-file",
            str(key_file),
            "--workers",
            "1",
        ],
        env,
    )
    report = ["epi_spineage.report", "--db", str(db), "--out", str(out), "--config", str(config), "--save-cutpoints"]
    if not args.no_gallery:
        manifest = archive.with_name(archive.name + ".manifest.csv")
        images = _gallery_images(db, manifest, out, GALLERY_SIZE, DEMO_KEY)
        report += ["--model", str(model), "--images", str(images), "--gallery-size", str(GALLERY_SIZE)]
    # PNG figures only: the SVG and 300-dpi print copies took about 9 of the report's 30 s of CPU; the demo
    # prints the command that adds them (the same one without --no-svg, which must stay last).
    report += ["--no-svg"]
    steps.run("report", "build the report from the database (and save the accelerated-ageing cut into it)", report, env)

    wall, cpu = time.perf_counter() - t0, _self_cpu() + _children_cpu() - cpu0
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    (out / "demo-timings.json").write_text(
        json.dumps(
            {
                "total": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)},
                "steps": steps.timings,
                "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "settings": settings.stamp(),
            },
            indent=2,
        )
    )
    print(f"\nDone in {wall:.0f} s (CPU {cpu:.0f} s; load average {load} on {os.cpu_count()} CPUs).")
    print("Everything here is synthetic.")
    print(f"  report     {out / 'index.html'}")
    print(f"  database   {db}")
    print(f"  model      {model}")
    print(f"  archive    {archive}")
    print(f"  demo key   {key_file} (public: never use it for real data)")
    print(f"  timings    {out / 'demo-timings.json'}")
    print(
        "The demo's figures are PNG only (report --no-svg, to save time); for SVG and 300-dpi print copies, "
        f"rerun:\n  {_shown(report[:-1])}"
    )
    print("\nThree queries to try (duckdb CLI, or python -c 'import duckdb; ...'):")
    for what, sql in QUERIES:
        print(f'  -- {what}\n  duckdb -readonly {db} "{sql}"')
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage demo")


if __name__ == "__main__":
    raise SystemExit(main())
