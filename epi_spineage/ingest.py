"""``python -m epi_spineage.ingest``: forwards to the tool in ``epi_spineage.cli.ingest``.

Kept so that commands keep working.
"""

from __future__ import annotations

from epi_spineage.cli.ingest import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
