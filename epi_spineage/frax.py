"""``python -m epi_spineage.frax``: forwards to the tool in ``epi_spineage.cli.frax``.

The FRAX file functions moved to ``epi_spineage.tables.frax`` and are re-exported here so that
``from epi_spineage.frax import export_frax_input`` keeps working.
"""

from __future__ import annotations

from epi_spineage.cli.frax import main
from epi_spineage.tables.frax import (
    FRAX_MAX_AGE,
    FRAX_MIN_AGE,
    export_frax_input,
    import_frax_results,
    rows_path,
)

__all__ = ["FRAX_MAX_AGE", "FRAX_MIN_AGE", "export_frax_input", "import_frax_results", "main", "rows_path"]

if __name__ == "__main__":
    raise SystemExit(main())
