"""``python -m epi_spineage.score``: the nightly scoring job."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from epi_spineage.cli import EXIT_FAILURE, EXIT_OK, make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

log = logging.getLogger("epi_spineage.score")

EPILOG = """\
examples:
  # score a night's archives with a trained model (creates the database if missing)
  export EPI_SPINEAGE_PSEUDONYM_KEY_FILE=/etc/epi-spineage/key
  python -m epi_spineage.score /data/pacs/2026-01-01.tar.gz --model models/b4 --db spine.duckdb

  # how many files would be scored, without reading them
  python -m epi_spineage.score /data/pacs --model models/b4 --db spine.duckdb --dry-run

  # find the file behind a stored path hash (on a machine with the archive and the key)
  python -m epi_spineage.score --locate h_0123456789abcdef0123456789abcdef /data/pacs/2026-01-01.tar.gz
  # GPU: decode (JPEG 2000, HTJ2K, JPEG, raw) and preprocess on the device, compiled network
  # (needs pip install 'epi-spineage[gpu]'; --decode auto picks it when installed on a CUDA host)
  python -m epi_spineage.score /data/pacs --model models/b4 --db spine.duckdb --decode gpu --compile

  # on a Ray cluster: one model replica per GPU, results ingested at the end (docs/guides/ray.md);
  # a replica with a GPU runs the GPU path above (--decode auto), one without the CPU reader
  python -m epi_spineage.score /data/pacs --model models/b4 --db spine.duckdb --engine ray --ray-address auto
  # what that would send (how each archive is read, how many work units), sending nothing
  python -m epi_spineage.score /data/pacs --model models/b4 --db spine.duckdb --engine ray --dry-run

  # GPU, 8 decode workers, bigger batches
  python -m epi_spineage.score /data/pacs --model models/b4 --db spine.duckdb \\
      --device cuda --workers 8 --batch-size 64

behaviour:
  Images already scored by the same model (same path and size, same SOPInstanceUID, or same
  pixels) are skipped, so reruns are cheap and resume after a crash. Every batch commits in one
  transaction. While another process has the database open the scorer retries for --lock-timeout
  seconds, then writes batches to the spool folder (default FILE.duckdb.spool), which the next run
  or `python -m epi_spineage.ingest` loads. A second scorer on the same database is refused.
  Patient ids are stored only as keyed hashes (EPI_SPINEAGE_PSEUDONYM_KEY, ..._KEY_FILE or
  --key-file; no key, no run); names are never stored. File paths are stored as keyed hashes
  too (h_...), because PACS folder and file names carry record numbers; --locate finds the file
  again, --store-paths keeps raw paths (flagged in the report). A database belongs to one key:
  another key is refused. Images declaring more than --max-megapixels (rows x columns x frames)
  are recorded as errors without being decoded. Exit 0 when the job ran, even if some
  files were bad (they are listed in the errors table); 1 when the job itself failed; 2 for
  usage errors.
"""


def build_parser():
    p = make_parser("epi-spineage score", "Score every new image of one or more archives into a DuckDB file.", EPILOG)
    p.add_argument("archives", nargs="+", metavar="ARCHIVE", help="folder, .zip, .tar, .tar.gz or .tgz")
    p.add_argument("--model", metavar="CKPT_DIR", help="model checkpoint folder (meta.json + weights); required")
    p.add_argument("--db", metavar="FILE.duckdb", help="DuckDB file (created if missing); required")
    p.add_argument(
        "--locate",
        metavar="HASH",
        default=None,
        help="print the member(s) of ARCHIVE... whose stored path hash is HASH, then exit (needs the key)",
    )
    p.add_argument(
        "--store-paths",
        action="store_true",
        help="store raw file paths instead of keyed hashes (they may hold identifiers; the report flags it)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=50.0,
        metavar="MP",
        help="refuse images declaring more rows x columns x frames than this, before decoding (default 50)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per model batch and per commit (default 16 on CPU, 64 on CUDA)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reader/decoder worker processes (default 1 on CPU, all cores but one up to 15 on CUDA; 0 = in-process)",
    )
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs (default auto)"
    )
    p.add_argument(
        "--decode",
        default="auto",
        choices=("auto", "cpu", "gpu"),
        help="where images are decoded and preprocessed: gpu needs CUDA and the 'gpu' extra "
        "(nvImageCodec); auto = gpu when both are there, else cpu (default auto)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slower start, faster batches)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many new files, then stop")
    p.add_argument("--dry-run", action="store_true", help="count what would be scored; write nothing")
    p.add_argument(
        "--include-non-spine",
        action="store_true",
        help="score images whose DICOM tags say they are not a lateral spine view",
    )
    p.add_argument("--key-file", default=None, help="file holding the pseudonymisation key")
    p.add_argument("--spool", default=None, metavar="DIR", help="spool folder (default FILE.duckdb.spool)")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long one commit waits for a busy database before spooling (default 60)",
    )
    p.add_argument(
        "--commit-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="gather results for at least this long per commit (default 1; a crash re-scores at most that much)",
    )
    p.add_argument(
        "--progress",
        action=__import__("argparse").BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: this machine (default); ray: a Ray cluster, one model replica per GPU "
        "(per CPU without GPUs), shards ingested at the end",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: 'auto' joins the running cluster, host:port a given one; none starts a local Ray",
    )
    p.add_argument(
        "--ray-replicas",
        type=int,
        default=None,
        metavar="N",
        help="with --engine ray: model replicas (default one per GPU of the cluster, else per CPU)",
    )
    p.add_argument(
        "--shard-dir",
        default=None,
        metavar="DIR",
        help="with --engine ray: where finished work units wait for ingest (default FILE.duckdb.ray-shards)",
    )
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from epi_spineage.cli.common import resolve_key
    from epi_spineage.score.pipeline import locate, score_archives

    key = resolve_key(args.key_file)  # once, here: refuse before touching anything without a key
    if args.locate is not None:
        found = locate(args.locate, args.archives, key=key)
        if not found:
            raise UserError(f"no member of the given archive(s) has path hash {args.locate} with this key")
        for name in found:
            print(name)
        return EXIT_OK
    if not args.model or not args.db:
        raise UserError("--model and --db are required (except with --locate)")
    # what both engines take; each adds its own (Ray's cluster and shards, the local workers and spool)
    common = dict(
        batch_size=args.batch_size,
        device=args.device,
        decode=args.decode,
        compile_model=args.compile,
        limit=args.limit,
        dry_run=args.dry_run,
        include_non_spine=args.include_non_spine,
        key=key,
        lock_timeout_s=args.lock_timeout,
        progress=args.progress,
        store_paths=args.store_paths,
        max_megapixels=args.max_megapixels,
    )
    if args.engine == "ray":
        from epi_spineage.score.ray_engine import score_archives_ray

        def run():
            return score_archives_ray(
                args.archives,
                args.model,
                args.db,
                ray_address=args.ray_address,
                replicas=args.ray_replicas,
                shard_dir=args.shard_dir,
                **common,
            )
    else:

        def run():
            return score_archives(
                args.archives,
                args.model,
                args.db,
                workers=args.workers,
                spool_dir=args.spool,
                commit_interval_s=args.commit_interval,
                **common,
            )

    try:
        summary = run()
    except UserError:
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the job itself failed: one clear line, traceback with -vv
        log.error("scoring failed: %s: %s", type(exc).__name__, exc, exc_info=args.verbose >= 2)
        return EXIT_FAILURE
    print(summary.line())
    if args.engine == "ray" and args.dry_run:
        from epi_spineage.score.ray_engine import ray_dry_run_lines

        print("\n".join(ray_dry_run_lines(summary)))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage score")
