"""Shared command-line plumbing: every tool has ``main(argv=None) -> int``.

User mistakes (``UserError``, a missing file) print one line on stderr and return 2, never a
traceback; ``EPI_SPINEAGE_DEBUG=1`` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Literal, overload

from epi_spineage.errors import UserError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        # --quiet holds for the whole run (every progress display reads it); set on every parse, so a
        # second main() in the same process (the tests) does not inherit the first one's setting
        from epi_spineage.progress import set_quiet

        set_quiet(bool(getattr(parsed, "quiet", False)))
        return parsed, extra


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose usage errors exit 2 with one line; ``epilog`` keeps its layout."""
    parser = _Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar (there is none either when stderr is not a terminal); with -v, "
        "one summary line per phase instead",
    )
    return parser


def add_key_argument(parser: argparse._ActionsContainer, help_extra: str = "") -> None:
    """The ``--key-file`` option of every tool that stores or joins participant identifiers."""
    parser.add_argument(
        "--key-file",
        default=None,
        metavar="FILE",
        help="file holding the pseudonymisation key (default: $EPI_SPINEAGE_PSEUDONYM_KEY, "
        "or the file named by $EPI_SPINEAGE_PSEUDONYM_KEY_FILE)" + help_extra,
    )


@overload
def resolve_key(key_file: str | os.PathLike | None = None, *, required: Literal[True] = True) -> bytes: ...


@overload
def resolve_key(key_file: str | os.PathLike | None = None, *, required: bool) -> bytes | None: ...


def resolve_key(key_file: str | os.PathLike | None = None, *, required: bool = True) -> bytes | None:
    """The pseudonymisation key, resolved once per tool run: ``--key-file``, then the environment.

    The only place in the package that reads ``EPI_SPINEAGE_PSEUDONYM_KEY`` and
    ``EPI_SPINEAGE_PSEUDONYM_KEY_FILE``; library functions get the key as ``key: bytes``.
    Without a key: ``UserError`` (exit 2 in a tool), or ``None`` when ``required`` is false.
    """
    from epi_spineage.privacy import NO_KEY_MESSAGE, check_key, read_key_file
    from epi_spineage.schema import PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV

    if key_file is not None:
        return read_key_file(key_file)
    if os.environ.get(PSEUDONYM_KEY_FILE_ENV):
        return read_key_file(os.environ[PSEUDONYM_KEY_FILE_ENV])
    if os.environ.get(PSEUDONYM_KEY_ENV):
        return check_key(os.environ[PSEUDONYM_KEY_ENV])
    if required:
        raise UserError(NO_KEY_MESSAGE)
    return None


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_main(
    func: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, prog: str = "epi-spineage"
) -> int:
    """Call ``func(argv)``; turn user errors into one line on stderr and exit code 2."""
    try:
        return int(func(argv) or 0)
    except UserError as exc:
        if os.environ.get("EPI_SPINEAGE_DEBUG"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("EPI_SPINEAGE_DEBUG"):
            raise
        name = getattr(exc, "filename", None) or ""
        print(f"{prog}: error: {exc.strerror or exc}: {name}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
