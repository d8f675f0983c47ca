"""Cohort input: read a table, map the user's names and codes, validate, derive analysis variables.

The cohort schema itself lives in ``epi_spineage.schema`` (``COHORT_COLUMNS``); this module only
uses it. Nothing here drops a row: validation reports problems (one line each) and the analyses
report how many rows each model leaves out for missing data.

Column-mapping config (TOML; see ``examples/column_mapping.toml``)::

    [columns]                 # your column name = schema column name
    PATIENT_NO = "participant_id"
    AGE = "age_years"
    GENDER = "sex"

    [values.sex]              # per schema column: your code = schema code
    "1" = "M"
    "2" = "F"

    [binary_values]           # codes used by every 0/1 column without its own [values.*] table
    Y = 1
    N = 0

    [constants]               # columns your table lacks, one value for every row
    cohort = "external"

    [scale]                   # multiply a (schema-named) column, e.g. height in metres -> cm
    height_cm = 100

Codes are matched as text after trimming spaces, and a whole-number value matches its integer text
(``1``, ``1.0`` and ``"1"`` all match the key ``"1"``). Values that match no code are kept as they are,
so that validation names them instead of losing them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib

from epi_spineage.errors import UserError, ValidationError
from epi_spineage.schema import (
    BINARY_COLUMNS,
    COHORT_COLUMNS,
    COLUMNS_BY_NAME,
    OUTCOMES,
    PAD_COLUMN,
    REQUIRED_COHORT_COLUMNS,
    TSCORE_COLUMNS,
)

__all__ = [
    "ColumnMapping",
    "load_mapping",
    "apply_mapping",
    "read_table",
    "validate_cohort",
    "derive_variables",
    "DERIVED_COLUMNS",
]

log = logging.getLogger(__name__)

#: Columns ``derive_variables`` adds (name -> meaning); documented in the README.
DERIVED_COLUMNS = {
    PAD_COLUMN: "the analysed PAD: spine age - chronological age (corrected spine age where chosen), years",
    "pad_raw_years": "uncorrected PAD: spine_age_years - age_years",
    "pad_corrected_years": "corrected PAD: spine_age_corrected_years - age_years (NaN where none)",
    "pad_corrected": "True where pad_years uses spine_age_corrected_years",
    "pad_z": "PAD standardised within the cohort (per 1 SD, sample SD)",
    "bmi": "weight_kg / (height_cm/100)^2 where bmi is missing",
    "osteoporosis": "1 if the lowest available T-score <= -2.5, 0 if not, NA if none measured",
    "height_dec5_cm": "-height_cm / 5: per 5 cm height decrement",
    "fn_tscore_dec": "-z of the femoral-neck T-score: per SD decrement",
    "albumin_dec": "-z of albumin: per SD decrement",
    "hemoglobin_dec": "-z of haemoglobin: per SD decrement",
    "creatinine_inc": "+z of creatinine: per SD increment",
}

_MAX_ROWS_LISTED = 5


# ----------------------------------------------------------------------------- mapping
@dataclass(frozen=True)
class ColumnMapping:
    """A parsed column-mapping config. ``columns`` maps the user's names to schema names;
    ``values`` maps a schema column to {user code text: schema value}; ``binary_values`` applies to
    every 0/1 column without its own table; ``constants`` fills absent columns; ``scale`` multiplies."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, object]] = field(default_factory=dict)
    binary_values: dict[str, object] = field(default_factory=dict)
    constants: dict[str, object] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> ColumnMapping:
        where = source or "mapping"
        known = {"columns", "values", "binary_values", "constants", "scale"}
        extra = set(d) - known
        if extra:
            raise UserError(f"{where}: unknown section(s) {sorted(extra)}; expected {sorted(known)}")

        def table(name):
            t = d.get(name, {})
            if not isinstance(t, dict):
                raise UserError(f"{where}: [{name}] must be a table")
            return t

        columns = {str(k): str(v) for k, v in table("columns").items()}
        targets = list(columns.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise UserError(f"{where}: several columns map to {dup}")
        values = {}
        for col, codes in table("values").items():
            if not isinstance(codes, dict):
                raise UserError(f"{where}: [values.{col}] must be a table of code = value")
            values[str(col)] = {str(k).strip(): v for k, v in codes.items()}
        binary = {str(k).strip(): v for k, v in table("binary_values").items()}
        bad = {k: v for k, v in binary.items() if v not in (0, 1)}
        if bad:
            raise UserError(f"{where}: [binary_values] must map codes to 0 or 1, got {bad}")
        scale = {}
        for k, v in table("scale").items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise UserError(f"{where}: [scale] {k} must be a number")
            scale[str(k)] = float(v)
        unknown = sorted({*columns.values(), *values, *scale} - set(COLUMNS_BY_NAME))
        if unknown:
            log.info("%s: columns outside the cohort schema kept as extra columns: %s", where, unknown)
        return cls(columns, values, binary, dict(table("constants")), scale, source)


def load_mapping(path) -> ColumnMapping:
    """Read a TOML column-mapping config (format in this module's docstring)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: not valid TOML ({exc})") from None
    return ColumnMapping.from_dict(data, source=str(p))


def _code_text(v) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v).strip()


def _recode(s: pd.Series, codes: dict[str, object]) -> pd.Series:
    text = s.map(_code_text)
    hit = text.isin(list(codes))
    if not hit.any():
        return s
    out = s.astype(object).copy()
    out[hit] = text[hit].map(codes)
    out[s.isna()] = np.nan
    # back to numbers when every value now is one (e.g. 'Y'/'N' -> 1/0)
    num = pd.to_numeric(out, errors="coerce")
    if num.notna().sum() == out.notna().sum():
        return num
    return out


def apply_mapping(df: pd.DataFrame, mapping: ColumnMapping | dict | None) -> pd.DataFrame:
    """Rename, recode, fill constants and scale, returning a new DataFrame (no row is dropped)."""
    if mapping is None:
        return df.copy()
    if isinstance(mapping, dict):
        mapping = ColumnMapping.from_dict(mapping)
    absent = [c for c in mapping.columns if c not in df.columns]
    if absent:
        warnings.warn(f"mapping names column(s) not in the table: {absent}", stacklevel=2)
    clash = [t for u, t in mapping.columns.items() if u in df.columns and t in df.columns and t != u]
    if clash:
        raise UserError(f"mapping renames onto column(s) that already exist: {clash}")
    out = df.rename(columns=mapping.columns)
    for col, codes in mapping.values.items():
        if col in out.columns:
            out[col] = _recode(out[col], codes)
    if mapping.binary_values:
        for col in BINARY_COLUMNS:
            if col in out.columns and col not in mapping.values:
                out[col] = _recode(out[col], mapping.binary_values)
    for col, value in mapping.constants.items():
        if col in out.columns:
            raise UserError(f"mapping: [constants] {col} but the table already has that column")
        out[col] = value
    for col, factor in mapping.scale.items():
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce") * factor
    return out


# ----------------------------------------------------------------------------- reading
def read_table(path_or_df, *, mapping=None, table: str | None = None) -> pd.DataFrame:
    """Read a cohort table from CSV/TSV, Parquet or a DuckDB file (``table``, default ``cohort``),
    or take a pandas/polars DataFrame; then apply ``mapping`` (a ``ColumnMapping``, dict, or TOML path).

    ``participant_id`` is always read as text (ids keep their leading zeros).
    """
    if mapping is not None and not isinstance(mapping, (ColumnMapping, dict)):
        mapping = load_mapping(mapping)
    m = mapping if isinstance(mapping, ColumnMapping) else ColumnMapping.from_dict(mapping or {})
    id_names = {"participant_id"} | {u for u, t in m.columns.items() if t == "participant_id"}
    if isinstance(path_or_df, pd.DataFrame):
        df = path_or_df.copy()
    elif hasattr(path_or_df, "to_pandas"):
        df = path_or_df.to_pandas()
    else:
        df = _read_file(Path(path_or_df), table, id_names)
    out = apply_mapping(df, m)
    if "participant_id" in out.columns:
        out["participant_id"] = out["participant_id"].map(
            lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else _code_text(v)
        )
    return out


def _read_file(p: Path, table: str | None, id_names: set[str]) -> pd.DataFrame:
    if not p.exists():
        raise UserError(f"{p}: no such file")
    name = p.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(p)
    if name.endswith((".duckdb", ".db", ".ddb")):
        import duckdb

        from epi_spineage.db.schema import require_table

        with duckdb.connect(str(p), read_only=True) as con:
            return con.execute(f"SELECT * FROM {require_table(con, p, table or 'cohort')}").df()
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        sep = "\t" if ".tsv" in name else ","
        header = pd.read_csv(p, sep=sep, nrows=0).columns
        dtype = {c: str for c in header if c in id_names}
        return pd.read_csv(p, sep=sep, dtype=dtype)
    raise UserError(f"{p}: unsupported file type; use .csv, .tsv, .parquet or .duckdb")


# ----------------------------------------------------------------------------- validation
def _rows(mask) -> str:
    idx = np.flatnonzero(np.asarray(mask)) + 1
    shown = ", ".join(str(i) for i in idx[:_MAX_ROWS_LISTED])
    more = f", ... {idx.size - _MAX_ROWS_LISTED} more" if idx.size > _MAX_ROWS_LISTED else ""
    return f"(row{'s' if idx.size > 1 else ''} {shown}{more})"


def _codes(values, limit: int = 5) -> str:
    uniq = sorted({repr(v) for v in values})
    return ", ".join(uniq[:limit]) + (", ..." if len(uniq) > limit else "")


def validate_cohort(df: pd.DataFrame, *, raise_on_error: bool = True) -> list[str]:
    """Check a cohort table against the schema; one line per problem, rows numbered from 1.

    Checks: required columns present and filled; participant ids unique; numbers numeric and in
    range (T-scores within -8..8, ...); follow-up times > 0; every event (=1) has a time; sex is F/M;
    0/1 columns hold only 0/1; split and modality use the schema's codes. Between outcomes: where
    ``death`` = 1 no fracture time (event or censoring) is later than ``death_years`` (equal is
    allowed; a censored death time is not checked, registries may end on different dates);
    ``fracture_any`` = 1 where any site is 1; a site's time is not earlier than ``fracture_any_years``.
    Never changes ``df``.
    Raises ``ValidationError`` (a ``UserError``: exit 2 in CLIs) when ``raise_on_error`` and any
    problem is found; otherwise returns the list (empty when the table is valid).
    """
    problems: list[str] = []
    missing = [c for c in REQUIRED_COHORT_COLUMNS if c not in df.columns]
    for c in missing:
        problems.append(
            f"missing required column '{c}' ({COLUMNS_BY_NAME[c].description}); "
            "rename yours with [columns] in a mapping file"
        )
    for c in REQUIRED_COHORT_COLUMNS:
        if c in df.columns:
            # not in place: under copy-on-write (pandas 3) to_numpy() returns a read-only array
            empty = df[c].isna().to_numpy()
            if c == "participant_id" or COLUMNS_BY_NAME[c].kind == "str":
                empty = empty | (df[c].astype(str).str.strip().eq("").to_numpy() & ~df[c].isna().to_numpy())
            if empty.any():
                problems.append(f"{c}: {int(empty.sum())} row(s) missing a required value {_rows(empty)}")
    if "participant_id" in df.columns:
        ids = df["participant_id"].map(_code_text)
        dup = ids.duplicated(keep=False).to_numpy() & ids.notna().to_numpy()
        if dup.any():
            problems.append(
                f"participant_id: {int(ids[dup].nunique())} id(s) appear more than once, "
                f"on {int(dup.sum())} rows {_rows(dup)}"
            )
    for col in COHORT_COLUMNS:
        if col.name not in df.columns or col.name == "participant_id":
            continue
        s = df[col.name]
        present = s.notna().to_numpy()
        if col.kind == "float":
            num = pd.to_numeric(s, errors="coerce")
            bad = present & num.isna().to_numpy()
            if bad.any():
                problems.append(
                    f"{col.name}: {int(bad.sum())} value(s) not numeric: {_codes(s[bad].tolist())} {_rows(bad)}"
                )
            v = num.to_numpy(dtype=float)
            if col.name.endswith("_years") and col.name in {t for _, t in OUTCOMES.values()}:
                nonpos = v <= 0
                if nonpos.any():
                    problems.append(
                        f"{col.name}: {int(nonpos.sum())} row(s) with zero or negative follow-up {_rows(nonpos)}"
                    )
                upper = col.valid_range[1] if col.valid_range else None
                over = v > upper if upper is not None else np.zeros_like(nonpos)
                if over.any():
                    problems.append(
                        f"{col.name}: {int(over.sum())} follow-up time(s) above {upper:g} years {_rows(over)}"
                    )
            elif col.valid_range is not None:
                lo, hi = col.valid_range
                out = (v < lo) | (v > hi)
                if out.any():
                    problems.append(
                        f"{col.name}: {int(out.sum())} value(s) out of range {lo:g} to {hi:g} "
                        f"({col.description}) {_rows(out)}"
                    )
        elif col.kind == "binary":
            num = pd.to_numeric(s, errors="coerce")
            bad = present & ~num.isin([0, 1]).to_numpy()
            if bad.any():
                problems.append(
                    f"{col.name}: {int(bad.sum())} value(s) not 0/1: {_codes(s[bad].tolist())} "
                    f"{_rows(bad)}; recode with [values.{col.name}] or [binary_values]"
                )
        elif col.allowed is not None:
            # a categorical column maps its categories and stays categorical: compare as plain text
            text = s.map(_code_text).astype(object)
            # an empty string counts as missing (reported above for required columns)
            bad = present & ~text.isin(col.allowed).to_numpy() & text.fillna("").ne("").to_numpy()
            if bad.any():
                what = "unknown code(s)" if col.name == "sex" else "value(s) not allowed"
                problems.append(
                    f"{col.name}: {int(bad.sum())} row(s) with {what} {_codes(s[bad].tolist())} "
                    f"{_rows(bad)}; expected {' or '.join(col.allowed)}"
                    + (f" (recode with [values.{col.name}])" if col.name == "sex" else "")
                )
    for event, time in OUTCOMES.values():
        if event not in df.columns:
            continue
        ev = pd.to_numeric(df[event], errors="coerce").to_numpy(dtype=float) == 1
        if time not in df.columns:
            if ev.any():
                problems.append(f"{event}: {int(ev.sum())} event(s) but no time column '{time}'")
            continue
        no_time = ev & pd.to_numeric(df[time], errors="coerce").isna().to_numpy()
        if no_time.any():
            problems.append(f"{event}: {int(no_time.sum())} event(s) without a time in '{time}' {_rows(no_time)}")
    problems += _consistency(df)
    if problems and raise_on_error:
        raise ValidationError(problems, what="cohort table")
    return problems


#: Times closer than this (years, about 30 seconds) count as equal in the consistency checks.
_TIME_TOL = 1e-6
_SITES = tuple(name for name in OUTCOMES if name.startswith("fracture_") and name != "fracture_any")


def _consistency(df: pd.DataFrame) -> list[str]:
    """Checks between outcomes (docs/guides/cohort.md#validation). Rows where a value is missing or
    not numeric are skipped here (the checks above name them)."""
    problems: list[str] = []

    def num(col: str) -> np.ndarray | None:
        return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float) if col in df.columns else None

    any_ev, any_t = num("fracture_any"), num("fracture_any_years")
    death, death_t = num("death"), num("death_years")
    # a recorded death ends follow-up: no fracture time (event or censoring) may run past it; a
    # censored death time may be earlier (the death registry can end before the fracture registry)
    if death is not None and death_t is not None:
        dead = (death == 1) & np.isfinite(death_t)
        beyond = np.zeros(len(df), dtype=bool)
        cols = []
        for name in ("fracture_any", *_SITES):
            t = num(OUTCOMES[name][1])
            if t is None:
                continue
            past = dead & np.isfinite(t) & (t > death_t + _TIME_TOL)
            if past.any():
                cols.append(OUTCOMES[name][1])
                beyond |= past
        if beyond.any():
            problems.append(
                f"{', '.join(cols)}: {int(beyond.sum())} row(s) with follow-up beyond the death "
                f"time (death = 1, death_years earlier) {_rows(beyond)}"
            )
    if any_ev is not None:
        flagged = np.zeros(len(df), dtype=bool)
        which = []
        for name in _SITES:
            ev = num(name)
            if ev is None:
                continue
            bad = (ev == 1) & (any_ev == 0)
            if bad.any():
                which.append(name)
                flagged |= bad
        if flagged.any():
            problems.append(
                f"fracture_any: {int(flagged.sum())} row(s) with a site fracture ({', '.join(which)}) "
                f"but fracture_any = 0 {_rows(flagged)}"
            )
    if any_t is not None:
        # the first fracture of any site cannot come after the first fracture of one site
        for name in _SITES:
            t = num(OUTCOMES[name][1])
            if t is None:
                continue
            early = np.isfinite(t) & np.isfinite(any_t) & (t < any_t - _TIME_TOL)
            if early.any():
                problems.append(
                    f"{OUTCOMES[name][1]}: {int(early.sum())} row(s) earlier than fracture_any_years {_rows(early)}"
                )
    return problems


# ----------------------------------------------------------------------------- derived variables
def _bias_apply(bias, spine: np.ndarray, age: np.ndarray, ids, key) -> np.ndarray:
    """Corrected spine age from a ``BiasCorrection`` (its own method, leakage checks included), or the
    Beheshti formula from ``(alpha, beta)``, a dict or an object with ``alpha`` and ``beta``."""
    from epi_spineage.model.bias import beheshti_correct

    if hasattr(bias, "apply") and callable(bias.apply):
        # apply(chronological_age, predicted_age, ids): its refusals (fitting data, overlapping ids) stand
        return np.asarray(bias.apply(age, spine, ids, key=key), dtype=float)
    try:
        if isinstance(bias, dict):
            alpha, beta = bias["alpha"], bias["beta"]
        elif hasattr(bias, "alpha") and hasattr(bias, "beta"):
            alpha, beta = bias.alpha, bias.beta
        else:
            alpha, beta = bias
        return beheshti_correct(spine, age, float(alpha), float(beta))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"bias must be a BiasCorrection, (alpha, beta) or {{'alpha': .., 'beta': ..}}: {exc}") from None


def _zscore(s: pd.Series, groups) -> pd.Series:
    x = pd.to_numeric(s, errors="coerce").astype(float)
    if groups is None:
        return (x - x.mean()) / x.std(ddof=1)
    g = x.groupby(groups, dropna=False)
    return (x - g.transform("mean")) / g.transform(lambda v: v.std(ddof=1))


def derive_variables(
    df: pd.DataFrame,
    *,
    corrected: bool | None = None,
    bias=None,
    by: str | None = "cohort",
    key: bytes | str | None = None,
) -> pd.DataFrame:
    """Add the analysis variables (``DERIVED_COLUMNS``) to a copy of ``df``; no row is dropped.

    - ``bias``: a fitted ``model.BiasCorrection`` (applied with its own method and leakage checks:
      ``participant_id`` is checked against its fitting ids, raw ids hashed with ``key`` or the
      environment key), or Beheshti parameters ``(alpha, beta)`` / a dict / an object with ``alpha``
      and ``beta`` -> ``spine_age_corrected_years`` = spine age - (alpha * age + beta) for every row
      (``model.bias.beheshti_correct``).
    - ``pad_raw_years`` = spine age - age; ``pad_corrected_years`` = corrected spine age - age (NaN
      where there is none); ``pad_years`` = the analysed PAD (docs/conventions.md#pad).
      ``corrected=None``: per ``by`` group, the corrected spine age
      where that group has any, else the uncorrected one; ``True``: always corrected (error if the
      column is absent); ``False``: always uncorrected. ``pad_corrected`` says which, per row.
      PAD itself is not rounded; ``stats.grouping`` rounds it to 1e-9 before comparing with a cut.
    - ``bmi`` where missing and height and weight are known; ``osteoporosis`` = lowest available
      T-score <= -2.5 (NA if none; a user value is kept only where no T-score is measured).
    - scalings: ``height_dec5_cm`` = -height/5; ``fn_tscore_dec``, ``albumin_dec``, ``hemoglobin_dec``
      = -z; ``creatinine_inc`` = +z; ``pad_z`` = z of PAD. z uses the mean and sample SD within each
      ``by`` group (each cohort separately); ``by=None`` uses the whole table.
    """
    out = df.copy()
    groups = out[by] if by is not None and by in out.columns else None

    def has(name: str) -> bool:
        # reads ``out.columns`` at each call: a bound ``out.columns.__contains__`` would miss the
        # corrected spine age added below (pandas makes a new Index when a column is added)
        return name in out.columns

    if bias is not None:
        if not (has("spine_age_years") and has("age_years")):
            raise UserError("bias correction needs spine_age_years and age_years")
        ids = out["participant_id"].tolist() if has("participant_id") else None
        out["spine_age_corrected_years"] = _bias_apply(
            bias,
            pd.to_numeric(out["spine_age_years"], errors="coerce").to_numpy(float),
            pd.to_numeric(out["age_years"], errors="coerce").to_numpy(float),
            ids,
            key,
        )
    if has("age_years") and (has("spine_age_years") or has("spine_age_corrected_years")):
        age = pd.to_numeric(out["age_years"], errors="coerce").astype(float)
        raw = (
            pd.to_numeric(out["spine_age_years"], errors="coerce").astype(float)
            if has("spine_age_years")
            else pd.Series(np.nan, index=out.index)
        )
        cor = (
            pd.to_numeric(out["spine_age_corrected_years"], errors="coerce").astype(float)
            if has("spine_age_corrected_years")
            else None
        )
        if corrected is True and cor is None:
            raise UserError("corrected=True but the table has no spine_age_corrected_years column")
        if corrected is False or cor is None:
            use = pd.Series(False, index=out.index)
        elif corrected is True:
            use = pd.Series(True, index=out.index)
        else:
            any_cor = cor.notna() if groups is None else cor.notna().groupby(groups, dropna=False).transform("any")
            use = pd.Series(bool(cor.notna().any()), index=out.index) if groups is None else any_cor.astype(bool)
        spine = raw.where(~use, cor if cor is not None else raw)
        out["pad_raw_years"] = raw - age
        out["pad_corrected_years"] = (cor - age) if cor is not None else np.nan
        out[PAD_COLUMN] = spine - age
        out["pad_corrected"] = use.to_numpy(bool)
        out["pad_z"] = _zscore(out[PAD_COLUMN], groups)
    if has("height_cm") and has("weight_kg"):
        h = pd.to_numeric(out["height_cm"], errors="coerce") / 100.0
        bmi = pd.to_numeric(out["weight_kg"], errors="coerce") / (h * h)
        out["bmi"] = pd.to_numeric(out["bmi"], errors="coerce").fillna(bmi) if has("bmi") else bmi
    tcols = [c for c in TSCORE_COLUMNS if has(c)]
    if tcols:
        tmin = out[tcols].apply(pd.to_numeric, errors="coerce").min(axis=1, skipna=True)
        derived = pd.Series(np.where(tmin.isna(), np.nan, (tmin <= -2.5).astype(float)), index=out.index)
        if has("osteoporosis"):
            given = pd.to_numeric(out["osteoporosis"], errors="coerce")
            clash = given.notna() & derived.notna() & (given != derived)
            if clash.any():
                warnings.warn(
                    f"osteoporosis: {int(clash.sum())} given value(s) disagree with the T-scores; the T-scores win",
                    stacklevel=2,
                )
            derived = derived.fillna(given)
        out["osteoporosis"] = derived.astype("Int64")
    if has("height_cm"):
        out["height_dec5_cm"] = -pd.to_numeric(out["height_cm"], errors="coerce") / 5.0
    for src, name, sign in (
        ("tscore_femoral_neck", "fn_tscore_dec", -1.0),
        ("albumin_g_l", "albumin_dec", -1.0),
        ("hemoglobin_g_dl", "hemoglobin_dec", -1.0),
        ("creatinine_mg_dl", "creatinine_inc", 1.0),
    ):
        if has(src):
            out[name] = sign * _zscore(out[src], groups)
    return out
