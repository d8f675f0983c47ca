"""Cohort tables and image manifests: read, map columns, validate, derive the analysis variables.

- ``cohort``: reading a cohort table (CSV, Parquet, DuckDB), the TOML column mapping, validation
  against the schema (``epi_spineage.schema``) and the derived variables (PAD, osteoporosis, scalings)
- ``manifest``: reading an image manifest, participant-level splits and folds

Torch-free.
"""

from __future__ import annotations

from epi_spineage.tables.cohort import (
    ColumnMapping,
    apply_mapping,
    derive_variables,
    load_mapping,
    read_table,
    validate_cohort,
)
from epi_spineage.tables.manifest import (
    assign_splits,
    manifest_hash,
    participant_folds,
    read_manifest,
    resolve_reference,
)

__all__ = [
    "ColumnMapping",
    "apply_mapping",
    "assign_splits",
    "derive_variables",
    "load_mapping",
    "manifest_hash",
    "participant_folds",
    "read_manifest",
    "read_table",
    "resolve_reference",
    "validate_cohort",
]
