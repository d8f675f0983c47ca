"""``python -m epi_spineage.ingest FOLDER... --db FILE.duckdb``: load spool batches or Ray shards.

Both hold the scorer's flat result rows as Parquet (plus model/run rows as JSON); loading is keyed,
so a folder can be ingested twice without adding anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

EPILOG = """\
examples:
  # results a scorer spooled while an analyst held the database open
  python -m epi_spineage.ingest spine.duckdb.spool --db spine.duckdb

  # Parquet shards from the Ray scale-out (kept after loading unless --delete)
  python -m epi_spineage.ingest shards/ --db spine.duckdb

A spool folder (it holds a .epi_spineage_spool marker) is emptied file by file as each file's
transaction commits; other folders are left as they are unless --delete is given. Waits up to
--lock-timeout seconds while another process holds the database; refuses while a scorer runs.
"""


def build_parser():
    p = make_parser("epi-spineage ingest", "Load Parquet result shards (spool or Ray) into a DuckDB file.", EPILOG)
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="spool folder or folder of Parquet shards")
    p.add_argument("--db", required=True, metavar="FILE.duckdb", help="DuckDB file (created if missing)")
    p.add_argument("--delete", action="store_true", help="delete each file after it is loaded (spool folders always)")
    p.add_argument(
        "--key-file",
        default=None,
        help="pseudonymisation key file (or EPI_SPINEAGE_PSEUDONYM_KEY[_FILE]); needed only to migrate an "
        "older database whose stored paths are not yet hashed",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait while another process holds the database (default 60)",
    )
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from epi_spineage.db.locking import DatabaseBusy, ScorerLock
    from epi_spineage.score.spool import ingest_folder

    for folder in args.folders:
        if not Path(folder).is_dir():
            raise UserError(f"not a folder: {folder}")
    db_path = Path(args.db).expanduser().resolve()
    key = _optional_key(args.key_file)
    lock = ScorerLock(db_path).acquire(what="ingest", wait_s=0.0)
    try:
        for folder in args.folders:
            try:
                summary = ingest_folder(
                    db_path, folder, delete=True if args.delete else None, lock_timeout_s=args.lock_timeout, key=key
                )
            except DatabaseBusy as exc:
                raise UserError(f"{exc}; nothing was loaded from {folder}, try again later") from None
            print(f"{folder}: {summary.line()}")
    finally:
        lock.release()
    return EXIT_OK


def _optional_key(key_file) -> bytes | None:
    """The key when one is configured; ingest needs it only for migration 3 (which refuses without it)."""
    import os

    from epi_spineage.privacy import load_key
    from epi_spineage.schema import PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV

    if key_file or os.environ.get(PSEUDONYM_KEY_ENV) or os.environ.get(PSEUDONYM_KEY_FILE_ENV):
        return load_key(key_file=key_file)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage ingest")


if __name__ == "__main__":
    raise SystemExit(main())
