"""Growth of the analyses with the cohort size (issue 18). Prints figures; run from the repository root:

    .venv/bin/python benchmarks/stats_growth.py [--n 50000] [--quick] [--big 1000000]

(a) each statistics step on a simulated cohort of n and of 4n participants and the ratio of the two
    times (target: at most 5, i.e. no worse than n log n; a quadratic step would give 16);
(b) the Cox steps with the shared sort order switched off (``survival_sharing(False)``), in this same
    process, and the ratio unshared / shared;
(c) the report's own analysis runner (``epi_spineage.report.analyses.run_study``) per step at n and 4n,
    and its total at 100,000 and ``--big`` (default 1,000,000) participants with the ratio
    (target: at most 10, i.e. linear up to the log factor). ``--quick`` skips the ``--big`` run.

Times are wall clock (``time.perf_counter``), best of ``--repeats`` for (a) and (b). The machine is
shared, so read the ratios rather than the seconds.
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from epi_spineage.report.config import DEFAULT_TABLE1_VARIABLES

OUTCOME = ("fracture_any_years", "fracture_any")
DEATH = ("death_years", "death")


def _cohort(n: int, seed: int = 2025) -> pd.DataFrame:
    from epi_spineage.stats.grouping import four_groups
    from epi_spineage.synth.cohort import simulate_study
    from epi_spineage.tables import derive_variables

    df = derive_variables(simulate_study(seed=seed, n_derivation=n, n_external=100).derivation)
    df["group"] = four_groups(df).astype(str)
    return df


def _steps(df: pd.DataFrame) -> dict:
    from epi_spineage import stats
    from epi_spineage.stats._concordance import harrell_c
    from epi_spineage.stats.grouping import REFERENCE_GROUP

    t, e = OUTCOME
    dt, de = DEATH
    rank = df["pad_years"].to_numpy(float)
    return {
        "Cox models 1-3, fracture": lambda: stats.cox_model_set(df, t, e, models="fracture"),
        "Cox models 1-2, death": lambda: stats.cox_model_set(df, dt, de, models="mortality"),
        "subgroups by sex (2 fits + LR test)": lambda: stats.subgroup_hazard_ratios(
            df, t, e, "pad_years", by="sex", covariates=["age_years"]
        ),
        "four-group HRs": lambda: stats.group_hazard_ratios(df, t, e, "group", REFERENCE_GROUP),
        "Harrell's C alone": lambda: harrell_c(df[t].to_numpy(float), df[e].to_numpy(), rank),
        "Kaplan-Meier at 1-10 y, 4 groups": lambda: stats.km_cumulative_failure(
            df, t, e, group="group", times=range(1, 11)
        ),
        "Kaplan-Meier curves, 4 groups": lambda: stats.km_curves(df, t, e, group="group"),
        "log-rank, 4 groups": lambda: stats.logrank(df, t, e, group="group"),
        "incidence rates, 4 groups": lambda: stats.incidence_rates(df, t, e, group="group"),
        "median follow-up": lambda: stats.median_followup(df, t, e),
        "table 1 (the report's variables)": lambda: stats.table_one(
            df, by=e, variables=[v for v in DEFAULT_TABLE1_VARIABLES if v in df.columns]
        ),
    }


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _run_study(n: int) -> dict[str, float]:
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.synth.cohort import simulate_study

    study = simulate_study(seed=2025, n_derivation=n, n_external=100)
    # every derivation row analysed (no 20% test split), so the analysed cohort is n
    return dict(run_study(study.derivation, None, StudyConfig(derivation_split="")).timings_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="the smaller cohort (the larger is 4n)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--big", type=int, default=1_000_000, help="the large run_study cohort (vs 100,000)")
    ap.add_argument("--quick", action="store_true", help="skip the run_study totals at 100,000 and --big")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from epi_spineage.stats._survdata import survival_sharing

    n1, n4 = args.n, 4 * args.n
    small, large = _cohort(n1), _cohort(n4)
    print(f"(a) statistics steps, best of {args.repeats} (s)")
    print(f"{'step':40s} {n1:>10,} {n4:>10,}  ratio (target <= 5)")
    worst = 0.0
    for name in _steps(small):
        a = _best(_steps(small)[name], args.repeats)
        b = _best(_steps(large)[name], args.repeats)
        worst = max(worst, b / a)
        print(f"{name:40s} {a:10.3f} {b:10.3f}  {b / a:5.2f}")
    print(f"{'worst ratio':40s} {'':21s}  {worst:5.2f}")

    print(f"\n(b) sharing the sort order, {n4:,} participants (s)")
    for name in ("Cox models 1-3, fracture", "subgroups by sex (2 fits + LR test)"):
        fn = _steps(large)[name]
        with survival_sharing(False):
            off = _best(fn, args.repeats)
        on = _best(fn, args.repeats)
        print(f"{name:40s} unshared {off:7.3f}  shared {on:7.3f}  ratio {off / on:4.2f}")

    print("\n(c) run_study per step (s)")
    r1, r4 = _run_study(n1), _run_study(n4)
    print(f"{'step':40s} {n1:>10,} {n4:>10,}  ratio (target <= 5)")
    for name in r1:
        if name in r4 and r1[name] > 0:
            print(f"{name:40s} {r1[name]:10.3f} {r4[name]:10.3f}  {r4[name] / r1[name]:5.2f}")
    if not args.quick:
        t100 = _run_study(100_000)["total"]
        tbig = _run_study(args.big)["total"]
        print(
            f"\nrun_study total: 100,000 {t100:.1f} s, {args.big:,} {tbig:.1f} s, "
            f"ratio {tbig / t100:.2f} (target <= {args.big / 100_000:g})"
        )


if __name__ == "__main__":
    main()
