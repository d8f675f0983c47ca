"""From the cohort tables as given to the frames the analyses use, with every exclusion counted.

O(n k) time for k columns. Memory: when every row is analysed the prepared frame shares the given frame's
columns (nothing is copied) and adds the derived ones (~15 float columns, 0.1 GB at 1,000,000); when rows are
excluded, one copy of the kept rows is made. The steps then add their columns to that frame and never copy it
(docs/guides/registry-scale.md). The given frame is never written to.

Per role: keep the analysed rows (the derivation test split), derive the analysis variables
(``epi_spineage.tables.derive_variables``: PAD, osteoporosis, per-unit scalings), drop rows without a
PAD (no spine age) and say how many. Nothing else is dropped here; each model reports its own
complete-case count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.report.config import StudyConfig
from epi_spineage.schema import PAD_COLUMN, TSCORE_COLUMNS

_PAD_CHOICE = {"auto": None, "corrected": True, "uncorrected": False}

#: the columns ``tables.derive_variables`` reads (with ``by=None`` and no bias correction); only these are
#: handed to it, so its copy is of a few columns, not of the cohort. A test checks the result equals
#: ``derive_variables`` on the whole frame.
_DERIVE_INPUTS = (
    "age_years",
    "spine_age_years",
    "spine_age_corrected_years",
    "height_cm",
    "weight_kg",
    "bmi",
    *TSCORE_COLUMNS,
    "osteoporosis",
    "albumin_g_l",
    "hemoglobin_g_dl",
    "creatinine_mg_dl",
)


@dataclass
class PreparedCohort:
    role: str
    name: str
    frame: pd.DataFrame
    pad_kind: str  # "corrected", "uncorrected" or "mixed"
    n_input: int

    @property
    def n(self) -> int:
        return len(self.frame)


def _flow(rows: list, cohort: str, step: str, n: int, excluded: int, reason: str = "") -> None:
    rows.append({"cohort": cohort, "step": step, "n": int(n), "n_excluded": int(excluded), "reason": reason})


def _quality(rows: list, cohort: str, item: str, n, detail: str = "") -> None:
    rows.append({"cohort": cohort, "item": item, "n": n, "detail": detail})


def _prepare_one(df: pd.DataFrame, role: str, config: StudyConfig, flow: list, quality: list) -> PreparedCohort | None:
    from epi_spineage.tables import derive_variables
    from epi_spineage.tables.cohort import DERIVED_COLUMNS

    name = getattr(config, role)
    n0 = len(df)
    _flow(flow, role, "rows given", n0, 0)
    frame = df
    keep: np.ndarray | None = None  # the analysed rows, as one mask: the rows are taken once, at the end
    if role == "derivation" and config.derivation_split:
        if "split" in frame.columns and (frame["split"] == config.derivation_split).any():
            keep = (frame["split"] == config.derivation_split).to_numpy()
            _flow(
                flow,
                role,
                f"{config.derivation_split} split",
                int(keep.sum()),
                int((~keep).sum()),
                f"not in the {config.derivation_split} split (model training/validation images)",
            )
        else:
            warnings.warn(
                f"derivation cohort has no split {config.derivation_split!r}: all its rows are analysed, "
                "including any the model was trained on",
                stacklevel=2,
            )
            _quality(quality, role, f"no '{config.derivation_split}' split: all rows analysed", n0)
    choice = _PAD_CHOICE[getattr(config, f"pad_{role}")]
    if choice is True and "spine_age_corrected_years" not in frame.columns:
        raise UserError(
            f"config asks for corrected PAD in the {role} cohort, but it has no spine_age_corrected_years column"
        )
    if "spine_age_years" not in frame.columns and "spine_age_corrected_years" not in frame.columns:
        raise UserError(
            f"{role} cohort has no spine_age_years column: score the images first (epi-spineage score) or pass --db"
        )
    # PAD from the three age columns alone first (O(n), no copy of the whole table), to know which rows
    # have one; then the analysis variables once, on those rows (z-scores describe the analysed rows)
    ages = [c for c in ("age_years", "spine_age_years", "spine_age_corrected_years") if c in frame.columns]
    pad = derive_variables(frame[ages] if keep is None else frame.loc[keep, ages], corrected=choice, by=None)
    no_pad = pad[PAD_COLUMN].isna().to_numpy()
    if no_pad.any():
        uses_corrected = bool(pad["pad_corrected"].any())
        reason = "no spine age (image missing, unreadable or not scored)"
        if uses_corrected and "spine_age_years" in frame.columns:
            raw = frame["spine_age_years"].notna().to_numpy()
            n_raw_only = int((no_pad & (raw if keep is None else raw[keep])).sum())
            if n_raw_only:
                reason += (
                    f"; {n_raw_only} of them have an uncorrected spine age but no corrected one, and this "
                    "cohort's PAD is the corrected one (set [pad] in --config to choose)"
                )
        _flow(flow, role, "with spine age (PAD)", int((~no_pad).sum()), int(no_pad.sum()), reason)
        if keep is None:
            keep = ~no_pad
        else:
            keep[np.flatnonzero(keep)[no_pad]] = False
    del pad
    # The analysed rows: the caller's frame itself when every row is analysed (a shallow frame: its columns
    # are shared, never written; the derived ones are added to this frame only), else the one copy of the
    # kept rows. A copy of a million rows is ~0.3 GB that would stay beside the caller's (issue 18).
    frame = frame.copy(deep=False) if keep is None else frame.take(np.flatnonzero(keep))
    # The analysis variables from the columns derive_variables reads (derive_variables copies what it is
    # given, so only these few are copied); its new columns, and the ones it recomputes (bmi,
    # osteoporosis), replace or join the frame's in its order, as derive_variables(frame) would.
    inputs = [c for c in _DERIVE_INPUTS if c in frame.columns]
    derived = derive_variables(frame[inputs], corrected=choice, by=None)
    for col in derived.columns:
        if col in DERIVED_COLUMNS or col not in frame.columns:
            frame[col] = derived[col].to_numpy() if isinstance(derived[col].dtype, np.dtype) else derived[col].array
    del derived
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        frame.index = pd.RangeIndex(len(frame))  # in place on the new frame: reset_index would copy again
    if len(frame) < 20:
        raise UserError(f"{role} cohort: only {len(frame)} participant(s) with a spine age; need at least 20")
    used = frame["pad_corrected"].astype(bool)
    pad_kind = "corrected" if used.all() else "uncorrected" if not used.any() else "mixed"
    # Cox and logistic-type models need numbers; keep the schema's F/M text too.
    sex = frame["sex"].astype("string").str.upper()
    frame["female"] = np.where(sex.isna(), np.nan, (sex == "F").astype(float))
    frame["male"] = 1.0 - frame["female"]
    _flow(flow, role, "analysed", len(frame), 0, f"PAD {pad_kind}")
    for col in ("spine_age_years", "age_years", "sex"):
        if col in frame.columns:
            miss = int(frame[col].isna().sum())
            if miss:
                _quality(quality, role, f"missing {col}", miss)
    return PreparedCohort(role=role, name=name, frame=frame, pad_kind=pad_kind, n_input=n0)


def release_free_memory() -> bool:
    """Return the C allocator's free pages to the kernel (glibc ``malloc_trim``); False where there is none.

    Reading and preparing a registry-sized cohort frees many temporary columns of a few MB; glibc keeps
    much of that memory in the process (about 0.2 GB at 1,000,000 rows, measured with
    ``benchmarks/report.py``), where it would count in the resident set of every analysis step, and of
    each forked worker that writes to it. One call takes milliseconds and changes no number.
    """
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


def prepare_cohorts(derivation: pd.DataFrame | None, external: pd.DataFrame | None, config: StudyConfig):
    """Return ``({role: PreparedCohort}, flow table, data-quality table)``.

    Ends with ``release_free_memory``: the analyses start from the frames alone, not from the freed
    temporaries of reading and preparing them.
    """
    flow: list[dict] = []
    quality: list[dict] = []
    cohorts: dict[str, PreparedCohort] = {}
    for role, df in (("derivation", derivation), ("external", external)):
        if df is None or len(df) == 0:
            continue
        prepared = _prepare_one(df, role, config, flow, quality)
        if prepared is not None:
            cohorts[role] = prepared
    flow_df = pd.DataFrame(flow, columns=["cohort", "step", "n", "n_excluded", "reason"])
    quality_df = pd.DataFrame(quality, columns=["cohort", "item", "n", "detail"])
    release_free_memory()
    return cohorts, flow_df, quality_df
