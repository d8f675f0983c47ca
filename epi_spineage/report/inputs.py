"""What the report reads: the synthetic demo, a cohort file, or a scored DuckDB database.

Every problem with the input is a ``UserError`` (one line, exit 2): a missing file, an unknown
format, a table that fails validation, no cohort with the configured role names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.report.config import StudyConfig

log = logging.getLogger(__name__)

_DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")


@dataclass
class Inputs:
    derivation: pd.DataFrame | None
    external: pd.DataFrame | None
    truth: dict[str, Any] | None
    synthetic: bool
    source: str
    warnings: list[str] = field(default_factory=list)


def _split_table_ref(ref: str) -> tuple[Path, str | None]:
    """``FILE.duckdb::TABLE`` -> (FILE.duckdb, TABLE); other paths have no table."""
    if "::" in ref:
        path, table = ref.rsplit("::", 1)
        return Path(path), table or None
    return Path(ref), None


def read_cohort_file(ref: str, mapping: str | None) -> pd.DataFrame:
    from epi_spineage.tables import load_mapping, read_table

    path, table = _split_table_ref(ref)
    if not path.exists():
        raise UserError(f"cohort file not found: {path}")
    if path.is_dir():
        raise UserError(f"--cohort {path} is a folder; give a CSV, Parquet or DuckDB file")
    m = None
    if mapping is not None:
        if not Path(mapping).is_file():
            raise UserError(f"mapping file not found: {mapping}")
        m = load_mapping(mapping)
    try:
        return read_table(path, mapping=m, table=table)
    except UserError:
        raise
    except Exception as exc:  # a corrupt/unparsable file is the user's input, not our bug
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}: could not read the table ({type(exc).__name__}: {first})") from None


def split_roles(df: pd.DataFrame, config: StudyConfig) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The rows of each role, by the ``cohort`` column and the config's role names."""
    values = sorted(df["cohort"].dropna().astype(str).unique())
    der = df[df["cohort"].astype(str) == config.derivation]
    ext = df[df["cohort"].astype(str) == config.external]
    if der.empty and ext.empty:
        raise UserError(
            f"no rows with cohort {config.derivation!r} or {config.external!r} (found: "
            f"{', '.join(values[:8]) or 'none'}); set [cohorts] derivation/external in --config"
        )
    others = [v for v in values if v not in (config.derivation, config.external)]
    if others:
        log.warning("cohort value(s) not analysed: %s", ", ".join(others))
    return (der.reset_index(drop=True) if len(der) else None, ext.reset_index(drop=True) if len(ext) else None)


def open_db(path: str):
    """The database read-only, with the package's views built over it (``epi_spineage.db.readonly``)."""
    from epi_spineage.db.readonly import open_readonly

    return open_readonly(path)


def read_db_cohort(con) -> pd.DataFrame:
    """The cohort table with spine ages taken from the scores (through ``v_cohort_scores``) where scored."""
    n = con.execute("SELECT count(*) FROM cohort").fetchone()[0]
    if not n:
        raise UserError("the database's cohort table is empty: load it with `epi-spineage cohort load`")
    df = con.execute("""
        SELECT c.* EXCLUDE (spine_age_years, spine_age_corrected_years),
               coalesce(s.spine_age_years, c.spine_age_years) AS spine_age_years,
               CASE WHEN s.spine_age_years IS NOT NULL THEN s.spine_age_corrected_years
                    ELSE c.spine_age_corrected_years END AS spine_age_corrected_years
        FROM cohort AS c
        LEFT JOIN v_cohort_scores AS s USING (participant_id)
    """).df()
    return df


def _merge_db_scores(df: pd.DataFrame, scores: pd.DataFrame, key: bytes | None) -> tuple[pd.DataFrame, int]:
    """Spine ages from the database where it scored the participant; the file's elsewhere.

    The database holds keyed hashes of participant ids, so the file's ids are hashed with the same key
    (ids that are already pseudonyms, e.g. a table exported from the database, are used as they are).
    """
    from epi_spineage.privacy import PSEUDONYM_PATTERN, pseudonymise, require_key

    raw = df["participant_id"].astype(str)
    pseudonyms = raw.str.fullmatch(PSEUDONYM_PATTERN)
    if not pseudonyms.all():
        key = require_key(key)
        raw = raw.where(pseudonyms, raw.map(lambda v: pseudonymise(v, key)))
    keyed = raw
    db = scores.drop_duplicates("participant_id").rename(
        columns={"participant_id": "_key", "spine_age_years": "_db_spine", "spine_age_corrected_years": "_db_corrected"}
    )
    merged = df.assign(_key=keyed.to_numpy()).merge(db, on="_key", how="left")
    hit = merged["_db_spine"].notna()
    for column, from_db in (("spine_age_years", "_db_spine"), ("spine_age_corrected_years", "_db_corrected")):
        file_values = merged[column] if column in merged else pd.Series(float("nan"), index=merged.index)
        # where the database scored the participant, both columns come from it (as in read_db_cohort)
        merged[column] = merged[from_db].where(hit, file_values)
    return merged.drop(columns=["_key", "_db_spine", "_db_corrected"]), int(hit.sum())


def load_inputs(
    *,
    cohort: str | list[str] | None,
    mapping: str | None,
    db: str | None,
    config: StudyConfig,
    seed: int,
    n_derivation: int,
    n_external: int,
    key: bytes | None = None,
) -> Inputs:
    from epi_spineage.tables import validate_cohort

    if not cohort and db is None:
        from epi_spineage.report import demo_study

        der, ext, truth = demo_study(seed, n_derivation, n_external)
        return Inputs(
            der, ext, truth, True, f"the built-in simulator (seed {seed}, n = {n_derivation:,} + {n_external:,})"
        )
    warn: list[str] = []
    cohorts = [cohort] if isinstance(cohort, str) else list(cohort or [])
    if cohorts:
        frames = [read_cohort_file(c, mapping) for c in cohorts]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        source = " + ".join(Path(_split_table_ref(c)[0]).name for c in cohorts)
        if db is not None:
            con = open_db(db)
            try:
                scores = con.execute(
                    "SELECT participant_id, spine_age_years, spine_age_corrected_years FROM v_cohort_scores"
                ).df()
            finally:
                con.close()
            if len(scores):
                df, n_hit = _merge_db_scores(df, scores, key)
                warn.append(
                    f"{n_hit:,} of {len(df):,} participants take their spine age from {Path(db).name}; "
                    "the others keep the cohort file's"
                )
            source += f" + scores from {Path(db).name}"
    else:
        assert db is not None  # no cohort file and no db took the demo return above
        con = open_db(db)
        try:
            df = read_db_cohort(con)
            db_marks = db_synthetic_marks(con)
        finally:
            con.close()
        source = Path(db).name
    problems = validate_cohort(df, raise_on_error=True)
    warn.extend(problems)
    der, ext = split_roles(df, config)
    truth = _simulator_truth(cohorts[0]) if cohorts else None
    synthetic = truth is not None
    if truth is not None:
        source += " (written by the simulator: truth.json beside it)"
    elif not cohorts and db_marks:
        synthetic = True
        source += " (synthetic: " + "; ".join(db_marks) + ")"
    return Inputs(der, ext, truth, synthetic, source, warn)


def _simulator_truth(cohort: str | None) -> dict | None:
    """The simulator writes ``truth.json`` beside its tables; a cohort from it is labelled synthetic."""
    from epi_spineage.provenance import simulator_truth

    return simulator_truth(_split_table_ref(cohort)[0]) if cohort is not None else None


def db_synthetic_marks(con) -> list[str]:
    """Why a scored database holds synthetic data: its cohort was loaded from the simulator's output
    (table comment), or its images are phantoms (DICOM Manufacturer). Empty when neither."""
    from epi_spineage.provenance import (
        SYNTHETIC_MANUFACTURER_MARK,
        SYNTHETIC_TABLE_COMMENT,
    )

    marks = []
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = 'src' AND table_name = 'cohort'"
    ).fetchall()
    if comment and comment[0][0] == SYNTHETIC_TABLE_COMMENT:
        marks.append("its cohort table was loaded from the simulator's output")
    n = con.execute(
        "SELECT count(*) FROM images WHERE upper(manufacturer) LIKE ?", [f"%{SYNTHETIC_MANUFACTURER_MARK}%"]
    ).fetchone()[0]
    if n:
        marks.append(f"{n:,} of its images are synthetic phantoms")
    return marks


def load_gallery(model: str | None, images: str | None, n: int = 8):
    """Grad-CAM gallery items, or a one-line reason why there is none (torch missing, no model)."""
    from epi_spineage.report.gallery import build_gallery

    return build_gallery(model, images, n=n)
