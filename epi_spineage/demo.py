"""``python -m epi_spineage.demo``: forwards to the tool in ``epi_spineage.cli.demo`` (``make demo``)."""

from __future__ import annotations

from epi_spineage.cli.demo import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
