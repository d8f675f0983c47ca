"""Multiple imputation by chained equations and Rubin's rules (a sensitivity analysis to complete cases).

Imputation (``impute_mice``): each of ``m`` independent chains runs statsmodels' ``MICEData`` (fully
conditional specification: every incomplete variable in turn is regressed by OLS on all the others)
for ``n_iter`` cycles, with two steps done as R ``mice``'s default ``pmm`` does them (van Buuren,
Flexible Imputation of Missing Data, 2nd ed., sections 3.2 and 3.4): the regression parameters are a
Bayesian posterior draw (``sigma* = sqrt(RSS / chi2(df))``, ``beta* = beta_hat + sigma* L z`` with
``L L' = (X'X)^-1``), and predictive mean matching is "type 1": each missing row's prediction from
``beta*`` is matched to the observed rows' predictions from ``beta_hat``, and one of the ``k_pmm``
closest donors gives its observed value (so a binary variable stays binary). statsmodels' own step
draws beta from N(beta_hat, cov) without a sigma draw and matches both sides on the same draw
("type 2"), whose imputations barely move between sets when there are few predictors: in
``benchmarks/mi_coverage.py`` it covered the planted HR in only 88% of 120 cohorts. As
White and Royston advise for survival outcomes (Stat Med 2009;28:1982-98), the imputation model
holds the event indicator and the Nelson-Aalen cumulative hazard at each participant's own time for
every outcome given, never the raw time. The chains are seeded from one ``numpy.random.SeedSequence``,
so a seed gives the same imputed sets on every run.

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

statsmodels is imported inside the functions, so ``import epi_spineage.stats`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _sps

from epi_spineage.errors import UserError
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
    model, outcome terms included (``<event>`` indicator and ``H(<time>)`` cumulative hazard).
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
    k_pmm : donors for predictive mean matching (mice's default, 5).

    Returns
    -------
    MIData (see its docstring): ``datasets`` (``m`` completed frames), ``missing`` (``variable``,
    ``n``, ``n_missing``, ``share_missing`` per imputed variable), ``imputed_rows``, ``predictors``.
    """
    # lazy (inside): keeps `import epi_spineage.stats` light
    MICEData = _mice_data_class()

    columns = _as_list(columns)
    times, events = _as_list(time), _as_list(event)
    if len(times) != len(events):
        raise UserError("impute_mice: give as many time columns as event columns")
    if not columns:
        raise UserError("impute_mice: no columns to impute")
    if int(m) < 2:
        raise UserError(f"impute_mice: m must be at least 2, got {m!r}")
    require_columns(df, columns + times + events)
    X, codes = _encode(df, columns)
    aux = {}
    for t_col, e_col in zip(times, events):
        t = pd.to_numeric(df[t_col], errors="coerce")
        e = pd.to_numeric(df[e_col], errors="coerce")
        if t.isna().any() or e.isna().any():
            raise UserError(f"impute_mice: outcome columns {t_col!r}/{e_col!r} must be complete")
        if not e.isin([0, 1]).all():
            raise UserError(f"impute_mice: {e_col!r} must hold 0/1 event indicators")
        aux[e_col] = e.to_numpy(float)
        aux[f"H({t_col})"] = nelson_aalen_at(t.to_numpy(float), e.to_numpy(float))
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
    method = (
        f"MICE (statsmodels MICEData, OLS with Bayesian parameter draws, type-1 PMM, k = {k_pmm}), m = {m}, "
        f"{n_iter} cycles per chain, outcome terms: event indicator and Nelson-Aalen H(t)"
    )
    datasets = []
    children = np.random.SeedSequence(int(seed)).spawn(int(m))
    for child in children:
        if todo:
            imp = MICEData(data, k_pmm=k_pmm, rng=np.random.default_rng(child))
            imp.update_all(int(n_iter))
            filled = imp.data
        else:
            filled = data
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
        method=method,
        columns=columns,
    )


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
