"""``python -m epi_spineage.report``: the whole study as one self-contained HTML report.

With no arguments it simulates the synthetic demo cohorts (seeded), runs every analysis and writes
``reports/demo/index.html``; with ``--cohort`` or ``--db`` it reports on real data. Never imports torch:
the optional Grad-CAM gallery loads the model only when asked for and skips cleanly when torch is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.cli.common import add_key_argument, resolve_key
from epi_spineage.errors import UserError
from epi_spineage.progress import Progress
from epi_spineage.report import (
    DEFAULT_DEMO_OUT,
    DEFAULT_OUT,
    DEMO_N_DERIVATION,
    DEMO_N_EXTERNAL,
    DEMO_SEED,
    build_report,
)

log = logging.getLogger(__name__)

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
  python -m epi_spineage.report --cohort registry.parquet --config study.toml --jobs 2
      a registry-sized cohort: the analyses in two processes (the default where two cores are usable)
  python -m epi_spineage.report --db scores.duckdb --save-cutpoints
      ... and write the accelerated-ageing cut it learned into the database (v_accelerated then flags rows)

outputs (in --out): index.html (self-contained: opens offline), tables/*.csv, results.json,
figures/*.png and *.svg, report.qmd (Quarto source; `quarto render report.qmd` where installed);
with --pdf also report.pdf (needs Chromium).
"""


def _parser():
    p = make_parser("epi-spineage report", "Render the spine-age study as one self-contained HTML report.", _EPILOG)
    src = p.add_argument_group("data (none: the synthetic demo)")
    src.add_argument(
        "--cohort",
        nargs="+",
        metavar="FILE",
        help="cohort table(s): CSV, Parquet, or a DuckDB file with ::TABLE (default table 'cohort'); "
        "several files (e.g. derivation.parquet external.parquet) are stacked",
    )
    src.add_argument("--mapping", help="column-mapping TOML for --cohort (rename columns, recode values)")
    src.add_argument(
        "--db",
        help="DuckDB file from `epi-spineage score`/`cohort`: spine ages joined through "
        "the SQL views, plus a scoring-QC section",
    )
    src.add_argument(
        "--save-cutpoints",
        action="store_true",
        help="with --db: write the accelerated-ageing cut the report learned into the database's "
        "cutpoints table (taking the writer lock), so that v_accelerated flags participants",
    )
    add_key_argument(src, help_extra="; used when --cohort is joined to --db")
    p.add_argument(
        "--config",
        help="study config TOML (cohort roles, covariate sets, outcomes, thresholds); see examples/study.toml",
    )
    p.add_argument("--out", help="output folder (default reports/demo for the demo, reports/study otherwise)")
    p.add_argument(
        "--jobs",
        metavar="N",
        help='processes for the analyses: "auto" (min(2, usable cores)) or a whole number >= 1; 1 runs them one '
        'after another; the results are the same (default: the config\'s [report] jobs, "auto")',
    )
    demo = p.add_argument_group("demo")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help=f"simulator seed (default {DEMO_SEED})")
    demo.add_argument(
        "--n-derivation",
        type=int,
        default=DEMO_N_DERIVATION,
        help=f"derivation cohort size (default {DEMO_N_DERIVATION})",
    )
    demo.add_argument(
        "--n-external", type=int, default=DEMO_N_EXTERNAL, help=f"external cohort size (default {DEMO_N_EXTERNAL})"
    )
    extra = p.add_argument_group("Grad-CAM gallery (optional; needs the imaging extra)")
    extra.add_argument("--model", help="checkpoint folder or file for a Grad-CAM gallery")
    extra.add_argument("--images", help="image manifest CSV or archive for the gallery")
    extra.add_argument("--gallery-size", type=int, default=8, help="images in the gallery (default 8)")
    p.add_argument("--no-svg", action="store_true", help="write PNG figures only (faster)")
    p.add_argument(
        "--pdf",
        action="store_true",
        help="also print the report to report.pdf with headless Chromium (exit 2 when none is installed)",
    )
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    from epi_spineage.report.config import load_config
    from epi_spineage.report.inputs import load_gallery, load_inputs

    config = load_config(args.config)
    if args.jobs is not None:
        from epi_spineage.report.config import parse_jobs

        config.jobs = parse_jobs(args.jobs)
    if args.mapping and not args.cohort:
        raise UserError("--mapping needs --cohort")
    if args.save_cutpoints and not args.db:
        raise UserError("--save-cutpoints needs --db (the database to write the cut into)")
    # the key is needed only to join the cohort file's raw ids to the database's pseudonyms
    key = resolve_key(args.key_file, required=False) if args.cohort and args.db else None
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    # one progress display for the whole run: a bar with each step's time on a terminal (not under
    # --quiet), else one INFO summary line (epi_spineage.progress)
    with Progress("report", unit="step", logger=log) as progress:
        with progress.step("simulate the demo cohorts" if not (args.cohort or args.db) else "read the inputs"):
            inputs = load_inputs(
                cohort=args.cohort,
                mapping=args.mapping,
                db=args.db,
                config=config,
                seed=args.seed,
                n_derivation=args.n_derivation,
                n_external=args.n_external,
                key=key,
            )
        out = out or (DEFAULT_DEMO_OUT if inputs.synthetic else DEFAULT_OUT)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a folder")
        gallery = None
        if args.model or args.images:
            with progress.step("Grad-CAM gallery"):
                gallery = load_gallery(args.model, args.images, n=args.gallery_size)
        index = build_report(
            out,
            derivation=inputs.derivation,
            external=inputs.external,
            truth=inputs.truth,
            config=config,
            synthetic=inputs.synthetic,
            source=inputs.source,
            db_path=args.db,
            gallery=gallery,
            svg=not args.no_svg,
            extra_warnings=inputs.warnings,
            save_cutpoints=args.save_cutpoints,
            progress=progress,
        )
        from epi_spineage.report.pdf import remove_stale_pdf, write_pdf

        print(index, flush=True)  # before the PDF: the report stands even when printing it fails
        if args.pdf:
            progress.total = (progress.total or 0) + 1
            with progress.step("print to PDF"):
                pdf = write_pdf(index)
            print(pdf)
        else:
            remove_stale_pdf(index)  # one printed from an earlier run would show other numbers
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage report")
