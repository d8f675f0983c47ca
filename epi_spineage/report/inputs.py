"""What the report reads: the synthetic demo, a cohort file, or a scored DuckDB database.

Every problem with the input is a ``UserError`` (one line, exit 2): a missing file, an unknown
format, a table that fails validation, no cohort with the configured role names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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


#: columns the report reads besides the cohort schema's and the ones the study config names
EXTRA_ANALYSIS_COLUMNS = ("frax_source", "manufacturer")
#: text columns with a few distinct values, held as pandas categories (1 byte a row instead of 8)
CATEGORY_COLUMNS = ("cohort", "split", "modality", "frax_source", "manufacturer", "sex")


def analysis_columns(available: list[str], config: StudyConfig | None = None) -> list[str]:
    """The columns of ``available`` the report reads, in their order: the cohort schema's, the
    config's table 1 variables, regression and model covariates, and ``EXTRA_ANALYSIS_COLUMNS``.

    A registry extract often has hundreds of columns; only these are read into memory.
    """
    from epi_spineage.schema import COLUMNS_BY_NAME

    wanted = set(COLUMNS_BY_NAME) | set(EXTRA_ANALYSIS_COLUMNS)
    if config is not None:
        wanted |= set(config.table1_variables) | set(config.regression_covariates)
        for models in (config.fracture_models, config.mortality_models):
            for covs in models.values():
                wanted |= set(covs)
    return [c for c in available if c in wanted]


def compact_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """The same values in smaller dtypes, in place: complete 0/1 columns as int8, the few-valued text
    columns (``CATEGORY_COLUMNS``) as categories. Numbers with decimals stay float64 (the statistics
    match R to that precision) and a 0/1 column with missing values keeps its dtype. O(n k)."""
    from epi_spineage.tables.cohort import BINARY_COLUMNS

    for col in BINARY_COLUMNS:
        if col not in df.columns:
            continue
        s = df[col]
        if s.dtype == "int8" or not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            continue
        if s.isna().any():
            continue
        v = s.to_numpy()
        if np.isin(v, (0, 1)).all():  # anything else stays as it is, for validation to report
            df[col] = v.astype(np.int8)
    for col in CATEGORY_COLUMNS:
        if col in df.columns and (df[col].dtype == object or pd.api.types.is_string_dtype(df[col])):
            df[col] = df[col].astype("category")
    return df


def _id_text(ids: pd.Series) -> pd.Series:
    """Participant ids as text (as ``tables.read_table``), vectorised for text and integer ids."""
    from epi_spineage.tables.cohort import _code_text

    if pd.api.types.is_integer_dtype(ids) and not ids.isna().any():
        return ids.astype(str).astype(object)
    if ids.dtype == object and ids.map(type).eq(str).all():
        return ids.str.strip()
    return ids.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else _code_text(v))


def _read_projected(path: Path, table: str | None, config: StudyConfig | None) -> pd.DataFrame:
    """Only the analysis columns (``analysis_columns``) of a Parquet, DuckDB or CSV file, compact dtypes.

    Parquet: pyarrow reads just those columns, text as dictionaries (pandas categories); DuckDB: one
    ``SELECT`` of those columns; CSV: pandas ``usecols``. Memory is O(n k) for the k analysis columns.
    """
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
        keep = analysis_columns(names, config)
        dict_cols = [c for c in CATEGORY_COLUMNS if c in keep]
        tbl = pq.read_table(path, columns=keep, read_dictionary=dict_cols)
        df = tbl.to_pandas(self_destruct=True, split_blocks=True)
        del tbl
        # Arrow's allocator keeps the pages of the freed Parquet buffers for reuse (~0.3 GB at 1,000,000
        # rows, resident for the whole report otherwise); the report allocates nothing more through Arrow
        pa.default_memory_pool().release_unused()
    elif name.endswith((".duckdb", ".db", ".ddb")):
        import duckdb

        from epi_spineage.db.schema import quote_ident, require_table

        tname = table or "cohort"
        with duckdb.connect(str(path), read_only=True) as con:
            quoted = require_table(con, path, tname)
            cols = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                    [tname],
                ).fetchall()
            ]
            keep = analysis_columns(cols, config)
            select = ", ".join(quote_ident(c) for c in keep)
            df = con.execute(f"SELECT {select} FROM {quoted}").df()
    elif name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        sep = "\t" if ".tsv" in name else ","
        header = list(pd.read_csv(path, sep=sep, nrows=0).columns)
        keep = analysis_columns(header, config)
        df = pd.read_csv(path, sep=sep, usecols=keep, dtype={"participant_id": str})[keep]
    else:
        raise UserError(f"{path}: unsupported file type; use .csv, .tsv, .parquet or .duckdb")
    if "participant_id" in df.columns:
        df["participant_id"] = _id_text(df["participant_id"])
    return compact_dtypes(df)


def read_cohort_file(ref: str, mapping: str | None, config: StudyConfig | None = None) -> pd.DataFrame:
    """A cohort file as the report analyses it. Without a mapping only the analysis columns are read,
    in compact dtypes (``_read_projected``); with one, the whole table is read and mapped (the mapping
    may rename any column), then cut to the analysis columns."""
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
        if m is None:
            return _read_projected(path, table, config)
        df = read_table(path, mapping=m, table=table)
        return compact_dtypes(df[analysis_columns(list(df.columns), config)])
    except UserError:
        raise
    except Exception as exc:  # a corrupt/unparsable file is the user's input, not our bug
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}: could not read the table ({type(exc).__name__}: {first})") from None


def _rows_named(cohort: pd.Series, name: str) -> np.ndarray:
    """``cohort.astype(str) == name`` as a mask; for a categorical column by its codes, without a text value
    per row (0.2 GB at 1,000,000 rows)."""
    if isinstance(cohort.dtype, pd.CategoricalDtype):
        codes = cohort.cat.codes.to_numpy()
        hit = np.flatnonzero(cohort.cat.categories.astype(str) == name)
        mask = np.isin(codes, hit)
        if name == "nan":  # astype(str) spells a missing value "nan"
            mask |= codes == -1
        return mask
    return (cohort.astype(str) == name).to_numpy()


def split_roles(df: pd.DataFrame, config: StudyConfig) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The rows of each role, by the ``cohort`` column and the config's role names.

    A role that holds every row is the table itself, not a copy (a registry extract is often one cohort).
    """
    values = sorted(df["cohort"].dropna().astype(str).unique())
    is_der, is_ext = _rows_named(df["cohort"], config.derivation), _rows_named(df["cohort"], config.external)

    def rows(mask: np.ndarray) -> pd.DataFrame:
        if mask.all():
            return df if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 else df.reset_index(drop=True)
        return df[mask].reset_index(drop=True)

    der, ext = rows(is_der), rows(is_ext)
    if der.empty and ext.empty:
        raise UserError(
            f"no rows with cohort {config.derivation!r} or {config.external!r} (found: "
            f"{', '.join(values[:8]) or 'none'}); set [cohorts] derivation/external in --config"
        )
    others = [v for v in values if v not in (config.derivation, config.external)]
    if others:
        log.warning("cohort value(s) not analysed: %s", ", ".join(others))
    return (der if len(der) else None, ext if len(ext) else None)


def open_db(path: str):
    """The database read-only, with the package's views built over it (``epi_spineage.db.readonly``)."""
    from epi_spineage.db.readonly import open_readonly

    return open_readonly(path)


#: the column of v_cohort_scores that gives spine_age_corrected_years, by ``[bias] correction``
CORRECTED_COLUMN = {
    "pooled": "spine_age_corrected_years",
    "per_manufacturer": "spine_age_corrected_by_manufacturer_years",
}


def read_db_cohort(con, config: StudyConfig | None = None) -> pd.DataFrame:
    """The cohort table with spine ages taken from the scores (through ``v_cohort_scores``) where scored.

    Only the analysis columns (``analysis_columns``) are selected, in compact dtypes; O(n k).
    ``config.bias_correction`` chooses which correction gives ``spine_age_corrected_years``
    (``CORRECTED_COLUMN``).
    """
    n = con.execute("SELECT count(*) FROM cohort").fetchone()[0]
    if not n:
        raise UserError("the database's cohort table is empty: load it with `epi-spineage cohort load`")
    corrected = CORRECTED_COLUMN[config.bias_correction if config is not None else "pooled"]
    names = [d[0] for d in con.execute("SELECT * FROM cohort LIMIT 0").description]
    keep = [c for c in analysis_columns(names, config) if c not in ("spine_age_years", "spine_age_corrected_years")]
    select = "".join(f'c."{c}", ' for c in (q.replace('"', '""') for q in keep))
    df = con.execute(f"""
        SELECT {select}
               coalesce(s.spine_age_years, c.spine_age_years) AS spine_age_years,
               CASE WHEN s.spine_age_years IS NOT NULL THEN s.{corrected}
                    ELSE c.spine_age_corrected_years END AS spine_age_corrected_years
        FROM cohort AS c
        LEFT JOIN v_cohort_scores AS s USING (participant_id)
    """).df()
    return compact_dtypes(df)


def check_bias_selection(con, config: StudyConfig) -> list[str]:
    """Refuse a per-manufacturer selection the database cannot honour; returns lines for the report.

    With ``[bias] correction = "per_manufacturer"`` the database must hold lines fitted on the configured
    calibration set for every model that scored the cohort, and no analysed participant (the derivation
    role's split, the whole external role) may be in that calibration set (as ``BiasCorrection.apply``
    refuses its fitting rows). Returns one line per manufacturer that falls back to the pooled correction.
    """
    if config.bias_correction != "per_manufacturer":
        return []
    stored = con.execute("""
        SELECT model_id, min(calibration_set), max(calibration_set) FROM bias_corrections GROUP BY model_id
    """).fetchall()
    sets = {m: (lo, hi) for m, lo, hi in stored}
    models = [r[0] for r in con.execute("SELECT DISTINCT model_id FROM v_cohort_scores ORDER BY 1").fetchall()]
    want = config.bias_calibration_set
    fix = f"fit them with `python -m epi_spineage.cohort bias-fit --db FILE --calibration-set {want}`"
    for m in models:
        if m not in sets:
            raise UserError(f'[bias] correction = "per_manufacturer": model {m} has no per-manufacturer lines; {fix}')
        if sets[m] != (want, want):
            raise UserError(
                f"[bias] calibration_set = {want!r}, but model {m}'s per-manufacturer lines were fitted on "
                f"{sets[m][0]!r}; {fix}, or name that set in the config"
            )
    overlap = con.execute(
        """
        SELECT count(*) FROM v_cohort_scores
        WHERE in_calibration AND ((cohort = ? AND (? = '' OR split = ?)) OR cohort = ?)""",
        [config.derivation, config.derivation_split, config.derivation_split, config.external],
    ).fetchall()[0][0]
    if overlap:
        raise UserError(
            f"refusing the per-manufacturer bias correction: {overlap} analysed participant(s) are in its "
            f"calibration set {want!r} (leakage); fit it on participants the report does not analyse"
        )
    lines = []
    for model_id, manufacturer, note in con.execute(
        "SELECT model_id, manufacturer, note FROM bias_corrections WHERE scope = 'pooled' ORDER BY 1, 2"
    ).fetchall():
        lines.append(f"per-manufacturer bias correction, model {model_id}, {note or manufacturer + ': pooled'}")
    absent = con.execute("""
        SELECT DISTINCT s.model_id, coalesce(s.manufacturer, '(missing)') FROM v_cohort_scores AS s
        WHERE NOT EXISTS (SELECT 1 FROM bias_corrections AS b WHERE b.model_id = s.model_id
                          AND b.manufacturer = coalesce(s.manufacturer, '(missing)'))
        ORDER BY 1, 2""").fetchall()
    for model_id, manufacturer in absent:
        lines.append(
            f"per-manufacturer bias correction, model {model_id}, {manufacturer}: not in the calibration set; "
            "the pooled correction is used"
        )
    return lines


def _keyed_ids(df: pd.DataFrame, key: bytes | None) -> pd.Series:
    """The file's participant ids as the database's keyed hashes (pseudonyms are used as they are)."""
    from epi_spineage.privacy import PSEUDONYM_PATTERN, pseudonymise, require_key

    raw = df["participant_id"].astype(str)
    pseudonyms = raw.str.fullmatch(PSEUDONYM_PATTERN)
    if not pseudonyms.all():
        key = require_key(key)
        raw = raw.where(pseudonyms, raw.map(lambda v: pseudonymise(v, key)))
    return raw


def _merge_db_scores(df: pd.DataFrame, scores: pd.DataFrame, key: bytes | None) -> tuple[pd.DataFrame, int]:
    """Spine ages from the database where it scored the participant; the file's elsewhere.

    The database holds keyed hashes of participant ids, so the file's ids are hashed with the same key
    (ids that are already pseudonyms, e.g. a table exported from the database, are used as they are).
    """
    keyed = _keyed_ids(df, key)
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
    if config.bias_correction == "per_manufacturer" and db is None:
        raise UserError(
            '[bias] correction = "per_manufacturer" needs --db: the per-manufacturer lines are stored in the '
            "database with the model"
        )
    corrected = CORRECTED_COLUMN[config.bias_correction]
    cohorts = [cohort] if isinstance(cohort, str) else list(cohort or [])
    if cohorts:
        frames = [read_cohort_file(c, mapping, config) for c in cohorts]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        source = " + ".join(Path(_split_table_ref(c)[0]).name for c in cohorts)
        if db is not None:
            con = open_db(db)
            try:
                bias_lines = check_bias_selection(con, config)
                scores = con.execute(
                    f"SELECT participant_id, spine_age_years, {corrected} AS spine_age_corrected_years "
                    "FROM v_cohort_scores"
                ).df()
                calibration = _calibration_ids(con) if config.bias_correction == "per_manufacturer" else set()
            finally:
                con.close()
            _refuse_file_overlap(df, calibration, config, key)
            warn.extend(bias_lines)
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
            warn.extend(check_bias_selection(con, config))
            df = read_db_cohort(con, config)
            db_marks = db_synthetic_marks(con)
        finally:
            con.close()
        source = Path(db).name
    problems = validate_cohort(df, raise_on_error=True)
    warn.extend(problems)
    der, ext = split_roles(df, config)
    del df
    truth = _simulator_truth(cohorts[0]) if cohorts else None
    synthetic = truth is not None
    if truth is not None:
        source += " (written by the simulator: truth.json beside it)"
    elif not cohorts and db_marks:
        synthetic = True
        source += " (synthetic: " + "; ".join(db_marks) + ")"
    return Inputs(der, ext, truth, synthetic, source, warn)


def _calibration_ids(con) -> set[str]:
    rows = con.execute("SELECT DISTINCT unnest(fit_ids) FROM bias_corrections").fetchall()
    return {r[0] for r in rows}


def _refuse_file_overlap(df: pd.DataFrame, calibration: set[str], config: StudyConfig, key: bytes | None) -> None:
    """A cohort file analysed with per-manufacturer lines: none of its analysed rows may be a calibration one."""
    if not calibration:
        return
    role = df["cohort"].astype(str)
    split = df["split"].astype(str) if "split" in df.columns else pd.Series("", index=df.index)
    analysed = (role == config.external) | (
        (role == config.derivation) & ((config.derivation_split == "") | (split == config.derivation_split))
    )
    overlap = int(_keyed_ids(df[analysed], key).isin(calibration).sum())
    if overlap:
        raise UserError(
            f"refusing the per-manufacturer bias correction: {overlap} analysed participant(s) are in its "
            f"calibration set {config.bias_calibration_set!r} (leakage); fit it on participants the report "
            "does not analyse"
        )


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
