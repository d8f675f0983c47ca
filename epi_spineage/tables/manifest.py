"""Image manifests: reading (CSV, Parquet or a DuckDB table), participant-level splits and folds.

A manifest has one row per image: ``image`` (a path or ``ARCHIVE::MEMBER``), ``participant_id``,
``age_years``, ``modality`` and optionally ``split``. Relative image paths are taken relative to the
manifest's folder.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.schema import (
    ARCHIVE_MEMBER_SEPARATOR,
    MODALITIES,
    REQUIRED_MANIFEST_COLUMNS,
    SPLITS,
)

log = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def read_manifest(source: str | Path | pd.DataFrame, table: str | None = None) -> pd.DataFrame:
    """Read and check a manifest; image references are resolved against the manifest's folder."""
    if isinstance(source, pd.DataFrame):
        df, base = source.copy(), Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"manifest not found: {path}")
        base = path.resolve().parent
        suffix = path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                df = pd.read_parquet(path)
            elif suffix in (".duckdb", ".db"):
                df = _read_duckdb(path, table)
            else:
                df = pd.read_csv(path, dtype={"participant_id": str})
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise UserError(f"cannot read manifest {path}: {exc}") from None
    missing = [c for c in REQUIRED_MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"manifest lacks column(s) {', '.join(missing)}; needs {', '.join(REQUIRED_MANIFEST_COLUMNS)}")
    if df.empty:
        raise UserError("manifest has no rows")
    df["participant_id"] = df["participant_id"].astype(str)
    df["age_years"] = pd.to_numeric(df["age_years"], errors="coerce")
    if df["age_years"].isna().any():
        raise UserError(f"manifest: {int(df['age_years'].isna().sum())} row(s) without a numeric age_years")
    df["modality"] = df["modality"].fillna("radiograph").astype(str).str.lower()
    bad = sorted(set(df["modality"]) - set(MODALITIES))
    if bad:
        raise UserError(f"manifest: unknown modality value(s) {bad}; use {', '.join(MODALITIES)}")
    df["image"] = [resolve_reference(str(v), base) for v in df["image"]]
    return df.reset_index(drop=True)


def _read_duckdb(path: Path, table: str | None) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        if table is None:
            table = "manifest" if "manifest" in tables else (tables[0] if len(tables) == 1 else None)
        if table is None or table not in tables:
            raise UserError(f"{path}: choose a table with --table (has: {', '.join(tables) or 'none'})")
        from epi_spineage.db.schema import quote_ident

        return con.execute(f"SELECT * FROM {quote_ident(table)}").df()
    finally:
        con.close()


def resolve_reference(ref: str, base: Path) -> str:
    """Make a relative path (or the archive part of ``ARCHIVE::MEMBER``) relative to ``base``."""
    archive, sep, member = ref.partition(ARCHIVE_MEMBER_SEPARATOR)
    p = Path(archive)
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        archive = str(base / p)
    return archive + sep + member


def manifest_hash(df: pd.DataFrame) -> str:
    """SHA-256 of the manifest's training columns (image, participant, age, modality, split)."""
    cols = [c for c in ("image", "participant_id", "age_years", "modality", "split") if c in df.columns]
    text = df[cols].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def assign_splits(df: pd.DataFrame, seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS) -> pd.DataFrame:
    """Use the manifest's ``split`` when complete, else a seeded participant-level 60/20/20 split.

    No participant is ever in two splits (a manifest whose own split does that is refused).
    """
    df = df.copy()
    if "split" in df.columns and df["split"].notna().all() and (df["split"].astype(str) != "").all():
        df["split"] = df["split"].astype(str).str.lower()
        bad = sorted(set(df["split"]) - set(SPLITS))
        if bad:
            raise UserError(f"manifest: unknown split value(s) {bad}; use {', '.join(SPLITS)}")
        per = df.groupby("participant_id")["split"].nunique()
        if (per > 1).any():
            raise UserError(f"manifest: {int((per > 1).sum())} participant(s) appear in more than one split")
    else:
        ids = np.array(sorted(df["participant_id"].unique()))
        rng = np.random.default_rng(seed)
        rng.shuffle(ids)
        n = len(ids)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        label = {pid: "train" for pid in ids[:n_train]}
        label.update({pid: "val" for pid in ids[n_train : n_train + n_val]})
        label.update({pid: "test" for pid in ids[n_train + n_val :]})
        df["split"] = df["participant_id"].map(label)
    for s in ("train", "val"):
        if not (df["split"] == s).any():
            raise UserError(f"no {s!r} images after splitting ({len(df)} rows); the manifest is too small")
    return df


def participant_folds(participant_ids: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) per row, by participant (all images of a participant share a fold)."""
    ids = np.array(sorted(set(map(str, participant_ids))))
    rng = np.random.default_rng(seed + 7919)
    rng.shuffle(ids)
    fold_of = {pid: i % k for i, pid in enumerate(ids)}
    return np.array([fold_of[str(p)] for p in participant_ids], dtype=int)
