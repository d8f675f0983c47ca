"""FRAX reclassification (hand-counted tables) and the FRAX batch export/import CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epi_spineage import frax as frax_cli
from epi_spineage.errors import UserError
from epi_spineage.stats import frax_reclassification
from epi_spineage.stats.frax import woolf_odds_ratio


def _frax_data():
    # events: 10 (chrono low->spine high: 3 up, high->low: 1 down, 4 high/high, 2 low/low)
    # non-events: 20 (up 2, down 5, high/high 3, low/low 10)
    blocks = [  # (event, chrono_high, spine_high, count)
        (1, 0, 1, 3),
        (1, 1, 0, 1),
        (1, 1, 1, 4),
        (1, 0, 0, 2),
        (0, 0, 1, 2),
        (0, 1, 0, 5),
        (0, 1, 1, 3),
        (0, 0, 0, 10),
    ]
    rows = []
    for ev, ch, sp, k in blocks:
        for i in range(k):
            # chronological high by MOF, spine high by hip: both routes to "high" are exercised
            rows.append(
                {
                    "fracture_any": ev,
                    "frax_mof_pct": 25.0 + i if ch else 10.0 + i,
                    "frax_hip_pct": 1.0,
                    "frax_mof_spine_pct": 12.0,
                    "frax_hip_spine_pct": 3.0 + i if sp else 2.9,
                }
            )
    df = pd.DataFrame(rows)
    df.loc[len(df)] = {
        "fracture_any": 1,
        "frax_mof_pct": np.nan,
        "frax_hip_pct": 1,
        "frax_mof_spine_pct": 1,
        "frax_hip_spine_pct": 1,
    }
    return df


def test_reclassification_counts_and_measures():
    res = frax_reclassification(_frax_data(), hip_event=None)
    assert (res.n, res.n_excluded, res.events) == (30, 1, 10)
    r = res.reclassification.set_index("stratum")
    assert (r.loc["events", "up"], r.loc["events", "down"], r.loc["events", "net_correct"]) == (3, 1, 2)
    assert (r.loc["non-events", "up"], r.loc["non-events", "down"], r.loc["non-events", "net_correct"]) == (2, 5, 3)
    ct = res.crosstab.set_index(["stratum", "chronological", "spine"])
    assert ct.loc[("all", "low", "high"), "n"] == 5 and ct.loc[("all", "low", "high"), "events"] == 3
    np.testing.assert_allclose(ct.loc[("all", "low", "high"), "observed_risk"], 0.6)
    nri = res.nri.set_index("term")
    pe, pn = (3 - 1) / 10, (5 - 2) / 20
    np.testing.assert_allclose(nri.loc["nri_events", "estimate"], pe)
    np.testing.assert_allclose(nri.loc["nri_nonevents", "estimate"], pn)
    np.testing.assert_allclose(nri.loc["nri_total", "estimate"], pe + pn)
    se_e = np.sqrt((0.3 + 0.1 - pe**2) / 10)
    np.testing.assert_allclose(nri.loc["nri_events", "std_error"], se_e)
    perf = res.performance.set_index(["model", "term"])
    # chronological high: events 5 of 10, non-events 8 of 20; spine high: events 7, non-events 5
    np.testing.assert_allclose(perf.loc[("chronological", "sensitivity"), "estimate"], 0.5)
    np.testing.assert_allclose(perf.loc[("spine", "sensitivity"), "estimate"], 0.7)
    np.testing.assert_allclose(perf.loc[("spine", "ppv"), "estimate"], 7 / 12)
    np.testing.assert_allclose(perf.loc[("spine", "odds_ratio"), "estimate"], 7 * 15 / (5 * 3))
    mc = perf.loc[("spine vs chronological", "sensitivity")]
    np.testing.assert_allclose([mc["estimate"], mc["statistic"]], [0.2, (1 - 3) ** 2 / 4])
    f = res.to_frame()
    assert {"frax_classification", "frax_nri", "frax_auroc"} == set(f["analysis"])
    ok = f["ci_low"].notna()
    assert (f.loc[ok, "ci_low"] <= f.loc[ok, "estimate"] + 1e-12).all()
    assert (f.loc[ok, "estimate"] <= f.loc[ok, "ci_high"] + 1e-12).all()
    assert len(res.delong) == 6  # two probabilities x (two AUCs + difference)


def test_woolf_zero_cell_correction():
    o = woolf_odds_ratio(5, 0, 3, 10)
    assert o["corrected"]
    np.testing.assert_allclose(o["estimate"], 5.5 * 10.5 / (0.5 * 3.5))
    plain = woolf_odds_ratio(5, 2, 3, 10)
    np.testing.assert_allclose(plain["std_error"], np.sqrt(1 / 5 + 1 / 2 + 1 / 3 + 1 / 10))


def test_missing_columns_and_single_class_are_user_errors():
    df = _frax_data()
    with pytest.raises(UserError):
        frax_reclassification(df.drop(columns="frax_hip_spine_pct"))
    with pytest.raises(UserError, match="both events"):
        frax_reclassification(df.assign(fracture_any=0))


def _cohort(n=12):
    rng = np.random.default_rng(4)
    return pd.DataFrame(
        {
            "participant_id": [f"p{i:03d}" for i in range(n)],
            "cohort": "external",
            "age_years": np.linspace(42, 88, n).round(),
            "sex": np.where(np.arange(n) % 2, "F", "M"),
            "spine_age_years": np.r_[30.0, 95.0, rng.integers(45, 85, n - 2)],
            "height_cm": 160.0,
            "weight_kg": 64.0,
            "prior_fracture": rng.integers(0, 2, n),
            "glucocorticoid": 0,
            "rheumatoid_arthritis": 0,
        }
    )


def test_export_clamps_and_import_round_trips(tmp_path):
    df = _cohort()
    out = tmp_path / "frax_spine.csv"
    rows = frax_cli.export_frax_input(df, out, country_id=7)
    batch = pd.read_csv(out, header=None)
    assert batch.shape == (12, 13)
    assert (batch[0] == "t").all() and (batch[1] == 7).all()
    np.testing.assert_allclose(batch[2], np.clip(df["spine_age_years"], 40, 90))
    assert list(batch[3]) == [0 if s == "M" else 1 for s in df["sex"]]
    np.testing.assert_allclose(batch[4], 25.0)
    assert rows["clamped"].tolist()[:2] == [1, 1] and rows["clamped"].sum() == 2
    assert batch[12].isna().all()
    # the FRAX tool appends results from column 14
    res = batch.copy()
    res[13] = np.arange(12) + 10.0
    res[14] = np.arange(12) / 10
    res.to_csv(tmp_path / "frax_spine_results.csv", header=False, index=False)
    rows_file = frax_cli.rows_path(out)
    assert rows_file.exists()
    got = frax_cli.import_frax_results(tmp_path / "frax_spine_results.csv", rows_file)
    # without --rows, the rows file beside the export is found from the results' name
    pd.testing.assert_frame_equal(got, frax_cli.import_frax_results(tmp_path / "frax_spine_results.csv"))
    assert list(got["participant_id"]) == list(df["participant_id"])
    np.testing.assert_allclose(got["frax_mof_spine_pct"], np.arange(12) + 10.0)


def test_cli_export_import_and_exit_codes(tmp_path, capsys):
    df = _cohort()
    cohort = tmp_path / "cohort.csv"
    df.to_csv(cohort, index=False)
    out = tmp_path / "frax_age.csv"
    assert frax_cli.main(["export", str(cohort), "--out", str(out), "--country-id", "3", "--age", "chronological"]) == 0
    res = pd.read_csv(out, header=None)
    res[13], res[14] = 20.0, 3.5
    res.to_csv(tmp_path / "frax_age_results.csv", header=False, index=False)
    merged = tmp_path / "merged.parquet"
    assert (
        frax_cli.main(
            [
                "import",
                str(tmp_path / "frax_age_results.csv"),
                "--cohort",
                str(cohort),
                "--out",
                str(merged),
                "--age",
                "chronological",
            ]
        )
        == 0
    )
    m = pd.read_parquet(merged)
    assert (m["frax_mof_pct"] == 20.0).all() and len(m) == len(df)
    # a cohort with problems: exit 2, one line per problem on stderr, no traceback
    bad = df.copy()
    bad.loc[1, "sex"] = "X"
    bad.loc[2, "participant_id"] = bad.loc[3, "participant_id"]
    bad.to_csv(cohort, index=False)
    capsys.readouterr()
    assert frax_cli.main(["export", str(cohort), "--out", str(out), "--country-id", "3"]) == 2
    err = capsys.readouterr().err
    assert "sex: 1 row(s) with unknown code(s) 'X'" in err and "appear more than once" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:  # argparse: --country-id is required
        frax_cli.main(["export", str(cohort), "--out", str(out)])
    assert exit_.value.code == 2
    assert (
        frax_cli.main(["import", str(tmp_path / "nope.csv"), "--cohort", str(tmp_path / "c.csv"), "--out", str(merged)])
        == 2
    )
