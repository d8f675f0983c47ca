"""Benchmark: the full report on a 100,000-participant simulated cohort.

Prints seconds for simulation, the analyses (``run_study``) and writing the report (figures, tables,
HTML, Quarto), and the total. Targets: report (analyses + writing) under 120 s, analyses on 100,000
participants under 60 s (issue 4). Usage: ``python benchmarks/report.py [--n 100000] [--external N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="derivation participants, all analysed")
    ap.add_argument("--external", type=int, default=0, help="external participants (default 0: one cohort)")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", default=None, help="output folder (default a temporary one)")
    args = ap.parse_args()

    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import write_study_report
    from epi_spineage.synth.cohort import simulate_study

    t0 = time.perf_counter()
    study = simulate_study(seed=args.seed, n_derivation=args.n, n_external=max(args.external, 100))
    t_sim = time.perf_counter() - t0
    external = study.external if args.external else None
    # analyse every derivation row (not only the 20% test split), so the analysed cohort is --n
    config = StudyConfig(derivation_split="")
    t1 = time.perf_counter()
    results = run_study(study.derivation, external, config)
    results.attach_truth(study.truth)
    t_an = time.perf_counter() - t1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t2 = time.perf_counter()
        index = write_study_report(out, results, config=config, synthetic=True, source="benchmark")
        t_wr = time.perf_counter() - t2
        size = index.stat().st_size
    analysed = sum(c.n for c in results.cohorts.values())
    print(f"participants analysed      {analysed:,}")
    print(f"simulate (s)               {t_sim:.1f}")
    print(f"analyses (s)               {t_an:.1f}   (target < 60)")
    print(f"write report (s)           {t_wr:.1f}")
    print(f"total report (s)           {t_an + t_wr:.1f}   (target < 120; analyses + writing)")
    print(f"index.html (MB)            {size / 1e6:.2f}")
    slow = sorted(results.timings_s.items(), key=lambda kv: -kv[1])[:6]
    print("slowest steps (s)          " + ", ".join(f"{k} {v:.1f}" for k, v in slow if k != "total"))


if __name__ == "__main__":
    main()
