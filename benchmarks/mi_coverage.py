"""Coverage of multiple imputation (``impute_mice`` + ``mi_cox_per_sd``) over many seeds, vs complete cases.

    nice -n 19 .venv/bin/python benchmarks/mi_coverage.py [--seeds 200] [--n 1000] [--m 20] [--pmm] [--budget-s S]

Design (each seed a fresh cohort): exposure x ~ N(0, 1) always observed; confounder z = 0.5 x + N(0, 1);
Cox outcome with planted HR 1.5 per unit of x and of z (exponential baseline 0.1/year), uniform
censoring on 1-8 years; z missing at random given the observed x and outcome,
``logit P(missing) = -1.5 + 2 event + x`` (about 40% missing). For full data (z complete), complete
cases and MI (m imputations, 10 cycles; default ``method="smcfcs"``, and with ``--pmm`` also R mice's
pmm with the event indicator and Nelson-Aalen H(t) as predictors) it prints the mean log HR of x, its
bias, the empirical SD over seeds, the mean model SE, and the 95% CI coverage with its Monte-Carlo SE
``sqrt(p (1 - p) / seeds)``. ``--budget-s`` stops after that many seconds and reports the seeds done.

``--design simulator``: the package's cohort simulator (derivation spec, one PAD effect for every
fracture site so that any fracture is exactly proportional-hazards, DXA missing at random given age,
sex and any fracture); Cox model of any fracture on PAD and its generating covariates, by complete
cases and by MI of the femoral-neck T-score; truths from ``truth.json`` (PAD per year, female, T-score per unit).

Results are quoted in docs/methods.md#multiple-imputation.
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


def one(n: int, m: int, seed: int, pmm: bool = False) -> dict[str, tuple[float, float, float, float]]:
    """log HR of x, its SE and the 95% CI limits (log scale) for each method on the cohort of ``seed``."""
    from epi_spineage.stats import cox_per_sd, impute_mice, mi_cox_per_sd

    d = cohort(n, seed)
    out = {}
    for name, z in (("full data", "z_full"), ("complete cases", "z")):
        r = cox_per_sd(d, "time", "event", "x", [z], sd=1.0).summary.iloc[0]
        out[name] = (float(r["log_hr"]), float(r["std_error"]), float(np.log(r["ci_low"])), float(np.log(r["ci_high"])))
    for method in ("smcfcs", "pmm") if pmm else ("smcfcs",):
        mi = impute_mice(d, ["x", "z"], time="time", event="event", m=m, seed=seed, method=method)
        r = mi_cox_per_sd(mi, "time", "event", "x", ["z"], sd=1.0).iloc[0]
        out[f"MI {method}"] = (
            float(r["log_hr"]),
            float(r["std_error"]),
            float(np.log(r["ci_low"])),
            float(np.log(r["ci_high"])),
        )
    return out


SIM_COVARIATES = [
    "age_years",
    "female",
    "prevalent_vf",
    "prior_fracture",
    "glucocorticoid",
    "rheumatoid_arthritis",
    "tscore_femoral_neck",
]


def one_simulator(n: int, m: int, seed: int) -> tuple[dict[str, tuple[float, float, float, float]], dict[str, float]]:
    """The package's simulator (derivation cohort, one PAD effect for every fracture site so any fracture
    is exactly PH, DXA missing at random given age, sex and any fracture): Cox model of any fracture on
    PAD and the generating covariates, by complete cases and MI (T-score imputed). Estimands: the planted
    log HRs (``truth.json``) of PAD per year, of female sex (whose complete-case estimate MAR biases most,
    missingness depending on sex and outcome) and of the femoral-neck T-score per unit."""
    from dataclasses import replace

    from epi_spineage.stats import cox_per_sd, impute_mice, mi_cox_per_sd
    from epi_spineage.synth.cohort import DERIVATION, simulate_cohort

    spec = replace(DERIVATION, dxa_missing_mechanism="mar", site_hr_per_sd_pad=None)
    d, truth = simulate_cohort(spec, n, np.random.default_rng(seed))
    d["female"] = (d["sex"] == "F").astype(float)
    d["pad_years"] = d["spine_age_years"] - d["age_years"]
    planted = truth["outcomes"]["fracture_any"]["covariates"]
    args = ("fracture_any_years", "fracture_any", "pad_years", SIM_COVARIATES)
    out: dict[str, tuple[float, float, float, float]] = {}
    f = cox_per_sd(d, *args, sd=1.0)
    terms = ((0, "PAD"), (2, "female"), (len(SIM_COVARIATES), "T-score"))
    for j, term in terms:
        lo, hi = np.log(f.summary.iloc[j][["ci_low", "ci_high"]].astype(float))
        out[f"CC {term}"] = (float(f.coef[j]), float(np.sqrt(f.var[j, j])), float(lo), float(hi))
    mi = impute_mice(d, ["pad_years", *SIM_COVARIATES], time="fracture_any_years", event="fracture_any", m=m, seed=seed)
    r = mi_cox_per_sd(mi, *args, sd=1.0)
    for j, term in terms:
        row = r.iloc[j]
        out[f"MI {term}"] = (
            float(row["log_hr"]),
            float(row["std_error"]),
            float(np.log(row["ci_low"])),
            float(np.log(row["ci_high"])),
        )
    return out, {
        "PAD": float(planted["pad_years"]),
        "female": float(planted["female"]),
        "T-score": float(planted["tscore_femoral_neck"]),
    }


def table(rows: dict[str, list], truth: dict[str, float]) -> str:
    """The coverage table: mean, bias, empirical SD, mean SE, SE/SD, coverage and its Monte-Carlo SE
    (``truth``: the planted value for each row's key)."""
    lines = [f"{'method':<16}{'mean':>8}{'bias':>8}{'emp SD':>8}{'mean SE':>9}{'SE/SD':>7}{'coverage':>10}{'MC SE':>7}"]
    for k, v in rows.items():
        a = np.array(v)
        t = truth[k]
        cov = float(np.mean((a[:, 2] <= t) & (a[:, 3] >= t)))
        mc = np.sqrt(cov * (1 - cov) / len(a)) if 0 < cov < 1 else np.sqrt(0.95 * 0.05 / len(a))
        sd = a[:, 0].std(ddof=1)
        lines.append(
            f"{k:<16}{a[:, 0].mean():8.4f}{a[:, 0].mean() - t:8.4f}{sd:8.4f}"
            f"{a[:, 1].mean():9.4f}{a[:, 1].mean() / sd:7.2f}{cov:10.3f}{mc:7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200, help="cohorts to simulate (default 200)")
    ap.add_argument("--n", type=int, default=1000, help="rows per cohort (default 1000)")
    ap.add_argument("--m", type=int, default=20, help="imputations (default 20)")
    ap.add_argument("--pmm", action="store_true", help="also run method='pmm' (R mice's default, for contrast)")
    ap.add_argument("--budget-s", type=float, default=None, help="stop after this many seconds")
    ap.add_argument(
        "--design",
        choices=("confounder", "simulator"),
        default="confounder",
        help="confounder (default): the two-covariate design above; simulator: the package's cohort simulator "
        "with MAR DXA (use --n 3000)",
    )
    ap.add_argument(
        "--write-cohorts",
        metavar="CSV",
        help="write the confounder design's cohorts (with a seed column) for benchmarks/mi_coverage_mice.R and stop",
    )
    args = ap.parse_args(argv)
    if args.write_cohorts:
        frames = [cohort(args.n, 10_000 + s).assign(seed=s) for s in range(args.seeds)]
        pd.concat(frames).to_csv(args.write_cohorts, index=False)
        return 0
    t0 = time.perf_counter()
    rows: dict[str, list] = {}
    truth: dict[str, float] = {}
    done = 0
    for seed in range(args.seeds):
        if args.design == "simulator":
            res, planted = one_simulator(args.n, args.m, 20_000 + seed)
            truth.update({k: planted[k.split(" ", 1)[1]] for k in res})
        else:
            res = one(args.n, args.m, 10_000 + seed, args.pmm)
            truth.update({k: TRUE_LOG_HR for k in res})
        for k, v in res.items():
            rows.setdefault(k, []).append(v)
        done += 1
        if args.budget_s is not None and time.perf_counter() - t0 > args.budget_s:
            break
    first = 20_000 if args.design == "simulator" else 10_000
    what = (
        "simulator (derivation, MAR DXA), any fracture on PAD (per year) and covariates"
        if args.design == "simulator"
        else f"MAR confounder, planted log HR of x = {TRUE_LOG_HR:.4f}"
    )
    print(
        f"{what}; n = {args.n}, m = {args.m}, {done} seeds ({first}-{first + done - 1}), "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(table(rows, truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
