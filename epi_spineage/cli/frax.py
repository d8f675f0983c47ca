"""``python -m epi_spineage.frax``: FRAX batch export with spine age in place of age, and import of the results.

The file formats live in ``epi_spineage.tables.frax``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError, ValidationError
from epi_spineage.tables.frax import export_frax_input, import_frax_results, rows_path

log = logging.getLogger("epi_spineage.frax")


def _write(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)


def _load_cohort(path, mapping, table) -> pd.DataFrame:
    from epi_spineage.tables import read_table, validate_cohort

    df = read_table(path, mapping=mapping, table=table)
    try:
        validate_cohort(df, raise_on_error=True)
    except ValidationError as exc:
        for line in exc.problems:
            sys.stderr.write(f"  {line}\n")
        raise UserError(
            f"{path}: cohort table failed validation ({len(exc.problems)} problem(s), listed above)"
        ) from None
    return df


_EPILOG = """examples:
  # FRAX input with spine age; ID = your country's model id in the FRAXplus CSV documentation
  python -m epi_spineage.frax export cohort.parquet --out frax_spine.csv --country-id ID
  python -m epi_spineage.frax export cohort.csv --mapping my_columns.toml --out frax_age.csv \\
      --country-id ID --age chronological
  # after running frax_spine.csv through the FRAX tool:
  python -m epi_spineage.frax import frax_spine_results.csv --rows frax_spine.rows.csv \\
      --cohort cohort.parquet --out cohort_with_frax.parquet
"""


def _main(argv: Sequence[str] | None) -> int:
    parser = make_parser("epi-spineage frax", "Export FRAX batch input with spine age; import FRAX results.", _EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the FRAXplus bulk CSV (13 columns) and a rows file")
    ex.add_argument("cohort", help="cohort table (.csv, .parquet, .duckdb)")
    ex.add_argument("--out", required=True, help="CSV to write; the rows file goes beside it")
    ex.add_argument(
        "--country-id", type=int, required=True, help="FRAX country/model id (see the FRAXplus CSV documentation)"
    )
    ex.add_argument(
        "--age",
        choices=("spine", "chronological"),
        default="spine",
        help="age written in column 3 (default: spine age, clamped to 40-90)",
    )
    ex.add_argument(
        "--uncorrected", action="store_true", help="use uncorrected spine age even where corrected values exist"
    )
    imp = sub.add_parser("import", help="read FRAX results back onto the cohort")
    imp.add_argument("results", help="the CSV the FRAX tool returned")
    imp.add_argument("--cohort", required=True, help="cohort table the export was made from")
    imp.add_argument("--out", required=True, help="cohort with the FRAX columns added (.csv or .parquet)")
    imp.add_argument("--rows", help="rows file from the export (default: beside the results)")
    imp.add_argument(
        "--age",
        choices=("spine", "chronological"),
        default="spine",
        help="which run this is: fills frax_*_spine_pct (spine) or frax_*_pct",
    )
    for p in (ex, imp):
        p.add_argument("--mapping", help="TOML column-mapping config (see examples/column_mapping.toml)")
        p.add_argument("--table", help="table name inside a DuckDB file (default: cohort)")
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    cohort = _load_cohort(args.cohort, args.mapping, args.table)
    spine = args.age == "spine"
    if args.command == "export":
        rows = export_frax_input(
            cohort,
            args.out,
            use_spine_age=spine,
            country_id=args.country_id,
            corrected=False if args.uncorrected else None,
        )
        sys.stderr.write(
            f"wrote {int(rows['exported'].sum())} row(s) to {args.out} "
            f"({int(rows['clamped'].sum())} clamped) and {rows_path(args.out)}\n"
        )
        return 0
    res = import_frax_results(args.results, args.rows, use_spine_age=spine)
    new = [c for c in res.columns if c != "participant_id"]
    clash = [c for c in new if c in cohort.columns]
    if clash:
        log.warning("replacing existing column(s) %s", clash)
        cohort = cohort.drop(columns=clash)
    merged = cohort.merge(res, on="participant_id", how="left", validate="one_to_one")
    _write(merged, Path(args.out))
    sys.stderr.write(f"added {', '.join(new)} for {len(res)} participant(s); wrote {args.out}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage frax")


if __name__ == "__main__":
    sys.exit(main())
