"""``python -m epi_spineage.demo``: the whole product on synthetic data, in one command (``make demo``).

Simulates the study, renders one phantom DICOM per analysed participant into a zip archive, trains the
``phantom-tiny`` model on CPU, scores the archive into ``reports/demo/demo.duckdb`` with the public demo key,
loads the cohort, builds the report from the database (saving the accelerated-ageing cut into it, with a
Grad-CAM gallery of the most accelerated phantoms) and prints where everything is and three SQL queries to try.

Each step runs the package's own command-line tool in a child process, exactly as a user would, so the
demo also shows the commands. Rerunning reuses what is there: the cohort and archive (same settings), the
trained model, and the database (the scorer skips images it has already scored).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from epi_spineage.cli import EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError
from epi_spineage.schema import SYNTHETIC_NOTICE

#: Why these sizes (see docs/quickstart.md): the report analyses the scored participants only. The
#: largest fracture model (model 3) has 10 parameters and the report refuses fewer than 5 events per
#: parameter, so each analysed cohort needs about 50 incident fractures: at the simulator's ~12 %
#: cumulative incidence and ~30 % missing DXA (model 3 is complete-case), about 600 scored participants per
#: cohort. The derivation cohort is analysed in full ([cohorts] derivation_split = "" in the demo config):
#: the demo model was trained on separate phantoms, so none of these participants was seen in training.
DEFAULT_N_DERIVATION = 600
DEFAULT_N_EXTERNAL = 600
DEFAULT_SEED = 2025
DEFAULT_OUT = Path("reports/demo")
DEMO_KEY_FILE_NAME = "PUBLIC-DEMO-KEY-not-for-real-data.txt"

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
    train_phantoms: int | None
    train_epochs: int | None
    allow_weak_model: bool

    def stamp(self) -> dict:
        return asdict(self)


EPILOG = """\
examples:
  python -m epi_spineage.demo                       # the whole chain (make demo), a few minutes on 2 cores
  python -m epi_spineage.demo --out /tmp/demo --n-derivation 60 --n-external 40 --train-phantoms 120 \\
      --allow-weak-model                              # a quick, small run (the model may be weak)

Everything made here is synthetic: the cohorts come from the simulator, the images are phantoms and the key
is the package's public demo key (never use it for real data).
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


class _Steps:
    """One progress display for the chain: a numbered header per step with its time."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()

    def run(self, title: str, argv: list[str], env: dict[str, str]) -> None:
        """Run ``python -m <argv>`` as a child process; a failed step ends the demo with one line."""
        self.done += 1
        shown = " ".join(shlex.quote(a) for a in ["python", "-m", *argv])
        print(f"\n[{self.done}/{self.total}] {title}\n    $ {shown}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", *argv], env=env)
        if proc.returncode != 0:
            raise UserError(f"demo step {self.done} ({title}) failed with exit code {proc.returncode}")
        print(f"    done in {time.perf_counter() - t:.1f} s", flush=True)

    def skip(self, title: str, why: str) -> None:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {title}: {why}", flush=True)


def _write_inputs(out: Path, s: DemoSettings) -> tuple[Path, Path, Path]:
    """The cohort tables (derivation and external) and the phantom archive, unless already there."""
    import pandas as pd

    from epi_spineage.synth.archive import write_phantom_archive
    from epi_spineage.synth.cohort import simulate_study, write_study

    data = out / "data"
    stamp = data / "demo-settings.json"
    archive = out / "archive" / "phantoms.zip"
    wanted = {k: v for k, v in s.stamp().items() if k in ("seed", "n_derivation", "n_external")}
    if stamp.is_file() and archive.is_file() and json.loads(stamp.read_text()) == wanted:
        return data / "derivation.parquet", data / "external.parquet", archive
    study = simulate_study(seed=s.seed, n_derivation=s.n_derivation, n_external=s.n_external)
    write_study(study, data)
    archive.parent.mkdir(parents=True, exist_ok=True)
    both = pd.concat([study.derivation, study.external], ignore_index=True)
    write_phantom_archive(archive.resolve(), participants=both, seed=s.seed)
    stamp.write_text(json.dumps(wanted))
    return data / "derivation.parquet", data / "external.parquet", archive


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.n_derivation < 20 or args.n_external < 20:
        raise UserError("--n-derivation and --n-external must be at least 20 (the report needs 20 per cohort)")
    settings = DemoSettings(
        args.seed, args.n_derivation, args.n_external, args.train_phantoms, args.train_epochs, args.allow_weak_model
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(SYNTHETIC_NOTICE)
    from epi_spineage.privacy import DEMO_KEY

    key_file = out / DEMO_KEY_FILE_NAME
    key_file.write_bytes(DEMO_KEY + b"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPI_SPINEAGE_PSEUDONYM_KEY")}
    db = out / "demo.duckdb"
    model = out / "model"
    config = out / "demo-study.toml"
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    steps = _Steps(total=6)
    t0 = time.perf_counter()

    steps.done += 1
    print(
        f"\n[{steps.done}/{steps.total}] simulate the cohorts and render one phantom DICOM per participant", flush=True
    )
    t = time.perf_counter()
    derivation, external, archive = _write_inputs(out, settings)
    print(f"    {archive} ({archive.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s", flush=True)

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
        steps.run("train the phantom-tiny model on its own phantoms (CPU, deterministic budget)", train, env)

    steps.run(
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
    steps.run(
        "load the cohort tables (ids pseudonymised with the demo key)",
        ["epi_spineage.cohort", "load", str(derivation), "--db", str(db), "--key-file", str(key_file)],
        env,
    )
    steps.run(
        "load the external cohort",
        ["epi_spineage.cohort", "load", str(external), "--db", str(db), "--key-file", str(key_file)],
        env,
    )
    report = ["epi_spineage.report", "--db", str(db), "--out", str(out), "--config", str(config), "--save-cutpoints"]
    if not args.no_gallery:
        report += ["--model", str(model), "--images", str(archive.with_name(archive.name + ".manifest.csv"))]
    steps.run("build the report from the database (and save the accelerated-ageing cut into it)", report, env)

    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Everything here is synthetic.")
    print(f"  report     {out / 'index.html'}")
    print(f"  database   {db}")
    print(f"  model      {model}")
    print(f"  archive    {archive}")
    print(f"  demo key   {key_file} (public: never use it for real data)")
    print("\nThree queries to try (duckdb CLI, or python -c 'import duckdb; ...'):")
    for what, sql in QUERIES:
        print(f'  -- {what}\n  duckdb -readonly {db} "{sql}"')
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage demo")


if __name__ == "__main__":
    raise SystemExit(main())
