"""From the cohort tables as given to the frames the analyses use, with every exclusion counted.

One copy of the analysed rows is made per cohort (``derive_variables``); everything else is O(n) in a
few columns. The steps then add their columns to that frame and never copy it (docs/guides/registry-scale.md).

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
from epi_spineage.schema import PAD_COLUMN

_PAD_CHOICE = {"auto": None, "corrected": True, "uncorrected": False}


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

    name = getattr(config, role)
    n0 = len(df)
    _flow(flow, role, "rows given", n0, 0)
    frame = df
    if role == "derivation" and config.derivation_split:
        if "split" in frame.columns and (frame["split"] == config.derivation_split).any():
            keep = frame["split"] == config.derivation_split
            _flow(
                flow,
                role,
                f"{config.derivation_split} split",
                int(keep.sum()),
                int((~keep).sum()),
                f"not in the {config.derivation_split} split (model training/validation images)",
            )
            frame = frame[keep]
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
    pad = derive_variables(frame[ages], corrected=choice, by=None)
    no_pad = pad[PAD_COLUMN].isna().to_numpy()
    if no_pad.any():
        uses_corrected = bool(pad["pad_corrected"].any())
        reason = "no spine age (image missing, unreadable or not scored)"
        if uses_corrected and "spine_age_years" in frame.columns:
            n_raw_only = int((no_pad & frame["spine_age_years"].notna().to_numpy()).sum())
            if n_raw_only:
                reason += (
                    f"; {n_raw_only} of them have an uncorrected spine age but no corrected one, and this "
                    "cohort's PAD is the corrected one (set [pad] in --config to choose)"
                )
        _flow(flow, role, "with spine age (PAD)", int((~no_pad).sum()), int(no_pad.sum()), reason)
        frame = frame[~no_pad]
    del pad
    # derive_variables works on a copy: the one copy of the analysed rows the report makes
    frame = derive_variables(frame, corrected=choice, by=None)
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        frame.index = pd.RangeIndex(len(frame))  # in place on the copy: reset_index would copy again
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


def prepare_cohorts(derivation: pd.DataFrame | None, external: pd.DataFrame | None, config: StudyConfig):
    """Return ``({role: PreparedCohort}, flow table, data-quality table)``."""
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
    return cohorts, flow_df, quality_df
