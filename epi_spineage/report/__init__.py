"""``python -m epi_spineage.report``: the whole study as one self-contained HTML report.

With no arguments it simulates the synthetic demo cohorts (seeded), runs every analysis and writes
``reports/demo/index.html``; with ``--cohort`` it reports on real data. Never imports torch: the
optional Grad-CAM gallery loads ``epi_spineage.explain`` only when asked for and skips cleanly when
torch is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

__all__ = ["main", "build_report", "demo_study"]

log = logging.getLogger(__name__)

DEFAULT_DEMO_OUT = Path("reports/demo")
DEFAULT_OUT = Path("reports/study")
DEMO_SEED = 2025
DEMO_N_DERIVATION = 10341
DEMO_N_EXTERNAL = 3508

_EPILOG = """examples:
  python -m epi_spineage.report
      the synthetic demo (seeded) -> reports/demo/index.html
  python -m epi_spineage.report --n-derivation 3000 --n-external 1500 --out /tmp/small
      a smaller demo
  python -m epi_spineage.report --cohort cohort.parquet --mapping mapping.toml --config study.toml --out reports/mystudy
      a real cohort table (CSV, Parquet, or DUCKDB_FILE::TABLE) in the documented schema
  python -m epi_spineage.report --cohort sim/derivation.parquet sim/external.parquet
      tables written by `epi-spineage synth cohort` (labelled synthetic: truth.json sits beside them)
  python -m epi_spineage.report --db scores.duckdb --out reports/scored
      a scored database: the cohort table and spine ages joined through the SQL views, plus a
      scoring-QC / drift section

outputs (in --out): index.html (self-contained: opens offline), tables/*.csv, results.json,
figures/*.png and *.svg, report.qmd (Quarto source; `quarto render report.qmd` where installed).
"""


def _parser():
    p = make_parser("epi-spineage report", "Render the spine-age study as one self-contained HTML report.",
                    _EPILOG)
    src = p.add_argument_group("data (none: the synthetic demo)")
    src.add_argument("--cohort", nargs="+", metavar="FILE",
                     help="cohort table(s): CSV, Parquet, or a DuckDB file with ::TABLE (default table 'cohort'); "
                          "several files (e.g. derivation.parquet external.parquet) are stacked")
    src.add_argument("--mapping", help="column-mapping TOML for --cohort (rename columns, recode values)")
    src.add_argument("--db", help="DuckDB file from `epi-spineage score`/`cohort`: spine ages joined through "
                                  "the SQL views, plus a scoring-QC section")
    p.add_argument("--config", help="study config TOML (cohort roles, covariate sets, outcomes, thresholds); "
                                    "see examples/study.toml")
    p.add_argument("--out", help="output folder (default reports/demo for the demo, reports/study otherwise)")
    demo = p.add_argument_group("demo")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help=f"simulator seed (default {DEMO_SEED})")
    demo.add_argument("--n-derivation", type=int, default=DEMO_N_DERIVATION,
                      help=f"derivation cohort size (default {DEMO_N_DERIVATION})")
    demo.add_argument("--n-external", type=int, default=DEMO_N_EXTERNAL,
                      help=f"external cohort size (default {DEMO_N_EXTERNAL})")
    extra = p.add_argument_group("Grad-CAM gallery (optional; needs the imaging extra)")
    extra.add_argument("--model", help="checkpoint folder or file for a Grad-CAM gallery")
    extra.add_argument("--images", help="image manifest CSV or archive for the gallery")
    extra.add_argument("--gallery-size", type=int, default=8, help="images in the gallery (default 8)")
    p.add_argument("--no-svg", action="store_true", help="write PNG figures only (faster)")
    return p


def demo_study(seed: int = DEMO_SEED, n_derivation: int = DEMO_N_DERIVATION, n_external: int = DEMO_N_EXTERNAL):
    """The simulated demo cohorts: ``(derivation, external, truth)``."""
    from epi_spineage.synth.cohort import simulate_study

    if n_derivation < 200 or n_external < 100:
        raise UserError("demo cohorts need --n-derivation >= 200 and --n-external >= 100")
    study = simulate_study(seed=seed, n_derivation=n_derivation, n_external=n_external)
    return study.derivation, study.external, study.truth


def build_report(out: Path, *, derivation=None, external=None, truth=None, config=None, synthetic: bool,
                 source: str = "", db_path: str | None = None, gallery=None, svg: bool = True,
                 extra_warnings: Sequence[str] = ()) -> Path:
    """Run every analysis and write the report under ``out``; returns the path of ``index.html``."""
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import write_study_report

    config = config or StudyConfig()
    t0 = time.perf_counter()
    results = run_study(derivation, external, config)
    results.warnings.extend(extra_warnings)
    if truth is not None:
        results.attach_truth(truth)
    qc = None
    if db_path is not None:
        from epi_spineage.report.scoring_qc import scoring_qc

        qc = scoring_qc(db_path)
    log.info("analyses took %.1f s", time.perf_counter() - t0)
    return write_study_report(out, results, config=config, synthetic=synthetic, source=source, qc=qc,
                              gallery=gallery, svg=svg)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    from epi_spineage.report.config import load_config
    from epi_spineage.report.inputs import load_gallery, load_inputs

    config = load_config(args.config)
    if args.mapping and not args.cohort:
        raise UserError("--mapping needs --cohort")
    inputs = load_inputs(cohort=args.cohort, mapping=args.mapping, db=args.db, config=config,
                         seed=args.seed, n_derivation=args.n_derivation, n_external=args.n_external)
    out = Path(args.out) if args.out else (DEFAULT_DEMO_OUT if inputs.synthetic else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    gallery = load_gallery(args.model, args.images, n=args.gallery_size) if (args.model or args.images) else None
    index = build_report(out, derivation=inputs.derivation, external=inputs.external, truth=inputs.truth,
                         config=config, synthetic=inputs.synthetic, source=inputs.source,
                         db_path=args.db, gallery=gallery, svg=not args.no_svg, extra_warnings=inputs.warnings)
    print(index)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage report")
