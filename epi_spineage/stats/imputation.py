"""Multiple imputation by chained equations and Rubin's rules (a sensitivity analysis to complete cases).

Imputation (``impute_mice``), default ``method="smcfcs"``: substantive-model-compatible fully
conditional specification (Bartlett, Seaman, White, Carpenter, Stat Methods Med Res 2015;24:462-87).
Each of ``m`` independent chains cycles ``n_iter`` times over the incomplete columns; for column j it
(1) fits a Cox model of each outcome on all the columns (current values) and draws its coefficients
from N(beta_hat, V), with the Breslow baseline hazard under the draw; (2) fits the covariate model of
column j on the other columns (normal linear with mice's Bayesian draw ``sigma* = sqrt(RSS / chi2(df))``,
``beta* = beta_hat + sigma* L z``; logistic with ``beta* ~ N(beta_hat, I^-1)`` for a 0/1 or two-level
column); (3) draws each missing value from covariate model x outcome likelihood, ``N(z; mu, s^2)
prod_k exp(D_k lp_k(z) - H0_k(T_k) exp(lp_k(z)))``: the event terms tilt the normal to mean
``mu + s^2 sum_k D_k beta_kj`` and the survival terms are accepted by rejection (exactly; a binary
column is drawn from its two-point conditional). The chain starts from random observed values and one
White-Royston draw (below), which it then corrects.

Why not the White and Royston approximation (Stat Med 2009;28:1982-98), which ``method="pmm"`` keeps:
R mice's default predictive mean matching (type-1, Bayesian parameter draw) with the event indicator
and the Nelson-Aalen ``H(T)`` as predictors. It matches R mice (150 seeds of
``benchmarks/mi_coverage.py``: mice 3.15 gave mean log HR 0.4255, empirical SD 0.078, mean SE 0.066,
coverage 0.90; this module's pmm 0.4275, 0.076, 0.066, 0.90 over 60 seeds), and the shortfall is the
method's: with a large covariate effect ``p(z | x, T, D)`` is not linear in ``(x, D, H(T))``, the
incomplete confounder's log HR is attenuated (0.36 for a planted 0.405 at n = 5000) and the exposure's
biased up (+0.016 over the full-data fit), while SMC-FCS gives +0.005 (SE 0.006) and 0.403.
Over 285 seeds SMC-FCS covered the planted HR in 0.933 (MC SE 0.015) of cohorts (pmm: 0.90 over 60)
(``benchmarks/mi_coverage.py``; tables in docs/methods.md#multiple-imputation).

Imputed sets are consistent for an analysis Cox model on (a subset of) ``columns``: give every
variable of the analysis model in ``columns``. The chains are seeded from one
``numpy.random.SeedSequence``, so a seed gives the same imputed sets on every run. Cost per chain:
``n_iter`` x (incomplete columns) x (one Cox fit per outcome + one regression), each O(n p^2) after
one O(n log n) sort per outcome: linear in n.

Pooling (``pool_rubin``): Rubin's rules (Rubin 1987) with the Barnard-Rubin small-sample degrees of
freedom (Barnard and Rubin, Biometrika 1999;86:948-55), exactly as R ``mice::pool``:
``qbar = mean(Q)``, ``ubar = mean(U)``, ``b = var(Q)`` (ddof 1), ``t = ubar + (1 + 1/m) b``,
``lambda = (1 + 1/m) b / t`` (floored at 1e-4), ``df_old = (m - 1) / lambda^2``,
``df_obs = (dfcom + 1) / (dfcom + 3) dfcom (1 - lambda)``, ``df = df_old df_obs / (df_old + df_obs)``
(``df_old`` when ``dfcom`` is infinite), ``riv = (1 + 1/m) b / ubar``,
``fmi = (riv + 2 / (df + 3)) / (riv + 1)``; intervals and p values from Student's t with ``df``.
For a Cox model mice takes the complete-data degrees of freedom as ``events - number of
coefficients`` (its ``get.dfcom``: broom's ``glance`` of a ``coxph`` has no residual df), and
``mi_cox_per_sd`` does the same; checked against ``mice::pool`` in ``tests/reference/mi_reference.R``.

statsmodels (``method="pmm"``) is imported inside the functions, so ``import epi_spineage.stats`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
from epi_spineage.stats._compat import ci_level_keyword
from epi_spineage.stats._survdata import require_columns

__all__ = ["MIData", "impute_mice", "mi_cox_per_sd", "nelson_aalen_at", "pool_rubin"]

DEFAULT_M = 20
DEFAULT_SEED = 20261130


@dataclass
class MIData:
    """Multiply imputed data.

    ``datasets``: the ``m`` completed copies of the input frame (every column kept, only the
    imputed columns filled). ``original``: the input. ``missing``: one row per imputed variable
    with ``variable``, ``n`` (rows), ``n_missing``, ``share_missing``. ``imputed_rows``: boolean
    mask of rows with at least one imputed value. ``predictors``: the columns of the imputation
    model, outcome terms included (``Cox(<time>, <event>)`` for the default method; the ``<event>``
    indicator and ``H(<time>)`` cumulative hazard for ``method="pmm"``). ``method``: a description,
    noting any draws kept after 1000 rejections (none expected: an extreme, e.g. a censored row of
    very high risk whose outcome no plausible value explains).
    """

    datasets: list[pd.DataFrame]
    original: pd.DataFrame
    missing: pd.DataFrame
    imputed_rows: np.ndarray
    predictors: list[str]
    m: int
    n_iter: int
    seed: int
    method: str = ""
    columns: list[str] = field(default_factory=list)


def nelson_aalen_at(time, event) -> np.ndarray:
    """Nelson-Aalen cumulative hazard ``H(t_i) = sum_{t_k <= t_i} d_k / Y_k`` at each row's own time."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    uniq, inv, counts = np.unique(t, return_inverse=True, return_counts=True)
    d = np.bincount(inv, weights=e, minlength=len(uniq))
    at_risk = len(t) - np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.cumsum(d / at_risk)[inv]


def _pmm_donors(pred_obs: np.ndarray, pred_miss: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Index (into the observed rows) of a random one of the ``k`` nearest predictions for each missing row."""
    order = np.argsort(pred_obs, kind="stable")
    sp = pred_obs[order]
    k = max(1, min(int(k), len(sp)))
    pos = np.searchsorted(sp, pred_miss)
    # the k nearest lie within k places either side of the insertion point
    cand = pos[:, None] + np.arange(-k, k)[None, :]
    valid = (cand >= 0) & (cand < len(sp))
    cand = np.clip(cand, 0, len(sp) - 1)
    dist = np.where(valid, np.abs(sp[cand] - pred_miss[:, None]), np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    pick = nearest[np.arange(len(pred_miss)), rng.integers(0, k, len(pred_miss))]
    return order[cand[np.arange(len(pred_miss)), pick]]


def _mice_data_class():
    """statsmodels' MICEData with mice's Bayesian parameter draw and type-1 predictive mean matching."""
    from statsmodels.imputation.mice import MICEData

    class _MiceData(MICEData):
        def perturb_params(self, vname):
            endog, exog, init_kwds, fit_kwds = self.get_fitting_data(vname)
            model = self.model_class[vname](endog, exog, **init_kwds)
            res = model.fit(**fit_kwds)
            self.models[vname], self.results[vname] = model, res
            df = max(float(res.df_resid), 1.0)
            sigma = np.sqrt(float(res.ssr) / self.rng.chisquare(df))
            xtx_inv = np.asarray(res.normalized_cov_params, dtype=float)
            try:
                chol = np.linalg.cholesky(xtx_inv)
            except np.linalg.LinAlgError:  # near-singular design: mice adds a small ridge too
                chol = np.linalg.cholesky(xtx_inv + 1e-8 * np.eye(len(xtx_inv)))
            self.params[vname] = np.asarray(res.params, float) + sigma * chol @ self.rng.standard_normal(len(xtx_inv))

        def impute_pmm(self, vname):
            endog_obs, exog_obs, exog_miss, kw_obs, kw_miss = self.get_split_data(vname)
            model = self.models[vname]
            pred_obs = self._get_predicted(model.predict(np.asarray(self.results[vname].params), exog_obs, **kw_obs))
            pred_miss = self._get_predicted(model.predict(self.params[vname], exog_miss, **kw_miss))
            donors = _pmm_donors(np.asarray(pred_obs, float), np.asarray(pred_miss, float), self.k_pmm, self.rng)
            self._store_changes(vname, np.asarray(endog_obs, dtype=float).ravel()[donors])

    return _MiceData


def _ols_draw(A: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Bayesian linear-regression draw (mice's ``.norm.draw``): ``sigma* = sqrt(RSS / chi2(df))``,
    ``beta* = beta_hat + sigma* L z`` with ``L L' = (A'A)^-1``. Normal equations (A is tall and thin:
    numpy's SVD-based lstsq was 80 ms for 3000 x 8 on a busy machine, this well under 1 ms)."""
    xtx = A.T @ A
    try:
        inv = np.linalg.inv(xtx)
        chol = np.linalg.cholesky(inv)
    except np.linalg.LinAlgError:  # near-singular design: a small ridge, as mice's
        inv = np.linalg.inv(xtx + 1e-5 * np.diag(np.diag(xtx) + 1e-12))
        chol = np.linalg.cholesky(inv)
    beta = inv @ (A.T @ y)
    rss = float(((y - A @ beta) ** 2).sum())
    df = max(len(y) - A.shape[1], 1)
    sigma = np.sqrt(rss / rng.chisquare(df))
    return beta + sigma * chol @ rng.standard_normal(len(beta)), float(sigma)


def _logit_draw(A: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logistic-regression draw ``beta* ~ N(beta_hat, I(beta_hat)^-1)`` (mice's ``logreg``; Newton fit,
    a small ridge keeps it finite under separation)."""
    p = A.shape[1]
    beta = np.zeros(p)
    ridge = 1e-4 * np.eye(p)
    for _ in range(25):
        mu = _expit(A @ beta)
        info = (A * (mu * (1.0 - mu))[:, None]).T @ A + ridge
        step = np.linalg.solve(info, A.T @ (y - mu) - ridge @ beta)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    mu = _expit(A @ beta)
    info = (A * (mu * (1.0 - mu))[:, None]).T @ A + ridge
    return beta + np.linalg.cholesky(np.linalg.inv(info)) @ rng.standard_normal(p)


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Outcome:
    """One substantive Cox model: outcome ``(time, event)`` on every imputation-model column."""

    def __init__(self, time: np.ndarray, event: np.ndarray):
        self.time, self.event = time, event
        self.order = np.argsort(time, kind="stable")
        ts = time[self.order]
        # rows sharing a time share a risk set: first sorted position of each row's time
        self.first = np.searchsorted(ts, ts, side="left")
        self.last = np.searchsorted(ts, ts, side="right") - 1
        self.beta = np.zeros(0)
        self.lp = np.zeros(0)
        self.H0 = np.zeros(0)

    def draw(self, Z: np.ndarray, rng: np.random.Generator) -> None:
        """Fit the Cox model to the current data, draw ``beta* ~ N(beta_hat, V)``, and set the Breslow
        cumulative baseline hazard at each row's own time under ``beta*`` (centred linear predictor)."""
        from epi_spineage.stats._coxfit import _fit_cox  # the caller holds BLAS at one thread

        fit = _fit_cox(Z, self.time, self.event, None, "breslow", 20, 1e-9, self.order)
        var = np.nan_to_num(np.asarray(fit.var, float), nan=0.0, posinf=0.0, neginf=0.0)
        try:
            root = np.linalg.cholesky(var)
        except np.linalg.LinAlgError:
            # singular (collinear columns): a symmetric square root, no draw along the aliased direction
            w, vec = np.linalg.eigh(0.5 * (var + var.T))
            root = vec * np.sqrt(np.clip(w, 0.0, None))
        beta = np.nan_to_num(np.asarray(fit.beta, float)) + root @ rng.standard_normal(len(var))
        lp = Z @ beta
        lp = lp - lp.mean()
        self.beta, self.lp, self.H0 = beta, lp, self.breslow(lp)

    def breslow(self, lp: np.ndarray) -> np.ndarray:
        """Breslow cumulative baseline hazard ``sum_{t_k <= t_i} d_k / sum_{t_j >= t_k} exp(lp_j)`` at
        each row's own time (Nelson-Aalen when ``lp`` is 0)."""
        w = np.exp(lp)[self.order]
        at_risk = np.cumsum(w[::-1])[::-1][self.first]  # over the rows with time >= this row's
        d_at = np.bincount(self.first, weights=self.event[self.order].astype(float), minlength=len(w))
        cum = np.cumsum(np.where(d_at > 0, d_at / np.where(at_risk > 0, at_risk, 1.0), 0.0))
        H0 = np.empty(len(w))
        H0[self.order] = cum[self.last]
        return H0

    def loglik(self, rows: np.ndarray, j: int, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """``log f(T, D | z_j = new)`` up to a constant for ``rows`` (Cox: ``D lp - H0(T) exp(lp)``)."""
        lp = self.lp[rows] + self.beta[j] * (new - old)
        return self.event[rows] * lp - self.H0[rows] * np.exp(lp)


def _smcfcs_chain(
    X: np.ndarray,
    binary: list[bool],
    outcomes: list[tuple[np.ndarray, np.ndarray]],
    n_iter: int,
    rng: np.random.Generator,
    max_reject: int = 1000,
) -> tuple[np.ndarray, int]:
    """One chain of substantive-model-compatible FCS (Bartlett et al. 2015); returns the completed
    matrix and the number of rejection-sampling draws that hit ``max_reject`` (kept at the last proposal)."""
    Z = X.copy()
    miss = np.isnan(X)
    todo = [j for j in range(X.shape[1]) if miss[:, j].any()]
    models = [_Outcome(t, e) for t, e in outcomes]
    n = len(Z)
    ones = np.ones((n, 1))
    for j in todo:  # random observed values first, as mice and smcfcs
        Z[miss[:, j], j] = rng.choice(X[~miss[:, j], j], int(miss[:, j].sum()))
    # then one White-Royston pass (a draw given the others, each event indicator and Nelson-Aalen H(T)):
    # started from observed values, whose mix is biased when missingness depends on the outcome, the
    # chain took more than 10 cycles to forget its start (the exposure's log HR 0.012 high at 10, 0.006
    # at 40, n = 5000); from this approximation it starts close to where it converges
    aux = [np.column_stack([e, nelson_aalen_at(t, e)]) for t, e in outcomes]
    for j in todo:
        rows = miss[:, j]
        A = np.hstack([ones, np.delete(Z, j, axis=1), *aux])
        if binary[j]:
            beta = _logit_draw(A[~rows], X[~rows, j], rng)
            Z[rows, j] = (rng.random(int(rows.sum())) < _expit(A[rows] @ beta)).astype(float)
        else:
            beta, sigma = _ols_draw(A[~rows], X[~rows, j], rng)
            Z[rows, j] = A[rows] @ beta + sigma * rng.standard_normal(int(rows.sum()))
    stuck = 0
    for _ in range(int(n_iter)):
        for j in todo:
            rows = np.flatnonzero(miss[:, j])
            A = np.hstack([ones, np.delete(Z, j, axis=1)])
            for mdl in models:
                mdl.draw(Z, rng)
            old = Z[rows, j].copy()
            if binary[j]:
                beta = _logit_draw(A, Z[:, j], rng)
                p1 = _expit(A[rows] @ beta)
                l1 = sum((mdl.loglik(rows, j, old, np.ones(len(rows))) for mdl in models), np.zeros(len(rows)))
                l0 = sum((mdl.loglik(rows, j, old, np.zeros(len(rows))) for mdl in models), np.zeros(len(rows)))
                # P(z = 1 | rest) = p1 f1 / (p1 f1 + (1 - p1) f0), on the log scale for stability
                logit = np.log(p1) - np.log1p(-p1) + l1 - l0
                Z[rows, j] = (rng.random(len(rows)) < _expit(logit)).astype(float)
                continue
            beta, sigma = _ols_draw(A, Z[:, j], rng)
            # target for a row: N(z; mean, sigma^2) prod_k exp(D_k lp_k(z) - H_k exp(lp_k(z))). The event
            # factors exp(D_k beta_kj z) tilt the normal to N(mean + sigma^2 sum_k D_k beta_kj, sigma^2),
            # so propose from that and accept with prod_k exp(-H_k exp(lp_k)) <= 1: exact, and an early
            # event (small H) is accepted at once, where smcfcs's bound H e^(1 - H) rejects it for long.
            mean = A[rows] @ beta + sigma**2 * sum(
                (mdl.event[rows] * mdl.beta[j] for mdl in models), np.zeros(len(rows))
            )
            # c_k = H_k exp(lp_k) with z_j's term taken out, so that H_k exp(lp_k(z)) = c_k exp(beta_kj z)
            c = np.column_stack(
                [mdl.H0[rows] * np.exp(mdl.lp[rows] - mdl.beta[j] * old) for mdl in models] or [np.zeros(len(rows))]
            )
            b = np.array([mdl.beta[j] for mdl in models] or [0.0])
            Z[rows, j], left = _draw_normal_times_survival(mean, sigma, c, b, rng, max_reject)
            stuck += left
    return Z, stuck


def _draw_normal_times_survival(
    mean: np.ndarray, sigma: float, c: np.ndarray, b: np.ndarray, rng: np.random.Generator, max_reject: int = 1000
) -> tuple[np.ndarray, int]:
    """One draw per row from the density proportional to ``N(z; mean, sigma^2) exp(-sum_k c_k exp(b_k z))``
    (``c`` rows x K, ``b`` length K) by rejection: propose from the normal, accept with
    ``exp(-sum_k c_k exp(b_k z)) <= 1``. Returns the draws and how many rows hit ``max_reject`` rounds
    (those keep their last proposal)."""
    out = np.empty(len(mean))
    left = np.arange(len(mean))
    for _ in range(max_reject):
        prop = mean[left] + sigma * rng.standard_normal(len(left))
        log_acc = -(c[left] * np.exp(prop[:, None] * b[None, :])).sum(axis=1)
        ok = np.log(rng.random(len(left))) < log_acc
        out[left] = prop  # accepted rows keep this value; the rest are drawn again
        left = left[~ok]
        if not len(left):
            break
    return out, len(left)


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _encode(df: pd.DataFrame, columns: list[str]):
    """Numeric matrix for MICEData; two-level text columns become 0/1 (decoded afterwards)."""
    out, codes = {}, {}
    for col in columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            out[col] = s.astype(float)
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = pd.to_numeric(s).astype(float)
        else:
            levels = sorted(s.dropna().astype(str).unique())
            if len(levels) > 2:
                raise UserError(
                    f"impute_mice: {col!r} has {len(levels)} text levels; only numeric or two-level "
                    f"columns can be imputed (code it as indicators first)"
                )
            codes[col] = levels
            out[col] = s.map(lambda v, lv=levels: np.nan if pd.isna(v) else float(lv.index(str(v))))
    return pd.DataFrame(out, index=df.index), codes


def impute_mice(
    df: pd.DataFrame,
    columns,
    *,
    time=None,
    event=None,
    m: int = DEFAULT_M,
    n_iter: int = 10,
    seed: int = DEFAULT_SEED,
    k_pmm: int = 5,
    method: str = "smcfcs",
) -> MIData:
    """Impute the missing values of ``columns`` ``m`` times by chained equations.

    Parameters
    ----------
    df : the cohort.
    columns : the variables of the imputation model (the analysis model's exposure and covariates,
        plus any auxiliary variables). Those with missing values are imputed; the complete ones are
        predictors only. Numeric, boolean, or two-level text columns (e.g. ``sex`` F/M).
    time, event : an outcome's follow-up and 0/1 event column, or lists of several (e.g. fracture
        and mortality). Each adds its event indicator and its Nelson-Aalen cumulative hazard
        ``H(time)`` to the imputation model (White and Royston 2009). They must be complete.
    m : number of imputed sets (default 20).
    n_iter : chained-equation cycles per set (each set is its own chain).
    seed : seed of the ``numpy.random.SeedSequence`` from which the ``m`` chains are spawned.
    k_pmm : donors for predictive mean matching (mice's default, 5; ``method="pmm"`` only).
    method : ``"smcfcs"`` (default): substantive-model-compatible chained equations (Bartlett et al.
        2015): each incomplete variable is drawn from its normal (or, for a 0/1 or two-level column,
        logistic) model given the other ``columns``, times the likelihood of each outcome under a
        Cox model on all ``columns`` (rejection sampling; exact two-point draw for a binary one).
        Consistent for an analysis Cox model on these columns. ``"pmm"``: R mice's default
        predictive mean matching with the event indicator and ``H(time)`` as predictors (White and
        Royston 2009), an approximation that is biased when covariate effects are large.

    Returns
    -------
    MIData (see its docstring): ``datasets`` (``m`` completed frames), ``missing`` (``variable``,
    ``n``, ``n_missing``, ``share_missing`` per imputed variable), ``imputed_rows``, ``predictors``.
    """
    columns = _as_list(columns)
    times, events = _as_list(time), _as_list(event)
    if len(times) != len(events):
        raise UserError("impute_mice: give as many time columns as event columns")
    if not columns:
        raise UserError("impute_mice: no columns to impute")
    if int(m) < 2:
        raise UserError(f"impute_mice: m must be at least 2, got {m!r}")
    if method not in ("smcfcs", "pmm"):
        raise UserError(f"impute_mice: method must be 'smcfcs' or 'pmm', got {method!r}")
    require_columns(df, columns + times + events)
    X, codes = _encode(df, columns)
    aux = {}
    outcomes = []
    for t_col, e_col in zip(times, events):
        t = pd.to_numeric(df[t_col], errors="coerce")
        e = pd.to_numeric(df[e_col], errors="coerce")
        if t.isna().any() or e.isna().any():
            raise UserError(f"impute_mice: outcome columns {t_col!r}/{e_col!r} must be complete")
        if not e.isin([0, 1]).all():
            raise UserError(f"impute_mice: {e_col!r} must hold 0/1 event indicators")
        outcomes.append((t.to_numpy(float), e.to_numpy(float)))
        aux[e_col] = e.to_numpy(float)
        aux[f"H({t_col})"] = nelson_aalen_at(t.to_numpy(float), e.to_numpy(float))
    if method == "smcfcs":
        predictors = columns + [f"Cox({t}, {e})" for t, e in zip(times, events)]
        aux = {}
    else:
        predictors = columns + list(aux)
    data = pd.concat([X.reset_index(drop=True), pd.DataFrame(aux)], axis=1)
    data.columns = [f"v{i}" for i in range(data.shape[1])]  # formula-safe names for statsmodels
    miss = X.isna()
    todo = [c for c in columns if miss[c].any()]
    n = len(df)
    missing = pd.DataFrame(
        {
            "variable": todo,
            "n": n,
            "n_missing": [int(miss[c].sum()) for c in todo],
            "share_missing": [float(miss[c].mean()) for c in todo],
        }
    )
    for c in todo:
        if miss[c].all():
            raise UserError(f"impute_mice: {c!r} is missing in every row")
    if method == "smcfcs":
        label = (
            f"SMC-FCS (chained equations compatible with a Cox model of each outcome on the imputed columns; "
            f"normal or logistic covariate models with Bayesian parameter draws, rejection sampling), m = {m}, "
            f"{n_iter} cycles per chain"
        )
        arr = data.to_numpy(float)
        binary = [
            c in codes or bool(np.isin(arr[~np.isnan(arr[:, j]), j], (0.0, 1.0)).all()) for j, c in enumerate(columns)
        ]
    else:
        label = (
            f"MICE (statsmodels MICEData, OLS with Bayesian parameter draws, type-1 PMM, k = {k_pmm}), m = {m}, "
            f"{n_iter} cycles per chain, outcome terms: event indicator and Nelson-Aalen H(t)"
        )
    datasets = []
    stuck = 0
    children = np.random.SeedSequence(int(seed)).spawn(int(m))
    chains = []
    if todo and method == "smcfcs":
        from epi_spineage.stats._coxfit import _single_thread_blas

        # one BLAS thread: small tall-and-thin products, where threads only contend (and setting the
        # limit per Cox fit, as fit_cox does, cost more than the fit)
        with _single_thread_blas():
            for child in children:
                Zc, k = _smcfcs_chain(arr, binary, outcomes, int(n_iter), np.random.default_rng(child))
                stuck += k
                chains.append(pd.DataFrame(Zc, columns=data.columns))
    elif todo:
        for child in children:
            # lazy (inside): keeps `import epi_spineage.stats` light
            imp = _mice_data_class()(data, k_pmm=k_pmm, rng=np.random.default_rng(child))
            imp.update_all(int(n_iter))
            chains.append(imp.data)
    else:
        chains = [data] * int(m)
    for filled in chains:
        out = df.copy()
        for j, c in enumerate(columns):
            if c not in todo:
                continue
            vals = filled.iloc[:, j].to_numpy(float)
            if c in codes:
                lv = codes[c]
                new = pd.Series([lv[round(v)] for v in vals], index=df.index)
                out[c] = df[c].where(~miss[c], new)
            else:
                out[c] = df[c].where(~miss[c], pd.Series(vals, index=df.index)).astype(float)
        datasets.append(out)
    return MIData(
        datasets=datasets,
        original=df,
        missing=missing,
        imputed_rows=miss.any(axis=1).to_numpy(),
        predictors=predictors,
        m=int(m),
        n_iter=int(n_iter),
        seed=int(seed),
        method=label if not stuck else f"{label}; {stuck} draws kept after 1000 rejections",
        columns=columns,
    )


@ci_level_keyword
def pool_rubin(estimates, variances, dfcom: float = np.inf, *, terms=None, level: float = 0.95) -> pd.DataFrame:
    """Pool ``m`` estimates by Rubin's rules with the Barnard-Rubin degrees of freedom (``mice::pool``).

    Parameters
    ----------
    estimates : m x p array (or length-m vector) of the per-imputation estimates.
    variances : m x p array of their squared standard errors (the diagonal of each set's covariance).
    dfcom : complete-data degrees of freedom (``np.inf`` for large-sample; ``events - p`` for a Cox
        model, as mice uses; ``n - p`` for OLS).
    terms : names of the p terms (default ``"term1"``...).
    level : confidence level.

    Returns
    -------
    DataFrame, one row per term: ``term``, ``m``, ``estimate`` (qbar), ``std_error`` (sqrt(t)),
    ``statistic`` (qbar / sqrt(t)), ``df`` (Barnard-Rubin), ``p_value`` (two-sided t), ``ci_low``,
    ``ci_high`` (qbar -/+ t quantile x std_error), ``ci_level``, ``riv`` (relative increase in
    variance), ``lambda`` (proportion of variance due to missingness), ``fmi`` (fraction of missing
    information), ``ubar`` (within variance), ``b`` (between variance), ``t`` (total variance),
    ``dfcom``, ``method``.
    """
    Q = np.asarray(estimates, dtype=float)
    U = np.asarray(variances, dtype=float)
    if Q.ndim == 1:
        Q = Q[:, None]
    if U.ndim == 1:
        U = U[:, None]
    if Q.shape != U.shape:
        raise UserError(f"pool_rubin: estimates {Q.shape} and variances {U.shape} differ in shape")
    m, p = Q.shape
    if m < 2:
        raise UserError("pool_rubin: need at least 2 imputations")
    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level!r}")
    dfcom = float(dfcom)
    if np.isnan(dfcom) or dfcom <= 0:
        raise UserError(f"pool_rubin: dfcom must be positive, got {dfcom!r}")
    qbar = Q.mean(axis=0)
    ubar = U.mean(axis=0)
    b = Q.var(axis=0, ddof=1)
    t = ubar + (1.0 + 1.0 / m) * b
    lam = (1.0 + 1.0 / m) * b / t
    lam = np.where(lam < 1e-4, 1e-4, lam)  # mice's barnard.rubin floor
    df_old = (m - 1) / lam**2
    if np.isinf(dfcom):
        df = df_old
    else:
        df_obs = (dfcom + 1.0) / (dfcom + 3.0) * dfcom * (1.0 - lam)
        df = df_old * df_obs / (df_old + df_obs)
    riv = (1.0 + 1.0 / m) * b / ubar
    lam_out = (1.0 + 1.0 / m) * b / t  # mice reports lambda unfloored
    fmi = (riv + 2.0 / (df + 3.0)) / (riv + 1.0)
    se = np.sqrt(t)
    stat = qbar / se
    pval = 2.0 * _sps.t.sf(np.abs(stat), np.maximum(df, 0.001))
    q = _sps.t.ppf(0.5 + level / 2.0, df)
    names = list(terms) if terms is not None else [f"term{j + 1}" for j in range(p)]
    if len(names) != p:
        raise UserError(f"pool_rubin: {len(names)} term names for {p} estimates")
    return pd.DataFrame(
        {
            "term": names,
            "m": m,
            "estimate": qbar,
            "std_error": se,
            "statistic": stat,
            "df": df,
            "p_value": pval,
            "ci_low": qbar - q * se,
            "ci_high": qbar + q * se,
            "ci_level": float(level),
            "riv": riv,
            "lambda": lam_out,
            "fmi": fmi,
            "ubar": ubar,
            "b": b,
            "t": t,
            "dfcom": dfcom,
            "method": "Rubin's rules, Barnard-Rubin df",
        }
    )


@ci_level_keyword
def mi_cox_per_sd(
    mi: MIData,
    time: str,
    event: str,
    exposure: str,
    covariates=(),
    *,
    sd: float | None = None,
    ties: str = "efron",
    level: float = 0.95,
    model: str | None = None,
    analysis: str | None = None,
    reference_levels: dict | None = None,
) -> pd.DataFrame:
    """Fit ``cox_per_sd`` on each imputed set and pool by Rubin's rules (log-HR scale).

    The SD of ``exposure`` is the original data's (observed values), shared by every set, so the
    pooled HR is per the same SD as the complete-case one. ``dfcom`` = events - number of
    coefficients, as ``mice::pool`` for a ``coxph`` fit.

    Returns
    -------
    DataFrame, one row per term: ``analysis``, ``model``, ``term``, ``estimate`` (pooled HR),
    ``log_hr``, ``std_error`` (of the pooled log HR), ``statistic``, ``df``, ``p_value``, ``ci_low``,
    ``ci_high`` (HR scale, t-based), ``ci_level``, ``scale``, ``sd``, ``n`` (rows analysed per set),
    ``events``, ``n_imputed`` (rows with an imputed value in a model variable), ``m``, ``dfcom``,
    ``riv``, ``lambda``, ``fmi``, ``method``.
    """
    from epi_spineage.stats.cox import cox_per_sd, exposure_sd

    if sd is None:
        sd = exposure_sd(mi.original, exposure)
    fits = [
        cox_per_sd(
            d, time, event, exposure, covariates, ties=ties, sd=sd, level=level, reference_levels=reference_levels
        )
        for d in mi.datasets
    ]
    first = fits[0]
    terms = first.terms
    if any(f.terms != terms for f in fits):
        raise UserError("mi_cox_per_sd: the imputed sets gave different model terms")
    Q = np.vstack([f.coef for f in fits])
    U = np.vstack([np.diag(f.var) for f in fits])
    p = len(terms)
    dfcom = max(first.events - p, 1)
    pooled = pool_rubin(Q, U, dfcom, terms=terms, level=level)
    model_cols = [exposure, *[c for c in covariates if c != exposure]]
    used = [c for c in model_cols if c in mi.columns]
    n_imp = int(mi.original[used].isna().any(axis=1).sum()) if used else 0
    scale = first.summary.set_index("term").loc[terms, "scale"].to_numpy()
    sd_col = first.summary.set_index("term").loc[terms, "sd"].to_numpy()
    return pd.DataFrame(
        {
            "analysis": analysis,
            "model": model,
            "term": terms,
            "estimate": np.exp(pooled["estimate"]),
            "log_hr": pooled["estimate"],
            "std_error": pooled["std_error"],
            "statistic": pooled["statistic"],
            "df": pooled["df"],
            "p_value": pooled["p_value"],
            "ci_low": np.exp(pooled["ci_low"]),
            "ci_high": np.exp(pooled["ci_high"]),
            "ci_level": float(level),
            "scale": scale,
            "sd": sd_col,
            "n": first.n,
            "events": first.events,
            "n_imputed": n_imp,
            "m": mi.m,
            "dfcom": float(dfcom),
            "riv": pooled["riv"],
            "lambda": pooled["lambda"],
            "fmi": pooled["fmi"],
            "method": f"Cox PH ({ties} ties) on {mi.m} imputed sets, "
            "Rubin's rules (Barnard-Rubin df, dfcom = events - p)",
        }
    )
