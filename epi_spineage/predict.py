"""``python -m epi_spineage.predict``: forwards to the tool in ``epi_spineage.cli.predict``.

Kept so that commands keep working.
"""

from __future__ import annotations

from epi_spineage.cli.predict import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
