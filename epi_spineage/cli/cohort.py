"""``python -m epi_spineage.cohort``: validate a clinical cohort table and load it into DuckDB.

Participant ids are replaced by the same keyed hash the scorer stores for DICOM PatientIDs, so
``cohort`` rows and scored images join on ``cohort.participant_id = images.participant_key``
without a raw identifier ever reaching the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

log = logging.getLogger("epi_spineage.cohort")

EPILOG = """\
examples:
  export EPI_SPINEAGE_PSEUDONYM_KEY_FILE=/etc/epi-spineage/key   # the scorer's key
  python -m epi_spineage.cohort validate clinic.csv --mapping mapping.toml
  python -m epi_spineage.cohort load clinic.csv --db spine.duckdb --mapping mapping.toml
  python -m epi_spineage.cohort load clinic.parquet --db spine.duckdb --replace
  python -m epi_spineage.cohort upgrade --db spine.duckdb      # apply schema migrations in place
  python -m epi_spineage.cohort cutpoints set --db spine.duckdb --name pad_tertile_years --value 2.5 \
      --source-cohort derivation --method "tertile of the derivation test set"
  python -m epi_spineage.cohort cutpoints show --db spine.duckdb
  python -m epi_spineage.cohort bias-fit --db spine.duckdb --calibration-set external:calibration

`load` validates first (one line per problem, nothing loaded on failure), pseudonymises
participant_id with the key (EPI_SPINEAGE_PSEUDONYM_KEY, ..._KEY_FILE or --key-file), and
upserts by participant (--replace empties the table first). Columns outside the cohort schema are
added to the table as they are. `cutpoints set` stores the frozen PAD cut that v_accelerated compares
with (pad_tertile_years: uncorrected PAD; pad_corrected_tertile_years: corrected PAD; --cut-rule '>='
flags PAD >= cut, '>' flags PAD > cut); until one is set, v_accelerated.accelerated is NULL.
`bias-fit` fits one Beheshti bias correction per scanner manufacturer on the calibration set you name
(COHORT or COHORT:SPLIT of the cohort table, scored participants only) and stores it with the model
(table bias_corrections); a manufacturer with fewer than --min-images calibration images keeps the
model's pooled correction. v_cohort_scores applies it, and the report does with
[bias] correction = "per_manufacturer" (docs/methods.md#domain-shift).
"""


def build_parser():
    p = make_parser(
        "epi-spineage cohort", "Validate a cohort table, or load it into DuckDB with pseudonymised ids.", EPILOG
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{load,validate,upgrade,cutpoints,bias-fit}")
    up = sub.add_parser(
        "upgrade",
        help="bring a database's schema to this package's version (nothing is rescored)",
        description="Apply the pending schema migrations to a database in place.",
        epilog=EPILOG,
        formatter_class=p.formatter_class,
    )
    up.error = p.error  # type: ignore[method-assign]
    up.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file to upgrade")
    up.add_argument("--key-file", default=None, help="file holding the pseudonymisation key (some migrations need it)")
    up.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait while another process holds the database (default 60)",
    )
    _add_cutpoints(sub, p)
    _add_bias_fit(sub, p)
    for name, text in (("load", "validate, pseudonymise and load into DuckDB"), ("validate", "check a table only")):
        s = sub.add_parser(name, help=text, description=text, epilog=EPILOG, formatter_class=p.formatter_class)
        s.error = p.error  # type: ignore[method-assign]  # one-line usage errors, exit 2
        s.add_argument("file", metavar="FILE", help="CSV, Parquet or DuckDB file")
        s.add_argument("--mapping", metavar="TOML", help="column-mapping config (renames and recodes)")
        s.add_argument("--source-table", default=None, help="table to read when FILE is a DuckDB file")
        if name == "load":
            s.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file (created if missing)")
            s.add_argument("--table", default="cohort", help="destination table (default cohort)")
            s.add_argument("--replace", action="store_true", help="empty the table before loading")
            s.add_argument("--key-file", default=None, help="file holding the pseudonymisation key")
            s.add_argument(
                "--lock-timeout",
                type=float,
                default=60.0,
                metavar="SECONDS",
                help="how long to wait while another process holds the database (default 60)",
            )
    return p


def _add_bias_fit(sub, p) -> None:
    bf = sub.add_parser(
        "bias-fit",
        help="fit per-manufacturer bias corrections on a calibration set and store them with the model",
        description="Fit one bias correction per scanner manufacturer on the calibration set you name and "
        "store it with the model (table bias_corrections; docs/methods.md#domain-shift).",
        epilog=EPILOG,
        formatter_class=p.formatter_class,
    )
    bf.error = p.error
    bf.add_argument("--db", required=True, metavar="FILE.duckdb", help="the scored DuckDB file with its cohort")
    bf.add_argument(
        "--calibration-set",
        required=True,
        metavar="COHORT[:SPLIT]",
        help="the participants to fit on: a cohort value, or cohort:split (e.g. external:calibration); "
        "the report refuses to analyse any of them with this correction",
    )
    bf.add_argument("--model-id", default=None, help="the model whose scores to correct (needed when several)")
    bf.add_argument(
        "--min-images",
        type=int,
        default=30,
        metavar="N",
        help="a manufacturer with fewer calibration images keeps the pooled correction (default 30)",
    )
    bf.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait while another process holds the database (default 60)",
    )


def _bias_fit(args) -> int:
    from epi_spineage.db.bias import fit_bias_corrections

    model_id, fit = fit_bias_corrections(
        args.db,
        args.calibration_set,
        model_id=args.model_id,
        min_images=args.min_images,
        lock_timeout_s=args.lock_timeout,
    )
    print(f"{args.db}: per-manufacturer bias correction for model {model_id}, calibration set {fit.calibration_set}")
    for m in sorted(fit.n_images_):
        f = fit.fits_.get(m)
        line = f"alpha {f.alpha_:+.4f}, beta {f.beta_:+.3f}" if f is not None else "pooled correction (fallback)"
        print(f"  {m}: {fit.n_images_[m]} image(s); {line}")
    for note in fit.notes():
        print(f"  note: {note}")
    return EXIT_OK


def _add_cutpoints(sub, p) -> None:
    cp = sub.add_parser(
        "cutpoints",
        help="set or show the frozen PAD cut points that v_accelerated reads",
        description="Set or show the cut points of the accelerated-ageing flag (docs/guides/score.md#cutpoints).",
        epilog=EPILOG,
        formatter_class=p.formatter_class,
    )
    cp.error = p.error
    cps = cp.add_subparsers(dest="cut_command", required=True, metavar="{set,show}")
    st = cps.add_parser(
        "set",
        help="store (or replace) one cut point",
        epilog=EPILOG,
        description="Store (or replace) one cut point; the views read it at once.",
        formatter_class=p.formatter_class,
    )
    st.error = p.error
    st.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file (created if missing)")
    st.add_argument(
        "--name",
        required=True,
        help="pad_tertile_years (uncorrected PAD) or "
        "pad_corrected_tertile_years (corrected PAD); other names are stored but no view reads them",
    )
    st.add_argument("--value", required=True, type=float, metavar="YEARS", help="the cut, in years of PAD")
    st.add_argument(
        "--cut-rule",
        default=">=",
        choices=(">=", ">"),
        help="'>=' (default): PAD >= cut is accelerated; '>': PAD > cut (Stata xtile's top bin)",
    )
    st.add_argument("--source-cohort", default=None, help="the cohort the cut was learned on, e.g. derivation")
    st.add_argument("--method", default="user", help="how the cut was obtained (default: user)")
    st.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait while another process holds the database (default 60)",
    )
    sh = cps.add_parser(
        "show",
        help="list the stored cut points",
        epilog=EPILOG,
        description="List the stored cut points (read-only).",
        formatter_class=p.formatter_class,
    )
    sh.error = p.error
    sh.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file")


def _cutpoints(args) -> int:
    from epi_spineage.db.cutpoints import VIEW_NAMES, read_cutpoints, save_cutpoint

    if args.cut_command == "set":
        save_cutpoint(
            args.db,
            name=args.name,
            value_years=args.value,
            cut_rule=args.cut_rule,
            source_cohort=args.source_cohort,
            method=args.method,
            lock_timeout_s=args.lock_timeout,
        )
        note = "" if args.name in VIEW_NAMES else f" (no view reads this name; they read {', '.join(VIEW_NAMES)})"
        print(f"{args.db}: cut point {args.name} = {args.value:g} years, rule PAD {args.cut_rule} cut{note}")
        return EXIT_OK
    if not Path(args.db).expanduser().is_file():
        raise UserError(f"database not found: {args.db}")
    df = read_cutpoints(args.db)
    if df.empty:
        print(
            f"{args.db}: no cut points stored; v_accelerated flags stay NULL until one is set "
            "(cohort cutpoints set --name pad_tertile_years --value YEARS)"
        )
        return EXIT_OK
    print(df.to_string(index=False))
    return EXIT_OK


def _read(args):
    from epi_spineage.tables import read_table, validate_cohort

    if not Path(args.file).exists():
        raise UserError(f"file not found: {args.file}")
    df = read_table(args.file, mapping=args.mapping, table=args.source_table)
    problems = validate_cohort(df, raise_on_error=False)
    return df, problems


def _upgrade(args) -> int:
    from epi_spineage.cli.common import resolve_key
    from epi_spineage.db.schema import upgrade_database

    db_path = Path(args.db).expanduser()
    if not db_path.is_file():
        raise UserError(f"database not found: {db_path}")
    key = resolve_key(args.key_file, required=False)  # only migrations that hash values use it
    before, after = upgrade_database(db_path, key=key, lock_timeout_s=args.lock_timeout)
    print(
        f"{args.db}: schema version {before} -> {after}"
        if before != after
        else f"{args.db}: already at schema version {after}"
    )
    return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "upgrade":
        return _upgrade(args)
    if args.command == "cutpoints":
        return _cutpoints(args)
    if args.command == "bias-fit":
        return _bias_fit(args)
    df, problems = _read(args)
    if args.command == "validate":
        if problems:
            for line in problems:
                print(line)
            print(f"{args.file}: {len(problems)} problem(s)")
            return 1
        print(f"{args.file}: {len(df)} rows, valid")
        return EXIT_OK
    if problems:
        from epi_spineage.errors import ValidationError

        raise ValidationError(problems, what=str(args.file))
    from epi_spineage.cli.common import resolve_key

    key = resolve_key(args.key_file)
    from epi_spineage.provenance import simulator_truth

    synthetic = args.source_table is None and simulator_truth(args.file) is not None
    from epi_spineage.db.cohort import load_cohort

    n = load_cohort(
        df,
        Path(args.db).expanduser(),
        key=key,
        table=args.table,
        replace=args.replace,
        lock_timeout_s=args.lock_timeout,
        synthetic=synthetic,
    )
    print(
        f"loaded {n} participant(s) into {args.db}:{args.table} (ids pseudonymised"
        + ("; synthetic: simulator output" if synthetic else "")
        + ")"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage cohort")


if __name__ == "__main__":
    raise SystemExit(main())
