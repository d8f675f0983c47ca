"""Cohort validation works under pandas' copy-on-write (the default from pandas 3), where ``to_numpy()``
returns read-only arrays: a fresh install (pandas 3.1) crashed in ``cohort load`` with "output array is
read-only" during `make demo`."""

from __future__ import annotations

import pandas as pd

from epi_spineage.synth.cohort import simulate_study
from epi_spineage.tables.cohort import validate_cohort


def test_validation_under_copy_on_write():
    df = simulate_study(seed=1, n_derivation=30, n_external=30).derivation
    df.loc[df.index[0], "participant_id"] = " "
    with pd.option_context("mode.copy_on_write", True):
        problems = validate_cohort(df, raise_on_error=False)
    assert any(p.startswith("participant_id: 1 row(s) missing") for p in problems), problems
