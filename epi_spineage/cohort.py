"""``python -m epi_spineage.cohort``: forwards to the tool in ``epi_spineage.cli.cohort``.

Loading a cohort into the database moved to ``epi_spineage.db.cohort``; its names are re-exported here so
that ``from epi_spineage.cohort import load_cohort`` keeps working.
"""

from __future__ import annotations

from epi_spineage.cli.cohort import main
from epi_spineage.db.cohort import identifier_columns, load_cohort, pseudonymise_ids

__all__ = ["identifier_columns", "load_cohort", "main", "pseudonymise_ids"]

if __name__ == "__main__":
    raise SystemExit(main())
