"""Coverage of multiple imputation (``impute_mice`` + ``mi_cox_per_sd``) over many seeds, vs complete cases.

    .venv/bin/python benchmarks/mi_coverage.py [--seeds 200] [--n 1000] [--m 20]

Design (each seed a fresh cohort): exposure x ~ N(0, 1) always observed; confounder z = 0.5 x + N(0, 1);
Cox outcome with planted HR 1.5 per unit of x and of z (exponential baseline 0.1/year), uniform
censoring on 1-8 years; z missing at random given the observed x and outcome,
``logit P(missing) = -1.5 + 2 event + x`` (about 40% missing). For each of full data (z complete),
complete cases and MI (m imputations, 10 cycles, event indicator and Nelson-Aalen H(t) in the
imputation model), prints the mean log HR of x, its bias, the empirical SD over seeds, the mean
model SE, and the 95% CI coverage with its Monte-Carlo SE ``sqrt(p (1 - p) / seeds)``.

Measured on 2026-11-30 (2 shared cores), ``--seeds 60 --n 1000 --m 20`` (963 s):

    method              mean    bias  emp SD  mean SE  coverage  MC SE
    full data         0.4083  0.0028  0.0583   0.0593     0.983  0.017
    complete cases    0.1631 -0.2424  0.1069   0.1120     0.417  0.064
    MI (m = 20)       0.4275  0.0221  0.0759   0.0658     0.900  0.039

With statsmodels' own MICEData step (normal parameter draw, type-2 matching), 120 seeds: MI mean
0.4233, emp SD 0.0775, mean SE 0.0638, coverage 0.883 (MC SE 0.029); hence impute_mice's mice-style
step. The remaining shortfall (pooled SE about 13% below the empirical SD, bias +0.02) is the known
approximation of imputing with D and H(T) when the incomplete covariate's effect is large (White and
Royston 2009); more seeds would tell whether 0.90 differs from 0.95.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

TRUE_LOG_HR = float(np.log(1.5))


def cohort(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = 0.5 * x + rng.normal(size=n)
    t = rng.exponential(1.0 / (0.1 * np.exp(TRUE_LOG_HR * x + TRUE_LOG_HR * z)))
    c = rng.uniform(1.0, 8.0, n)
    ev = (t <= c).astype(int)
    miss = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(-1.5 + 2.0 * ev + x)))
    return pd.DataFrame({"time": np.minimum(t, c), "event": ev, "x": x, "z": np.where(miss, np.nan, z), "z_full": z})


def one(n: int, m: int, seed: int) -> dict[str, tuple[float, float, float, float]]:
    from epi_spineage.stats import cox_per_sd, impute_mice, mi_cox_per_sd

    d = cohort(n, seed)
    out = {}
    for name, z in (("full data", "z_full"), ("complete cases", "z")):
        r = cox_per_sd(d, "time", "event", "x", [z], sd=1.0).summary.iloc[0]
        out[name] = (float(r["log_hr"]), float(r["std_error"]), float(np.log(r["ci_low"])), float(np.log(r["ci_high"])))
    mi = impute_mice(d, ["x", "z"], time="time", event="event", m=m, seed=seed)
    r = mi_cox_per_sd(mi, "time", "event", "x", ["z"], sd=1.0).iloc[0]
    out[f"MI (m = {m})"] = (
        float(r["log_hr"]),
        float(r["std_error"]),
        float(np.log(r["ci_low"])),
        float(np.log(r["ci_high"])),
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--m", type=int, default=20)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows: dict[str, list] = {}
    for seed in range(args.seeds):
        for k, v in one(args.n, args.m, 10_000 + seed).items():
            rows.setdefault(k, []).append(v)
    print(
        f"MAR confounder, n = {args.n}, {args.seeds} seeds, planted log HR of x = {TRUE_LOG_HR:.4f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    print(f"{'method':<16}{'mean':>8}{'bias':>8}{'emp SD':>8}{'mean SE':>9}{'coverage':>10}{'MC SE':>7}")
    for k, v in rows.items():
        a = np.array(v)
        cov = float(np.mean((a[:, 2] <= TRUE_LOG_HR) & (a[:, 3] >= TRUE_LOG_HR)))
        mc = np.sqrt(cov * (1 - cov) / len(a)) if 0 < cov < 1 else np.sqrt(0.95 * 0.05 / len(a))
        print(
            f"{k:<16}{a[:, 0].mean():8.4f}{a[:, 0].mean() - TRUE_LOG_HR:8.4f}{a[:, 0].std(ddof=1):8.4f}"
            f"{a[:, 1].mean():9.4f}{cov:10.3f}{mc:7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
