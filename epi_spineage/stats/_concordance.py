"""Harrell's C as R ``survival::concordance`` computes it for a Cox fit, in O(n log^2 n) numpy.

A pair is comparable when the shorter time is an event; a censored time tied with an event time
counts as the longer one; pairs tied on time with both events are not comparable (R's tied.y).
Concordant: the earlier event has the higher risk score. Ties on the score count one half:
``C = (concordant + tied_x / 2) / (concordant + discordant + tied_x)``.
"""

from __future__ import annotations

import numpy as np


def _prefix_counts(pos_limit: np.ndarray, query_rank: np.ndarray, rank_by_pos: np.ndarray, ties: bool = True):
    """For each query: among positions [0, pos_limit) count ranks < query and ranks == query.

    Dyadic decomposition of the prefix: at level L the prefix holds block (limit >> (L+1)) * 2 of
    size 2^L when bit L of the limit is set; each level is one sort and one or two searchsorted
    calls (a block's keys start at block * 2^L in the sorted array, as every block is full).
    Without ties in the ranks (``ties=False``) the equal counts are not computed (returned as 0).
    """
    n = len(rank_by_pos)
    less = np.zeros(len(query_rank), dtype=np.int64)
    equal = np.zeros(len(query_rank), dtype=np.int64)
    K = np.int64(n + 2)
    pos = np.arange(n, dtype=np.int64)
    level = 0
    while (1 << level) <= n:
        bit = (pos_limit >> level) & 1
        sel = np.flatnonzero(bit)
        if len(sel):
            keys = np.sort((pos >> level) * K + rank_by_pos)
            block = (pos_limit[sel] >> (level + 1)) * 2
            q = block * K + query_rank[sel]
            # sorted needles make searchsorted cache-friendly (several times faster)
            qo = np.argsort(q)
            qs = q[qo]
            sel_o = sel[qo]
            lo = np.searchsorted(keys, qs, side="left")
            less[sel_o] += lo - (block[qo] << level)
            if ties:
                equal[sel_o] += np.searchsorted(keys, qs, side="right") - lo
        level += 1
    return less, equal


def concordance_counts(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, time_order: np.ndarray | None = None
) -> np.ndarray:
    """(concordant, discordant, tied_x) counts of one stratum, O(n log^2 n).

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
    t_sorted = time[order]
    ev_idx = np.flatnonzero(event)
    # rows with time >= t_i form a prefix of the descending order
    limit = np.searchsorted(-t_sorted, -time[ev_idx], side="right").astype(np.int64)
    has_ties = rank.max() + 1 < n
    less, equal = _prefix_counts(limit, rank[ev_idx], rank[order], ties=has_ties)
    if not has_ties:
        equal = np.ones(len(ev_idx), dtype=np.int64)  # each event ties with itself only
    # remove pairs with another event at the same time (and the event itself)
    K = np.int64(n + 2)
    ekeys = np.sort(tk[ev_idx] * K + rank[ev_idx])
    base = tk[ev_idx] * K
    q = base + rank[ev_idx]
    lo = np.searchsorted(ekeys, q, side="left")
    hi = np.searchsorted(ekeys, q, side="right")
    start = np.searchsorted(ekeys, base, side="left")
    end = np.searchsorted(ekeys, base + K, side="left")
    less_t = lo - start
    equal_t = hi - lo
    tied_events = end - start
    conc = (less - less_t).sum()
    tied = (equal - equal_t).sum()
    total = (limit - tied_events).sum()
    return np.array([conc, total - conc - tied, tied], dtype=float)


def harrell_c(time, event, risk, strata=None, time_order: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Harrell's C (pairs within strata only) and the (concordant, discordant, tied_x) counts.

    O(n log^2 n). ``time_order`` (optional): the stable ascending argsort of ``time``, shared with
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
