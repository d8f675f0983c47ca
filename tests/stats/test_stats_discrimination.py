"""AUROC, DeLong CI and the paired DeLong test against pROC 1.18 (tests/reference/proc_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epi_spineage.errors import UserError
from epi_spineage.stats import auc_ci, delong_test, roc_curve
from epi_spineage.stats.discrimination import delong_placements

REF = Path(__file__).resolve().parents[1] / "reference"
RTOL = 1e-9


def _load(name):
    data = pd.read_csv(REF / f"proc_{name}.csv")
    return data, json.loads((REF / f"proc_{name}.json").read_text())


ASAH, ASAH_REF = _load("asah")
SIM, SIM_REF = _load("sim")
CASES = [("asah", k) for k in ASAH_REF["single"]] + [("sim", k) for k in SIM_REF["single"] if k != "tiny"]
PAIRS = [("asah", k) for k in ASAH_REF["paired"]] + [("sim", k) for k in SIM_REF["paired"] if k != "tiny"]


def _data(which):
    return (ASAH, ASAH_REF, "outcome") if which == "asah" else (SIM, SIM_REF, "y")


def _column(key):
    return key.split("_")[0] if key.endswith(("_90", "_gt")) else key


@pytest.mark.parametrize("which,key", CASES)
def test_single_auc_matches_proc(which, key):
    data, ref, outcome = _data(which)
    r_ = ref["single"][key]
    res = auc_ci(data[outcome], data[_column(key)], direction=r_["direction"], ci_level=r_["level"])
    np.testing.assert_allclose(res.estimate, r_["auc"], rtol=RTOL)
    np.testing.assert_allclose(res.std_error**2, r_["var"], rtol=RTOL)
    np.testing.assert_allclose([res.ci_low, res.ci_high], [r_["ci_low"], r_["ci_high"]], rtol=RTOL)
    assert (res.n_cases, res.n_controls, res.n_dropped) == (r_["n_cases"], r_["n_controls"], r_["n_dropped"])


@pytest.mark.parametrize("which,key", PAIRS)
def test_paired_delong_matches_proc(which, key):
    data, ref, outcome = _data(which)
    r_ = ref["paired"][key]
    res = delong_test(
        data[outcome],
        data[r_["a"]],
        data[r_["b"]],
        names=(r_["a"], r_["b"]),
        ci_level=r_["level"],
        direction=r_["direction"],
    )
    np.testing.assert_allclose([res.auc_a.estimate, res.auc_b.estimate], [r_["auc_a"], r_["auc_b"]], rtol=RTOL)
    np.testing.assert_allclose(res.statistic, r_["z"], rtol=RTOL)
    np.testing.assert_allclose(res.p_value, r_["p_value"], rtol=RTOL)
    np.testing.assert_allclose([res.ci_low, res.ci_high], [r_["ci_low"], r_["ci_high"]], rtol=RTOL)
    assert res.n_dropped == r_["n_dropped"]


def test_tiny_groups_match_proc():
    y = [1, 1, 0, 0, 0]
    single = SIM_REF["single"]["tiny"]
    res = auc_ci(y, [3, 2, 2, 1, 2])
    np.testing.assert_allclose(
        [res.ci_low, res.estimate, res.ci_high], [single["ci_low"], single["auc"], single["ci_high"]], rtol=RTOL
    )
    pair = SIM_REF["paired"]["tiny"]
    t = delong_test(y, [3, 2, 2, 1, 2], [1, 3, 2, 2, 1])
    np.testing.assert_allclose(
        [t.statistic, t.p_value, t.ci_low, t.ci_high],
        [pair["z"], pair["p_value"], pair["ci_low"], pair["ci_high"]],
        rtol=RTOL,
    )


def _naive_auc(y, s):
    x, c = s[y == 1], s[y == 0]
    diff = x[:, None] - c[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(), ((diff > 0) + 0.5 * (diff == 0))


def test_placements_equal_the_pairwise_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 6, 300).astype(float)  # heavy ties
    theta, v10, v01 = delong_placements(s[y == 1], s[y == 0])
    naive, psi = _naive_auc(y, s)
    np.testing.assert_allclose(theta, naive, rtol=1e-12)
    np.testing.assert_allclose(v10, psi.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(v01, psi.mean(axis=0), rtol=1e-12)


def test_invariants_ci_brackets_and_self_comparison():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 500)
    a = rng.normal(size=500) + y
    b = np.round(rng.normal(size=500) + 0.4 * y, 1)
    r = auc_ci(y, a)
    assert 0 <= r.ci_low <= r.estimate <= r.ci_high <= 1
    same = delong_test(y, a, a)
    assert same.difference == 0 and same.statistic == 0 and same.p_value == 1
    ab, ba = delong_test(y, a, b), delong_test(y, b, a)
    np.testing.assert_allclose(ab.difference, -ba.difference, rtol=1e-14)
    np.testing.assert_allclose(ab.statistic, -ba.statistic, rtol=1e-12)
    np.testing.assert_allclose(ab.p_value, ba.p_value, rtol=1e-12)
    np.testing.assert_allclose([ab.ci_low, ab.ci_high], [-ba.ci_high, -ba.ci_low], rtol=1e-12)
    assert ab.ci_low <= ab.difference <= ab.ci_high


def test_direction_flips_auc_and_missing_rows_are_counted():
    y = np.array([1, 0, 1, 0, 1, np.nan, 0, 1])
    s = np.array([5, 1, 4, 2, np.nan, 3, 3, 2])
    lt, gt = auc_ci(y, s), auc_ci(y, s, direction=">")
    np.testing.assert_allclose(lt.estimate + gt.estimate, 1.0)
    assert lt.n_dropped == 2 and lt.n_cases == 3 and lt.n_controls == 3
    t = delong_test(y, s, -np.nan_to_num(s, nan=0.0))
    assert t.n_dropped == 2


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError):
        auc_ci([0, 1, 2], [1, 2, 3])
    with pytest.raises(UserError):
        auc_ci([0, 1], [1, 2, 3])
    with pytest.raises(UserError):
        auc_ci([0, 1], [1, 2], direction="auto")


def test_to_frame_is_tidy():
    res = delong_test(ASAH["outcome"], ASAH["s100b"], ASAH["wfns"], names=("s100b", "wfns"))
    f = res.to_frame()
    assert list(f["term"]) == ["s100b", "wfns", "s100b - wfns"]
    assert {"estimate", "ci_low", "ci_high", "p_value", "ci_level", "n", "events"} <= set(f.columns)
    assert f.loc[2, "p_value"] == res.p_value


def test_roc_curve_area_equals_auc():
    curve = roc_curve(SIM["y"], SIM["spine"])
    assert curve["fpr"].is_monotonic_increasing and curve["sensitivity"].is_monotonic_increasing
    area = np.trapezoid(curve["sensitivity"], curve["fpr"])
    np.testing.assert_allclose(area, SIM_REF["single"]["spine"]["auc"], rtol=1e-9)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 3), st.integers(-3, 3)), min_size=4, max_size=40))
def test_fast_delong_equals_pairwise_definition_property(rows):
    y, a, b = (np.array(c, dtype=float) for c in zip(*rows))
    if y.min() == y.max():
        return
    res = delong_test(y, a, b)
    for s, r in ((a, res.auc_a), (b, res.auc_b)):
        naive, psi = _naive_auc(y, s)
        np.testing.assert_allclose(r.estimate, naive, rtol=1e-12)
        m, n = psi.shape
        if m > 1 and n > 1:
            var = psi.mean(axis=1).var(ddof=1) / m + psi.mean(axis=0).var(ddof=1) / n
            np.testing.assert_allclose(r.std_error**2, var, rtol=1e-9, atol=1e-15)
    assert res.ci_low <= res.difference <= res.ci_high or not np.isfinite(res.std_error)


def _placements_before_issue18(values, is_case, m, n):
    """The placements as computed before their temporaries were freed early (issue 18): the reference."""
    total = values.shape[0]
    order = np.argsort(values)
    sv = values[order]
    sc = is_case[order]
    new_group = np.empty(total, dtype=bool)
    new_group[0] = True
    np.not_equal(sv[1:], sv[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], total)
    cum_case = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(sc, out=cum_case[1:])
    cases_before = cum_case[starts]
    cases_in = cum_case[ends] - cases_before
    controls_before = starts - cases_before
    controls_in = (ends - starts) - cases_in
    v10_group = (controls_before + 0.5 * controls_in) / n
    v01_group = (m - cases_before - 0.5 * cases_in) / m
    gid = np.cumsum(new_group) - 1
    placement_sorted = np.where(sc, v10_group[gid], v01_group[gid])
    placement = np.empty(total)
    placement[order] = placement_sorted
    return float(np.dot(v10_group, cases_in) / m), placement


@pytest.mark.parametrize("seed", range(6))
def test_placements_are_bit_for_bit_those_before_the_memory_work(seed):
    from epi_spineage.stats.discrimination import _placements

    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 5000))
    values = rng.normal(size=size)
    if seed % 2:
        values = np.round(values, 1)  # many ties, some groups with cases and controls
    if seed == 5:
        values[:] = 1.0  # one tie group
    is_case = rng.random(size) < rng.uniform(0.05, 0.9)
    is_case[0], is_case[-1] = True, False
    m = int(is_case.sum())
    got, want = _placements(values, is_case, m, size - m), _placements_before_issue18(values, is_case, m, size - m)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    # direction "<" hands the scores over uncopied: the same numbers as multiplying them by 1.0
    y = is_case.astype(float)
    scaled = delong_test(y, values * 1.0, values[::-1] * 1.0)
    assert delong_test(y, values, values[::-1]).difference == scaled.difference


@pytest.mark.parametrize("direction", ["<", ">"])
def test_roc_curve_is_bit_for_bit_the_one_before_the_memory_work(direction):
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.3).astype(float)
    y[::50] = np.nan
    score = np.round(rng.normal(size=3000), 1)
    score[7::61] = np.nan
    sign = 1.0 if direction == "<" else -1.0
    keep = ~np.isnan(y) & ~np.isnan(score)
    yk, sk = y[keep], score[keep] * sign
    m, n = int((yk == 1).sum()), int((yk == 0).sum())
    order = np.argsort(-sk, kind="stable")
    ss, ys = sk[order], yk[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    want = pd.DataFrame(
        {
            "threshold": np.r_[np.inf * sign, ss[last_of_tie] * sign],
            "sensitivity": np.r_[0.0, np.cumsum(ys == 1)[last_of_tie] / m],
            "specificity": np.r_[1.0, 1.0 - np.cumsum(ys == 0)[last_of_tie] / n],
        }
    )
    want["fpr"] = 1.0 - want["specificity"]
    pd.testing.assert_frame_equal(roc_curve(y, score, direction=direction), want, check_exact=True)
