"""The command-line tools, one module per tool (``epi_spineage.cli.<tool>``), and their shared plumbing.

Every tool has ``main(argv=None) -> int``; ``python -m epi_spineage.<tool>`` and the ``epi-spineage``
dispatcher both end here. Library code never parses arguments or reads the environment: a tool's
``main`` resolves settings (the pseudonymisation key included) once and passes them down.
"""

from __future__ import annotations

from epi_spineage.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    make_parser,
    run_main,
    setup_logging,
)

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "make_parser", "run_main", "setup_logging"]
