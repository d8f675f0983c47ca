"""``python -m epi_spineage.train``: forwards to the tool in ``epi_spineage.cli.train``.

Kept so that commands keep working.
"""

from __future__ import annotations

from epi_spineage.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
