"""Discrimination: AUROC with DeLong CI, paired DeLong test, ROC curve (docs/methods.md#auroc).

The DeLong placements come from the fast midrank algorithm of Sun & Xu (2014): a case's placement
V10 is the share of controls below it (ties count one half), a control's V01 the share of cases above
it. One sort of all values per predictor gives both, i.e. O(N log N): counting the cases and
controls before and inside each tie group is the midrank formula ``V10_i = (T_Z,i - T_X,i) / n``
without forming the three rank vectors.

Conventions (the same as ``pROC::roc(direction="<")``):

- ``y`` is 1 for a case and 0 for a control; a higher score means "more likely a case".
  ``direction=">"`` says that lower scores mean "case" (the scores are negated).
- The direction is fixed, never chosen from the data (pROC's "auto" can flip it).
- Single-AUC CI: theta +/- z * sqrt(S), clipped to [0, 1] (pROC ``ci.auc(method="delong")``).
- Subjects missing the outcome or a predictor are dropped; ``n_dropped`` says how many.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword

__all__ = ["AUCResult", "DeLongResult", "auc_ci", "delong_test", "roc_curve", "delong_placements"]


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level!r}")
    return float(special.ndtri(0.5 + level / 2))


def _two_sided_p(z: float) -> float:
    return float(2.0 * special.ndtr(-abs(z))) if np.isfinite(z) else float("nan")


def _as_outcome(y) -> np.ndarray:
    """Outcome as float (1 case, 0 control, NaN missing); anything else is a user error."""
    raw = np.asarray(y).ravel()
    if raw.dtype.kind in "biuf":
        arr = raw.astype(float)
    else:
        arr = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isnan(arr) & (arr != 0) & (arr != 1)
    if bad.any():
        raise UserError(f"the outcome must be 0/1 (case = 1); found {np.unique(arr[bad])[:5].tolist()}")
    return arr


def _as_score(score, n: int, name: str) -> np.ndarray:
    arr = np.asarray(score, dtype=float).ravel()
    if arr.shape[0] != n:
        raise UserError(f"{name} has {arr.shape[0]} values but the outcome has {n}")
    return arr


def _signed(score: np.ndarray, sign: float) -> np.ndarray:
    """``score * sign``; for ``direction="<"`` (sign 1) the scores themselves, not an N-long copy (x * 1.0 is x)."""
    return score if sign == 1.0 else score * sign


def _check_direction(direction: str) -> float:
    if direction == "<":
        return 1.0
    if direction == ">":
        return -1.0
    raise UserError(f"direction must be '<' (controls < cases) or '>' (controls > cases), got {direction!r}")


def delong_placements(cases: np.ndarray, controls: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the DeLong placements of cases (V10) and controls (V01); ties count 1/2.

    ``V10_i`` = (controls below case i + half of those tied with it) / n, i.e. ``(T_Z - T_X) / n``
    in Sun & Xu's midrank notation; ``V01_j`` = (cases above control j + half the tied) / m.
    """
    m = cases.shape[0]
    values = np.concatenate([cases, controls])
    is_case = np.zeros(values.shape[0], dtype=bool)
    is_case[:m] = True
    theta, placement = _placements(values, is_case, m, values.shape[0] - m)
    return theta, placement[:m], placement[m:]


def _placements(values: np.ndarray, is_case: np.ndarray, m: int, n: int) -> tuple[float, np.ndarray]:
    """One sort of all values; each subject's placement (V10 for a case, V01 for a control), in input order.

    Walking the sorted values, the number of controls (cases) before a tie group and inside it give
    the midrank differences of Sun & Xu directly, without ranking cases and controls separately.
    O(N log N) time; memory: a few arrays of N (each temporary is freed as soon as it is used, so at
    most about six are alive at once: ~50 MB at a million subjects).
    """
    total = values.shape[0]
    order = np.argsort(values)
    sv = values[order]
    new_group = np.empty(total, dtype=bool)
    new_group[0] = True
    np.not_equal(sv[1:], sv[:-1], out=new_group[1:])
    del sv
    sc = is_case[order]
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], total)
    cum_case = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(sc, out=cum_case[1:])
    cases_before = cum_case[starts]
    cases_in = cum_case[ends] - cases_before
    del cum_case
    controls_in = (ends - starts) - cases_in
    del ends
    controls_before = starts - cases_before
    del starts
    v10_group = (controls_before + 0.5 * controls_in) / n
    del controls_before, controls_in
    v01_group = (m - cases_before - 0.5 * cases_in) / m
    del cases_before
    theta = float(np.dot(v10_group, cases_in) / m)
    del cases_in
    gid = np.cumsum(new_group)
    gid -= 1
    del new_group
    # np.where(sc, v10_group[gid], v01_group[gid]) without its two N-long operands
    placement_sorted = v01_group[gid]
    placement_sorted[sc] = v10_group[gid[sc]]
    del gid, v10_group, v01_group
    placement = np.empty(total)
    placement[order] = placement_sorted
    return theta, placement


@dataclass(frozen=True)
class AUCResult:
    """AUROC of one predictor with its DeLong CI.

    Attributes: ``estimate`` (AUC), ``std_error`` (sqrt of the DeLong variance S), ``ci_low``,
    ``ci_high`` (normal CI clipped to [0, 1]), ``ci_level``, ``n_cases``, ``n_controls``,
    ``n_dropped`` (rows missing the outcome or the score), ``direction``, ``term`` (a name).
    """

    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_cases: int
    n_controls: int
    n_dropped: int
    direction: str = "<"
    term: str = "score"
    method: str = "DeLong (Sun & Xu fast midrank)"

    @property
    def n(self) -> int:
        return self.n_cases + self.n_controls

    def to_frame(self) -> pd.DataFrame:
        """One row: analysis, term, estimate, std_error, ci_low, ci_high, ci_level, n, events,
        n_controls, n_dropped, direction, method."""
        return pd.DataFrame(
            [
                {
                    "analysis": "auroc",
                    "term": self.term,
                    "estimate": self.estimate,
                    "std_error": self.std_error,
                    "ci_low": self.ci_low,
                    "ci_high": self.ci_high,
                    "ci_level": self.ci_level,
                    "n": self.n,
                    "events": self.n_cases,
                    "n_controls": self.n_controls,
                    "n_dropped": self.n_dropped,
                    "direction": self.direction,
                    "method": self.method,
                }
            ]
        )


def _auc_from_placements(theta, v10, v01, level, direction, term, n_dropped) -> AUCResult:
    m, n = v10.shape[0], v01.shape[0]
    if m <= 1 or n <= 1:  # pROC returns NA: the placement variances are undefined
        se = lo = hi = float("nan")
    else:
        s = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
        se = float(np.sqrt(s))
        half = _z(level) * se
        lo, hi = max(theta - half, 0.0), min(theta + half, 1.0)
    return AUCResult(theta, se, lo, hi, level, m, n, n_dropped, direction, term)


def _complete(y: np.ndarray, *scores: np.ndarray):
    """Complete cases: the kept scores, the case mask among them, and how many rows were dropped."""
    keep = ~np.isnan(y)
    for s in scores:
        keep &= ~np.isnan(s)
    n_dropped = int(y.shape[0] - keep.sum())
    if n_dropped:
        return [s[keep] for s in scores], y[keep] == 1, n_dropped
    return list(scores), y == 1, 0


def _fit(values: np.ndarray, is_case: np.ndarray, m: int, n: int):
    theta, placement = _placements(values, is_case, m, n)
    return theta, placement[is_case], placement[~is_case]


@ci_level_keyword
def auc_ci(y, score, direction: str = "<", ci_level: float = 0.95, *, name: str = "score") -> AUCResult:
    """AUROC of ``score`` for the 0/1 outcome ``y`` with the DeLong CI.

    ``direction="<"``: controls have lower scores than cases (pROC's ``direction="<"``).
    Rows missing ``y`` or ``score`` are dropped and counted in ``n_dropped``. With one case or one
    control or fewer the AUC is returned (NaN when a class is empty) with NaN CI, as pROC does.
    """
    sign = _check_direction(direction)
    yy = _as_outcome(y)
    s = _signed(_as_score(score, yy.shape[0], "score"), sign)
    [sk], case, n_dropped = _complete(yy, s)
    m = int(case.sum())
    n = int(case.size - m)
    if m == 0 or n == 0:
        return AUCResult(
            float("nan"), float("nan"), float("nan"), float("nan"), ci_level, m, n, n_dropped, direction, name
        )
    theta, v10, v01 = _fit(sk, case, m, n)
    return _auc_from_placements(theta, v10, v01, ci_level, direction, name, n_dropped)


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong comparison of two AUCs measured on the same subjects.

    ``difference`` = AUC(a) - AUC(b); ``std_error`` = sigma = sqrt(S11 + S22 - 2 S12);
    ``statistic`` = z = difference / sigma (0 when both are 0); ``p_value`` = 2 Phi(-|z|);
    ``ci_low``/``ci_high``: difference +/- z_level * sigma; ``correlation`` = S12 / sqrt(S11 S22).
    ``auc_a``/``auc_b`` are the single-AUC results on the same complete cases.
    """

    auc_a: AUCResult
    auc_b: AUCResult
    difference: float
    std_error: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    ci_level: float
    correlation: float
    n_cases: int
    n_controls: int
    n_dropped: int
    names: tuple[str, str] = field(default=("a", "b"))
    method: str = "paired DeLong (Sun & Xu fast midrank)"

    @property
    def n(self) -> int:
        return self.n_cases + self.n_controls

    def to_frame(self) -> pd.DataFrame:
        """Three rows: the AUC of each predictor and their difference (term ``"a - b"``).

        Columns: analysis, term, estimate, std_error, statistic, p_value, ci_low, ci_high, ci_level,
        n, events, n_controls, n_dropped, method. ``statistic``/``p_value`` are set on the difference row.
        """
        rows = []
        for r in (self.auc_a, self.auc_b):
            row = r.to_frame().iloc[0].to_dict()
            row.update(analysis="delong_paired", statistic=np.nan, p_value=np.nan, method=self.method)
            rows.append(row)
        rows.append(
            {
                "analysis": "delong_paired",
                "term": f"{self.names[0]} - {self.names[1]}",
                "estimate": self.difference,
                "std_error": self.std_error,
                "statistic": self.statistic,
                "p_value": self.p_value,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "ci_level": self.ci_level,
                "n": self.n,
                "events": self.n_cases,
                "n_controls": self.n_controls,
                "n_dropped": self.n_dropped,
                "direction": self.auc_a.direction,
                "method": self.method,
            }
        )
        cols = [
            "analysis",
            "term",
            "estimate",
            "std_error",
            "statistic",
            "p_value",
            "ci_low",
            "ci_high",
            "ci_level",
            "n",
            "events",
            "n_controls",
            "n_dropped",
            "direction",
            "method",
        ]
        return pd.DataFrame(rows)[cols]


@ci_level_keyword
def delong_test(y, score_a, score_b, names=None, ci_level: float = 0.95, direction: str = "<") -> DeLongResult:
    """Paired DeLong test of AUC(score_a) vs AUC(score_b) on the same subjects.

    Subjects missing ``y`` or either score are dropped (``n_dropped``), so both AUCs use the same
    cases and controls, as ``pROC::roc.test(response, predictor1, predictor2, method="delong",
    paired=TRUE)`` does. Both scores share ``direction``.
    """
    names = tuple(names) if names is not None else ("a", "b")
    if len(names) != 2:
        raise UserError("names must hold two labels")
    sign = _check_direction(direction)
    yy = _as_outcome(y)
    a = _signed(_as_score(score_a, yy.shape[0], "score_a"), sign)
    b = _signed(_as_score(score_b, yy.shape[0], "score_b"), sign)
    (ak, bk), case, n_dropped = _complete(yy, a, b)
    m = int(case.sum())
    n = int(case.size - m)
    nan = float("nan")
    if m == 0 or n == 0:
        empty = [AUCResult(nan, nan, nan, nan, ci_level, m, n, n_dropped, direction, nm) for nm in names]
        return DeLongResult(empty[0], empty[1], nan, nan, nan, nan, nan, nan, ci_level, nan, m, n, n_dropped, names)
    ta, v10a, v01a = _fit(ak, case, m, n)
    tb, v10b, v01b = _fit(bk, case, m, n)
    auc_a = _auc_from_placements(ta, v10a, v01a, ci_level, direction, names[0], n_dropped)
    auc_b = _auc_from_placements(tb, v10b, v01b, ci_level, direction, names[1], n_dropped)
    d = ta - tb
    if m <= 1 or n <= 1:
        return DeLongResult(auc_a, auc_b, d, nan, nan, nan, nan, nan, ci_level, nan, m, n, n_dropped, names)
    s10 = np.cov(np.vstack([v10a, v10b]), ddof=1)
    s01 = np.cov(np.vstack([v01a, v01b]), ddof=1)
    s = s10 / m + s01 / n
    var = float(s[0, 0] + s[1, 1] - 2.0 * s[0, 1])
    sigma = float(np.sqrt(max(var, 0.0)))
    if sigma == 0.0:
        # pROC: identical AUCs with zero variance give z = 0 (not NaN); otherwise infinite z.
        z = 0.0 if d == 0 else float(np.sign(d) * np.inf)
    else:
        z = d / sigma
    p = _two_sided_p(z) if np.isfinite(z) else 0.0
    half = _z(ci_level) * sigma
    denom = np.sqrt(s[0, 0] * s[1, 1])
    corr = float(s[0, 1] / denom) if denom > 0 else nan
    return DeLongResult(auc_a, auc_b, d, sigma, z, p, d - half, d + half, ci_level, corr, m, n, n_dropped, names)


def roc_curve(y, score, direction: str = "<") -> pd.DataFrame:
    """Empirical ROC curve for plotting, one row per distinct threshold (plus the two corners).

    Columns: ``threshold`` (a subject is called positive when its score >= threshold, for
    ``direction="<"``; <= for ``">"``), ``sensitivity``, ``specificity``, ``fpr`` (1 - specificity).
    Sorted by increasing ``fpr``; rows missing ``y`` or ``score`` are dropped. O(N log N) time (one sort);
    memory O(N): the curve itself (one row per distinct score) and a few N-long temporaries.
    """
    sign = _check_direction(direction)
    yy = _as_outcome(y)
    s = _signed(_as_score(score, yy.shape[0], "score"), sign)
    keep = ~np.isnan(yy) & ~np.isnan(s)
    yk, sk = yy[keep], s[keep]
    del yy, s, keep
    m, n = int((yk == 1).sum()), int((yk == 0).sum())
    if m == 0 or n == 0:
        raise UserError("the ROC curve needs at least one case and one control")
    # each N-long temporary is freed once used: a few arrays of N alive at a time, not a dozen
    order = np.argsort(-sk, kind="stable")
    ss = sk[order]
    del sk
    is_case = yk[order] == 1
    del yk, order
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    thr = ss[last_of_tie] * sign
    del ss
    tp = np.cumsum(is_case)[last_of_tie]
    np.logical_not(is_case, out=is_case)  # ys == 0: the controls (y is 0 or 1 once NaN is dropped)
    fp = np.cumsum(is_case)[last_of_tie]
    del is_case, last_of_tie
    out = pd.DataFrame(
        {
            "threshold": np.r_[np.inf * sign, thr],
            "sensitivity": np.r_[0.0, tp / m],
            "specificity": np.r_[1.0, 1.0 - fp / n],
        }
    )
    out["fpr"] = 1.0 - out["specificity"]
    return out  # a RangeIndex already: no reset_index copy
