"""Gray's test vs cmprsk's published output (cmprsk tests/test.Rout.save; data regenerated in R).

The published figures have 7 significant digits, so they are compared to a relative 5e-7.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.stats import aalen_johansen
from epi_spineage.stats.survival import gray_test

REF = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def gray():
    data = pd.read_csv(REF / "survival_gray.csv")
    with open(REF / "survival_gray.json") as fh:
        return data, json.load(fh)


def _rows(data, which):
    d = data.copy()
    d["gg2"] = d["gg"]
    d.loc[[4, 9, 49], "gg2"] = np.nan  # R rows 5, 10, 50
    if which == "all":
        return d, "gg"
    if which == "gg2":
        return d, "gg2"
    if which == "first80_gg2":
        return d.iloc[:80], "gg2"
    if which == "not_b":
        return d[d["gg"] != "b"], "gg2"
    raise AssertionError(which)


def test_regenerated_data_reproduce_cuminc_estimates(gray):
    data, gold = gray
    for cause in (1, 2):
        aj = aalen_johansen(data, "ss", "cc", cause=cause, times=[1, 2, 3, 4, 5])
        np.testing.assert_allclose(aj["estimate"], gold["aj_est"][f"cause{cause}"], rtol=1e-12)
        np.testing.assert_allclose(aj["estimate"], gold["cuminc_est"][f"cause{cause}"], rtol=5e-7)


@pytest.mark.parametrize("case", range(5))
def test_gray_matches_cmprsk(gray, case):
    data, gold = gray
    spec = gold["tests"][case]
    d, group = _rows(data, spec["rows"])
    for i, cause in enumerate((1, 2)):
        res = gray_test(d, spec["time"], "cc", group, cause=cause, strata="strt")
        assert res["df"].iloc[0] == spec["df"]
        np.testing.assert_allclose(res["statistic"].iloc[0], spec["stat"][i], rtol=5e-7)
        np.testing.assert_allclose(res["p_value"].iloc[0], spec["p"][i], rtol=5e-6)


def test_gray_properties():
    rng = np.random.default_rng(3)
    n = 400
    g = rng.integers(0, 2, n)
    df = pd.DataFrame(
        {"t": np.ceil(rng.exponential(3, n) * 4) / 4, "g": g, "e": rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])}
    )
    res = gray_test(df, "t", "e", "g")
    assert 0 <= res["p_value"].iloc[0] <= 1 and res["df"].iloc[0] == 1
    # group labels do not matter; relabelling the groups gives the same statistic
    res2 = gray_test(df.assign(g=np.where(g == 1, "x", "y")), "t", "e", "g")
    np.testing.assert_allclose(res2["statistic"], res["statistic"], rtol=1e-10)
    # a strong effect on cause 1 is detected
    t1 = np.where(g == 1, rng.exponential(1, n), rng.exponential(4, n))
    t2 = rng.exponential(4, n)
    tt = np.minimum(t1, t2)
    strong = pd.DataFrame({"t": tt, "g": g, "e": np.where(t1 < t2, 1, 2)})
    assert gray_test(strong, "t", "e", "g")["p_value"].iloc[0] < 1e-6


# cmprsk tests/test.Rout.save: cuminc(ss, cc) variances at t = 1..5, and cuminc(ss, cc, gg, strt)
# estimates and variances by group at t = 1, 2, 3 (NA where the group's follow-up has ended)
CMPRSK_VAR = {
    1: [0.002062112, 0.002957844, 0.004170634, 0.004170634, 0.004170634],
    2: [0.002190305, 0.003273248, 0.004004514, 0.004369940, 0.004369940],
}
CMPRSK_GROUP = {
    ("a", 1): ([0.1311269, 0.2699184, 0.3420625], [0.003922836, 0.009113464, 0.012507959]),
    ("b", 1): ([0.2176471, 0.2615686], [0.005528913, 0.006916070]),
    ("c", 1): ([0.3816280, 0.4889137, 0.5723581], [0.009854126, 0.012351948, 0.015575726]),
    ("a", 2): ([0.2257601, 0.2972171, 0.4415053], [0.005947601, 0.007356628, 0.014479506]),
    ("b", 2): ([0.3117647, 0.5878431], [0.007033454, 0.010927780]),
    ("c", 2): ([0.2160508, 0.2607532, 0.2607532], [0.006497566, 0.007867543, 0.007867543]),
}


def test_cmprsk_variance_matches_cuminc(gray):
    data, _ = gray
    for cause, expected in CMPRSK_VAR.items():
        aj = aalen_johansen(data, "ss", "cc", cause=cause, times=[1, 2, 3, 4, 5], variance="cmprsk")
        np.testing.assert_allclose(aj["std_error"] ** 2, expected, rtol=5e-7)
    for (grp, cause), (est, var) in CMPRSK_GROUP.items():
        aj = aalen_johansen(data, "ss", "cc", group="gg", cause=cause, times=[1, 2, 3], variance="cmprsk")
        aj = aj[aj["group"] == grp].iloc[: len(est)]
        np.testing.assert_allclose(aj["estimate"], est, rtol=5e-7)
        np.testing.assert_allclose(aj["std_error"] ** 2, var, rtol=5e-7)
