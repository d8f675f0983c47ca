"""``python -m epi_spineage.synth cohort|images``: simulated cohorts and phantom image archives."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError
from epi_spineage.schema import SYNTHETIC_NOTICE

log = logging.getLogger(__name__)

PROG = "epi-spineage synth"

_EPILOG = f"""\
examples:
  python -m epi_spineage.synth cohort --out demo_data
      writes demo_data/derivation.parquet, demo_data/external.parquet and demo_data/truth.json
  python -m epi_spineage.synth cohort --out small --n-derivation 2000 --n-external 800 --format csv --seed 7
  python -m epi_spineage.synth images --n 200 --out phantoms.zip
      writes phantoms.zip (DICOM + manifest.csv inside) and phantoms.zip.manifest.csv beside it
  python -m epi_spineage.synth images --n 50 --out phantom_dir --modality vfa --scale 0.25 --format png
  python -m epi_spineage.synth images --participants demo_data/external.parquet --out external_vfa.tar.gz
      one phantom per cohort participant, drawn from that participant's spine age and conditions

{SYNTHETIC_NOTICE}
"""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise UserError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise UserError(f"expected a number >= 1, got {v}")
    return v


def _scale(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"--scale: expected a number, got {text!r}") from None
    if not 0.02 <= v <= 2.0:
        raise UserError(f"--scale must lie in 0.02..2, got {v}")
    return v


def _parser():
    p = make_parser(PROG, "Synthetic demo data: cohort tables with planted truth, and spine phantom images.", _EPILOG)
    sub = p.add_subparsers(dest="command", metavar="{cohort,images}")
    c = sub.add_parser(
        "cohort",
        help="simulate the derivation and external cohorts (+ truth.json)",
        description="Simulate both cohorts in the cohort schema, with truth.json (planted HRs, R^2).",
        epilog=_EPILOG,
        formatter_class=p.formatter_class,
    )
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    c.add_argument("--n-derivation", type=_positive_int, default=10341, help="derivation size (default 10341)")
    c.add_argument("--n-external", type=_positive_int, default=3508, help="external size (default 3508)")
    c.add_argument(
        "--format",
        choices=("parquet", "csv", "duckdb"),
        default="parquet",
        help="table format (duckdb: one cohorts.duckdb with tables derivation and external)",
    )
    i = sub.add_parser(
        "images",
        help="write phantom images (DICOM or PNG) plus manifest.csv",
        description="Write spine phantoms to a folder, .zip, .tar or .tar.gz, with manifest.csv.",
        epilog=_EPILOG,
        formatter_class=p.formatter_class,
    )
    i.add_argument("--out", required=True, help="folder, or archive ending in .zip, .tar or .tar.gz")
    i.add_argument("--n", type=_positive_int, default=200, help="number of images (default 200)")
    i.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    i.add_argument(
        "--modality", choices=("radiograph", "vfa", "mixed"), default="mixed", help="image style (default mixed)"
    )
    i.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help="size factor (default 0.25: radiographs ~600 px tall; 1.0 is full size)",
    )
    i.add_argument("--format", choices=("dicom", "png"), default="dicom", help="file format (default dicom)")
    i.add_argument(
        "--participants",
        metavar="TABLE",
        default=None,
        help="cohort table (.parquet or .csv, e.g. from `synth cohort`): one image per row, driven by "
        "its spine_age_years, sex, prevalent_vf, prosthesis and tscore_lumbar; --n is ignored",
    )
    for q in (c, i):
        q.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return p


def _read_participants(path: str):
    from pathlib import Path

    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--participants: file not found: {p}")
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    if p.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(p, dtype={"participant_id": str})
    raise UserError(f"--participants must be a .parquet or .csv file: {p}")


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        raise UserError("choose a command: cohort or images")
    if args.command == "cohort":
        from epi_spineage.synth.cohort import simulate_study

        study = simulate_study(seed=args.seed, n_derivation=args.n_derivation, n_external=args.n_external)
        paths = study.write(args.out, args.format)
        for p in paths.values():
            log.info("wrote %s", p)
        print(f"wrote {', '.join(str(p) for p in paths.values())} (synthetic)")
        return 0
    from epi_spineage.synth.archive import write_phantom_archive
    from epi_spineage.synth.phantom import DEFAULT_SCALE

    participants = _read_participants(args.participants) if args.participants else None
    manifest = write_phantom_archive(
        args.out,
        n=args.n,
        seed=args.seed,
        participants=participants,
        scale=args.scale if args.scale is not None else DEFAULT_SCALE,
        modality=args.modality,
        image_format=args.format,
    )
    print(f"wrote {len(manifest)} synthetic phantom images to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog=PROG)
