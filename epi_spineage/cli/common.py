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

from epi_spineage.errors import UserError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` whose usage errors exit 2 with one line; ``epilog`` keeps its layout."""
    parser = _Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return parser


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_main(func: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, prog: str = "epi-spineage") -> int:
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
