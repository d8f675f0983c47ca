"""The code that owns the DuckDB database: schema and migrations, loading, locking, read-only opens.

The SQL itself lives in the top-level ``sql/`` folder (one view per file, shipped inside the package),
where users look for it; this package applies it. It is the one place in Python that writes SQL.

- ``schema``: ``apply_schema`` (tables, migrations, views), ``read_sql``, the zero-row SQL tests
- ``migrations``: the ``schema_version`` table and forward migrations
- ``store``: the scorer's result batches, models and runs, and what is already done
- ``results``: the flat result-row layout the scorer, the spool and Ray shards share
- ``locking``: one writer at a time, retries while the file is busy
- ``cohort``: loading a pseudonymised cohort table
- ``readonly``: the report's read-only attach with the views built over it
- ``bias``: per-manufacturer bias corrections fitted on a named calibration set, stored with the model

Importing this package loads nothing heavy; import the submodules you need.
"""

from __future__ import annotations
