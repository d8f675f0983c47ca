"""Harrell's C as R ``survival::concordance`` computes it for a Cox fit, in O(n log n) numpy.

A pair is comparable when the shorter time is an event; a censored time tied with an event time
counts as the longer one; pairs tied on time with both events are not comparable (R's tied.y).
Concordant: the earlier event has the higher risk score. Ties on the score count one half:
``C = (concordant + tied_x / 2) / (concordant + discordant + tied_x)``.
"""

from __future__ import annotations

import numpy as np


def _prefix_counts(pos_limit: np.ndarray, query_rank: np.ndarray, rank_by_pos: np.ndarray, ties: bool = True):
    """For each query: among positions [0, pos_limit) count ranks < query and ranks == query.

    A wavelet matrix over ``rank_by_pos``: one level per bit of the ranks, from the highest; at each
    level the sequence is stably split by that bit (zeros first) and every query's range [s, l)
    follows its own bit into one side, adding the zeros of its range to ``less`` when its bit is 1.
    At the end the range holds exactly the equal ranks. O(n) per level (a cumulative count and a
    stable partition) and O(1) per query and level, so
    O((n + q) log n) in all; the counts are integers, the same as any other way of counting them.
    Without ties in the ranks (``ties=False``) the equal counts are not wanted (returned as 0).
    """
    n = len(rank_by_pos)
    small = n < 2**31 - 1
    vals = np.asarray(rank_by_pos).astype(np.uint32 if small else np.int64)
    q = np.asarray(query_rank, dtype=np.int64)
    top = max(int(vals.max(initial=0)), int(q.max(initial=0)))
    s = np.zeros(len(q), dtype=np.int64)
    lim = np.asarray(pos_limit, dtype=np.int64).copy()
    less = np.zeros(len(q), dtype=np.int64)
    zeros = np.zeros(n + 1, dtype=np.int32 if small else np.int64)  # zeros[i]: zero bits among the first i
    for level in range(max(top.bit_length(), 1) - 1, -1, -1):
        bit = (vals & vals.dtype.type(1 << level)) != 0
        np.cumsum(~bit, out=zeros[1:])
        nz = int(zeros[n])
        qbit = ((q >> level) & 1).astype(bool)
        zl = zeros[lim]
        zs = zeros[s]
        less += np.where(qbit, zl - zs, 0)
        s = np.where(qbit, nz + s - zs, zs)
        lim = np.where(qbit, nz + lim - zl, zl)
        if level:  # the stable split: zeros first, each side in its order
            vals = np.concatenate((vals[~bit], vals[bit]))
    equal = lim - s if ties else np.zeros(len(q), dtype=np.int64)
    return less, equal


def concordance_counts(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, time_order: np.ndarray | None = None
) -> np.ndarray:
    """(concordant, discordant, tied_x) counts of one stratum, O(n log n).

    ``time_order``: the ascending argsort of ``time`` when the caller has it (shared with the Cox
    fit of the same outcome); then only the risk score is sorted here. The counts are integers
    and do not depend on the order of tied times, so they are the same either way.
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    n = len(time)
    if n < 2 or not event.any():
        return np.zeros(3)
    rank = np.unique(np.asarray(risk, float), return_inverse=True)[1].astype(np.int64)
    if time_order is None:
        order = np.argsort(-time, kind="stable")  # time descending
        tk = np.unique(time, return_inverse=True)[1].astype(np.int64)
    else:
        order = np.asarray(time_order)[::-1]
        # dense rank of the time (np.unique's inverse) from the sorted values, no second sort
        ts = time[time_order]
        dense = np.cumsum(np.concatenate(([0], (ts[1:] != ts[:-1]).astype(np.int64))))
        tk = np.empty(n, dtype=np.int64)
        tk[time_order] = dense
    ev_idx = np.flatnonzero(event)
    # rows with time >= t_i form a prefix of the descending order: all but those with a shorter time
    per_time = np.bincount(tk)
    shorter = np.cumsum(per_time) - per_time
    limit = n - shorter[tk[ev_idx]]
    has_ties = rank.max() + 1 < n
    less, equal = _prefix_counts(limit, rank[ev_idx], rank[order], ties=has_ties)
    if not has_ties:
        equal = np.ones(len(ev_idx), dtype=np.int64)  # each event ties with itself only
    # remove pairs with another event at the same time (and the event itself): only the sums over
    # the events are needed, so they are read off the events sorted by (time, risk), run by run
    K = np.int64(n + 2)
    ekeys = np.sort(tk[ev_idx] * K + rank[ev_idx])
    pos = np.arange(len(ekeys), dtype=np.int64)
    new_key = np.concatenate(([True], ekeys[1:] != ekeys[:-1]))
    etime = ekeys // K
    new_time = np.concatenate(([True], etime[1:] != etime[:-1]))
    key_start = np.maximum.accumulate(np.where(new_key, pos, 0))
    time_start = np.maximum.accumulate(np.where(new_time, pos, 0))
    less_t = key_start - time_start  # events at the same time with a lower risk
    equal_t = np.diff(np.append(np.flatnonzero(new_key), len(ekeys)))  # per run; summed below by run length
    tied_events = np.diff(np.append(np.flatnonzero(new_time), len(ekeys)))
    equal_t = (equal_t * equal_t).sum()  # each event of a run of r ties with the r events of its run
    tied_events = (tied_events * tied_events).sum()
    conc = less.sum() - less_t.sum()
    tied = equal.sum() - equal_t
    total = limit.sum() - tied_events
    return np.array([conc, total - conc - tied, tied], dtype=float)


def harrell_c(time, event, risk, strata=None, time_order: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Harrell's C (pairs within strata only) and the (concordant, discordant, tied_x) counts.

    O(n log n). ``time_order`` (optional): the stable ascending argsort of ``time``, shared with
    the Cox fit; each stratum takes its own from it in O(n).
    """
    time = np.asarray(time, float)
    event = np.asarray(event)
    risk = np.asarray(risk, float)
    if strata is None:
        counts = concordance_counts(time, event, risk, time_order)
    else:
        strata = np.asarray(strata)
        counts = np.zeros(3)
        for s in np.unique(strata):
            m = strata == s
            sub_order = None
            if time_order is not None:
                from epi_spineage.stats._survdata import subset_order

                sub_order = subset_order(time_order, m)
            counts += concordance_counts(time[m], event[m], risk[m], sub_order)
    denom = counts.sum()
    c = (counts[0] + counts[2] / 2.0) / denom if denom > 0 else np.nan
    return float(c), counts
