"""FRAX batch files: export with spine age in place of age, and import of the tool's results.

FRAX is proprietary, so the package never computes it: ``export_frax_input`` writes the FRAXplus bulk CSV
(13 columns, no header; docs: methods, FRAX) for the official tool, and ``import_frax_results`` reads the file the
tool returns (the same 13 columns with the results appended from column 14: major osteoporotic
fracture %, then hip fracture %, without BMD) back onto the cohort.

Columns written: 1 unit (``t``), 2 country id, 3 age (spine age, clamped to 40-90), 4 sex (0 men,
1 women), 5 BMI, 6 prior fracture, 7 parent hip fracture, 8 current smoker, 9 glucocorticoids,
10 rheumatoid arthritis, 11 secondary osteoporosis, 12 alcohol >= 3 units/day, 13 FN BMD (empty).
Yes/no items the cohort lacks are written as 0 (FRAX reads a blank as "no" anyway) and logged.
A rows file beside the CSV (``<out>.rows.csv``) links each line to its participant and flags the
clamped ages; participants without an age to use are listed there with ``exported = 0``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError

__all__ = ["export_frax_input", "import_frax_results", "rows_path", "FRAX_MIN_AGE", "FRAX_MAX_AGE"]

log = logging.getLogger(__name__)

FRAX_MIN_AGE = 40.0
FRAX_MAX_AGE = 90.0

#: FRAX yes/no items in batch order -> cohort columns tried in turn (schema names first).
_ITEMS = (
    ("prior_fracture", ("prior_fracture",)),
    ("parent_hip_fracture", ("parent_hip_fracture", "parent_hip")),
    ("smoker", ("current_smoker", "smoker")),
    ("glucocorticoid", ("glucocorticoid",)),
    ("rheumatoid_arthritis", ("rheumatoid_arthritis",)),
    ("secondary_osteoporosis", ("secondary_osteoporosis",)),
    ("alcohol", ("alcohol", "alcohol_3_units")),
)


def rows_path(out_csv) -> Path:
    """The rows file written beside a FRAX batch CSV."""
    p = Path(out_csv)
    return p.with_name(p.stem + ".rows.csv")


def _frax_age(df: pd.DataFrame, use_spine_age: bool, corrected: bool | None) -> tuple[pd.Series, str]:
    from epi_spineage.tables import derive_variables

    if not use_spine_age:
        return pd.to_numeric(df["age_years"], errors="coerce"), "chronological"
    if "spine_age_years" not in df.columns and "spine_age_corrected_years" not in df.columns:
        raise UserError(
            "the cohort has no spine_age_years column; export with chronological age "
            "(--age chronological) or add the model's predictions"
        )
    d = derive_variables(df, corrected=corrected)
    source = np.where(d["pad_corrected"], "spine (corrected)", "spine")
    return d["age_years"] + d["pad_years"], pd.Series(source, index=df.index)


def export_frax_input(
    df: pd.DataFrame,
    out_csv,
    use_spine_age: bool = True,
    *,
    country_id: int,
    unit: str = "t",
    corrected: bool | None = None,
) -> pd.DataFrame:
    """Write the FRAXplus bulk CSV for ``df`` and its rows file; return the rows table.

    The age is spine age (corrected where the cohort has corrected values, see
    ``tables.derive_variables``) or, with ``use_spine_age=False``, chronological age. Ages outside
    40-90 are clamped (FRAX computes at the bound anyway) and flagged ``clamped = 1``.

    Rows table columns: ``row`` (1-based line in the CSV, empty when not exported),
    ``participant_id``, ``age_years``, ``frax_age_years`` (the age written), ``age_source``,
    ``clamped`` (0/1), ``exported`` (0/1), ``reason`` (why not exported).
    """
    need = ["participant_id", "age_years", "sex"]
    absent = [c for c in need if c not in df.columns]
    if absent:
        raise UserError(f"FRAX export needs column(s) {absent}")
    if unit not in ("t", "z"):
        raise UserError("unit must be 't' or 'z'")
    age, source = _frax_age(df, use_spine_age, corrected)
    sex = df["sex"].map({"F": 1, "M": 0})
    if "bmi" in df.columns and df["bmi"].notna().all():
        bmi = pd.to_numeric(df["bmi"], errors="coerce")
    else:
        from epi_spineage.tables import derive_variables

        d = derive_variables(df)
        bmi = pd.to_numeric(d["bmi"], errors="coerce") if "bmi" in d.columns else pd.Series(np.nan, index=df.index)
    reason = pd.Series("", index=df.index, dtype=object)
    reason[sex.isna()] = "sex not F/M"
    reason[age.isna()] = "no age to use"
    exported = reason.eq("")
    clamped = exported & ((age < FRAX_MIN_AGE) | (age > FRAX_MAX_AGE))
    used = age.clip(FRAX_MIN_AGE, FRAX_MAX_AGE)

    cols = {
        "unit": unit,
        "country_id": int(country_id),
        "age": used,
        "sex": sex.astype("Int64"),
        "bmi": bmi,
    }
    missing_items = []
    for item, candidates in _ITEMS:
        col = next((c for c in candidates if c in df.columns), None)
        if col is None:
            missing_items.append(item)
            cols[item] = 0
        else:
            cols[item] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype(int)
    cols["fn_bmd"] = ""
    batch = pd.DataFrame(cols, index=df.index)[exported]
    if missing_items:
        log.warning("FRAX export: the cohort has no column for %s; written as 0 ('no')", ", ".join(missing_items))
    if batch["bmi"].isna().any():
        log.warning("FRAX export: %d row(s) without BMI (blank in the CSV)", int(batch["bmi"].isna().sum()))
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch.to_csv(out, header=False, index=False, float_format="%.10g")

    rows = pd.DataFrame(
        {
            "row": pd.array(np.where(exported, exported.cumsum(), 0), dtype="Int64"),
            "participant_id": df["participant_id"].astype(str).to_numpy(),
            "age_years": pd.to_numeric(df["age_years"], errors="coerce").to_numpy(),
            "frax_age_years": used.where(exported).to_numpy(),
            "age_source": source if isinstance(source, str) else source.to_numpy(),
            "clamped": clamped.astype(int).to_numpy(),
            "exported": exported.astype(int).to_numpy(),
            "reason": reason.to_numpy(),
        }
    )
    rows.loc[rows["exported"] == 0, "row"] = pd.NA
    rows.to_csv(rows_path(out), index=False)
    n_cl, n_out = int(clamped.sum()), int((~exported).sum())
    if n_cl:
        log.warning("FRAX export: %d age(s) outside 40-90 clamped (clamped = 1 in %s)", n_cl, rows_path(out).name)
    if n_out:
        log.warning("FRAX export: %d participant(s) not exported (see 'reason' in %s)", n_out, rows_path(out).name)
    log.info("FRAX export: %d row(s) written to %s", len(batch), out)
    return rows


def import_frax_results(csv, rows=None, *, use_spine_age: bool = True) -> pd.DataFrame:
    """Read the FRAX tool's results (13 input columns, then MOF % and hip % from column 14).

    ``rows`` is the rows file (path or DataFrame) written by ``export_frax_input``; default: the
    file beside ``csv`` named like the export (``<stem>.rows.csv``, tried for the results' own stem
    too). Returns ``participant_id`` plus ``frax_mof_spine_pct``/``frax_hip_spine_pct`` (or
    ``frax_mof_pct``/``frax_hip_pct`` with ``use_spine_age=False``), one row per exported participant.
    """
    p = Path(csv)
    raw = pd.read_csv(p, header=None, dtype=str, skip_blank_lines=True)
    if len(raw) and pd.to_numeric(raw.iloc[0, 2:3], errors="coerce").isna().all():
        raw = raw.iloc[1:]  # a header line
    if raw.shape[1] < 15:
        raise UserError(
            f"{p}: expected the 13 FRAX input columns and results from column 14 "
            f"(MOF %, hip %); found {raw.shape[1]} column(s)"
        )
    mof = pd.to_numeric(raw.iloc[:, 13], errors="coerce").to_numpy()
    hip = pd.to_numeric(raw.iloc[:, 14], errors="coerce").to_numpy()
    bad = np.isnan(mof) | np.isnan(hip)
    if bad.any():
        lines = np.flatnonzero(bad)[:5] + 1
        raise UserError(
            f"{p}: {int(bad.sum())} line(s) without numeric MOF/hip results (lines {', '.join(map(str, lines))})"
        )
    if rows is None:
        candidates = [rows_path(p)]
        if p.stem.endswith(("_results", ".results", "-results")):
            candidates.append(rows_path(p.with_name(p.stem.rsplit("results", 1)[0].rstrip("_.-") + ".csv")))
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise UserError(f"{p}: no rows file found (tried {', '.join(str(c) for c in candidates)}); pass --rows")
        rows = found
    r = rows if isinstance(rows, pd.DataFrame) else pd.read_csv(rows, dtype={"participant_id": str})
    r = r[r["exported"] == 1].sort_values("row")
    if len(r) != len(mof):
        raise UserError(f"{p}: {len(mof)} result line(s) but the rows file lists {len(r)} exported participant(s)")
    suffix = "_spine" if use_spine_age else ""
    return pd.DataFrame(
        {
            "participant_id": r["participant_id"].to_numpy(),
            f"frax_mof{suffix}_pct": mof,
            f"frax_hip{suffix}_pct": hip,
        }
    )
