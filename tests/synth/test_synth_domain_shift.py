"""Scanner offsets in the simulator: documented in truth, off by default, found by stats.pad_shift_test and
removed by a per-manufacturer bias correction fitted on a calibration set (the small, deterministic version of
benchmarks/domain_shift.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.model.bias import ManufacturerBiasCorrection
from epi_spineage.stats import pad_shift_test
from epi_spineage.synth.cohort import EXTERNAL, ManufacturerShift, simulate_cohort, simulate_study

OFFSETS = {"PHANTOMRAD (SYNTHETIC)": 3.0, "ACME IMAGING (SYNTHETIC)": -2.0}
SHIFT = ManufacturerShift(score_offsets_years=OFFSETS, image_offsets_years={"PHANTOMRAD (SYNTHETIC)": 5.0})


def test_offsets_are_off_by_default_and_touch_only_the_score_when_on(tmp_path):
    plain = simulate_study(seed=5, n_derivation=300, n_external=300)
    shifted = simulate_study(seed=5, n_derivation=300, n_external=300, manufacturers=SHIFT)
    assert "manufacturer" not in plain.external.columns and "manufacturers" not in plain.truth["cohorts"]["external"]
    score_cols = {"spine_age_years", "spine_age_corrected_years", "frax_mof_spine_pct", "frax_hip_spine_pct"}
    for role in ("derivation", "external"):
        a, b = getattr(plain, role), getattr(shifted, role)
        same = [c for c in a.columns if c not in score_cols]
        pd.testing.assert_frame_equal(a[same], b[same])
        off = b["manufacturer"].map(lambda m: OFFSETS.get(m, 0.0))
        np.testing.assert_allclose(b["spine_age_years"], np.clip(a["spine_age_years"] + off, 40, 100))
    truth = shifted.truth["cohorts"]["external"]["manufacturers"]
    assert truth["score_offsets_years"] == {"SYNTHETIC PHANTOM CO": 0.0, **OFFSETS}
    assert truth["image_offsets_years"]["PHANTOMRAD (SYNTHETIC)"] == 5.0
    assert sum(truth["n"].values()) == 300
    shifted.write(tmp_path)
    written = json.loads((tmp_path / "truth.json").read_text())
    assert written["cohorts"]["derivation"]["manufacturers"]["score_offsets_years"] == truth["score_offsets_years"]
    with pytest.raises(UserError, match="unknown manufacturer"):
        simulate_study(
            seed=5, n_derivation=300, n_external=300, manufacturers=ManufacturerShift(score_offsets_years={"X": 1})
        )


def test_shift_is_detected_and_removed_by_the_per_manufacturer_correction():
    df, truth = simulate_cohort(EXTERNAL, 4000, np.random.default_rng(7), manufacturers=SHIFT,
                                manufacturer_rng=np.random.default_rng(8))  # fmt: skip
    calib = np.random.default_rng(9).random(len(df)) < 0.5
    cal, ana = df[calib], df[~calib].copy()
    before = pad_shift_test(ana)
    assert before["p_value"].iloc[0] < 1e-10
    fit = ManufacturerBiasCorrection("calibration half", min_images=30).fit(
        cal["age_years"], cal["spine_age_years"], cal["manufacturer"], ids=cal["participant_id"].map(_pseudo)
    )
    # the planted offsets, recovered by the calibration lines (each line at the cohort's mean age)
    at = float(df["age_years"].mean())
    level = {m: f.alpha_ * at + f.beta_ for m, f in fit.fits_.items()}
    ref = level["SYNTHETIC PHANTOM CO"]
    for m, off in OFFSETS.items():
        assert level[m] - ref == pytest.approx(off, abs=0.6)
    ana["pad_c"] = fit.apply(ana["age_years"], ana["spine_age_years"], ana["manufacturer"],
                             ids=ana["participant_id"].map(_pseudo)) - ana["age_years"]  # fmt: skip
    after = pad_shift_test(ana, pad="pad_c")
    # what is left is the calibration lines' own error: the F test on corrected PAD ignores it, so it is
    # not asked to be non-significant here (benchmarks/domain_shift.py: its rejection rate over seeds)
    assert after["statistic"].iloc[0] < before["statistic"].iloc[0] / 10
    left = after.iloc[1:]
    assert (left["estimate"].abs() < 3 * np.sqrt(2) * left["std_error"]).all()  # calibration error + analysis error


def _pseudo(v: str) -> str:
    from epi_spineage.privacy import pseudonymise

    return pseudonymise(v, b"domain-shift-recovery-key-01")


def test_image_offsets_draw_a_scanners_phantoms_older(tmp_path):
    from epi_spineage.synth.archive import write_phantom_archive

    people = pd.DataFrame(
        {
            "participant_id": [f"S{i}" for i in range(4)],
            "age_years": [55.0, 60.0, 65.0, 70.0],
            "sex": ["F", "M", "F", "M"],
            "spine_age_years": [56.0, 61.0, 64.0, 72.0],
            "modality": "vfa",
            "manufacturer": ["OLDLOOK", "PLAIN", "OLDLOOK", "PLAIN"],
        }
    )
    kw = dict(seed=3, scale=0.1, image_format="png", participants=people)
    shifted = write_phantom_archive(tmp_path / "a", image_offsets_years={"OLDLOOK": 12.0}, **kw)
    assert list(shifted["true_image_offset_years"]) == [12.0, 0.0, 12.0, 0.0]
    assert list(shifted["true_manufacturer"]) == list(people["manufacturer"])
    # the same images as drawing those participants 12 years older, with no offset at all
    older = people.assign(spine_age_years=people["spine_age_years"] + np.where(people.index % 2 == 0, 12.0, 0.0))
    plain = write_phantom_archive(tmp_path / "b", **{**kw, "participants": older})
    assert "true_image_offset_years" not in plain.columns
    for a, b in zip(shifted["image"], plain["image"]):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    with pytest.raises(UserError, match="no image has manufacturer"):
        write_phantom_archive(tmp_path / "c", image_offsets_years={"NOBODY": 1.0}, **kw)
