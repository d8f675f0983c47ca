"""Benchmark: the full report on a simulated cohort of ``--n`` participants, all analysed (issue 18).

Prints seconds for simulation, the analyses (``run_study``) and writing the report (figures, tables,
HTML, Quarto, exports), the total, each analysis step's and each writing part's share of its phase,
and the peak memory (resident set) of the analyses and writing. Targets (issue 18, 2 cores): total under
60 s at 1,000,000; writing under 10 s at any n; analyses 1M / 100k at most 10; peak memory under 2 GB at 1M.

``--via parquet`` writes the simulated cohort to a Parquet file first and reads it back the way
``epi-spineage report --cohort`` does (``report.inputs.load_inputs``: only the analysis columns, compact
dtypes), so the peak then covers reading too and the simulator's frames are gone. Without it, the
simulator's frames stay in memory beside the analysis (the peak includes them).

Usage::

    python benchmarks/report.py --n 1000000
    python benchmarks/report.py --n 1000000 --clock cpu   # on a shared machine
    python benchmarks/report.py --n 5000000 --via parquet
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set of this process (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident set (VmHWM) since the last reset, in GB; falls back to ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def current_rss_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("nan")


def _shares(title: str, timings: dict[str, float], total: float, peaks: dict[str, float] | None = None) -> None:
    print(f"{title:<40} {'s':>7} {'share':>7}" + (f" {'peak GB':>8}" if peaks else ""))
    for name, sec in sorted(timings.items(), key=lambda kv: -kv[1]):
        if name == "total":
            continue
        peak = f" {peaks[name]:8.2f}" if peaks and name in peaks else ""
        print(f"  {name:<38} {sec:7.2f} {100 * sec / total if total else 0:6.1f}%{peak}")


def _progress(line: str) -> None:
    """A line to stderr as each phase ends, so a long run shows where it is."""
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _use_cpu_clock() -> None:
    """Make the report's own step/section timers count this process's CPU seconds, not wall time."""
    import types

    from epi_spineage.report import analyses, document, render

    cpu = types.SimpleNamespace(perf_counter=time.process_time)
    for module in (analyses, document, render):
        module.time = cpu  # type: ignore[attr-defined]


def _track_step_peaks(peaks: dict[str, float]) -> None:
    """Wrap each analysis step so that its own peak resident set is recorded (reset before, read after)."""
    from epi_spineage.report import steps

    def wrap(name, func):
        def run(results):
            reset_peak_rss()
            try:
                return func(results)
            finally:
                peaks[name] = peak_rss_gb()

        return run

    steps.STEPS[:] = [(name, attr, wrap(name, func)) for name, attr, func in steps.STEPS]
    from epi_spineage.report import analyses

    prepare = analyses.prepare_cohorts

    def prepare_tracked(*args, **kwargs):
        reset_peak_rss()
        try:
            return prepare(*args, **kwargs)
        finally:
            peaks["prepare"] = peak_rss_gb()

    analyses.prepare_cohorts = prepare_tracked  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="derivation participants, all analysed")
    ap.add_argument("--external", type=int, default=0, help="external participants (default 0: one cohort)")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", default=None, help="output folder (default a temporary one)")
    ap.add_argument(
        "--via",
        choices=["memory", "parquet"],
        default="memory",
        help="hand the simulated frames to the analyses (memory) or go through a Parquet file and the "
        "report's reader (parquet)",
    )
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what the per-step and per-part times count: wall seconds, or this process's CPU seconds "
        "(steadier on a machine shared with other work; the report is single-threaded)",
    )
    ap.add_argument(
        "--imputation",
        action="store_true",
        help="also run the multiple-imputation sensitivity analysis (on by default in the report), timed on its "
        "own line; off here because at 1,000,000 it takes over 10 CPU minutes and about 2.7 GB",
    )
    args = ap.parse_args()

    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import write_study_report
    from epi_spineage.synth.cohort import simulate_study

    if args.clock == "cpu":
        _use_cpu_clock()
    step_peaks: dict[str, float] = {}
    _track_step_peaks(step_peaks)
    # analyse every derivation row (not only the 20% test split), so the analysed cohort is --n
    config = StudyConfig(derivation_split="", multiple_imputation=args.imputation)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        study = simulate_study(seed=args.seed, n_derivation=args.n, n_external=max(args.external, 100))
        t_sim = time.perf_counter() - t0
        _progress(f"simulated {args.n:,} in {t_sim:.1f} s")
        truth = study.truth
        t_read = 0.0
        if args.via == "parquet":
            from epi_spineage.report.inputs import load_inputs

            frames = [study.derivation] + ([study.external] if args.external else [])
            path = Path(tmp) / "cohort.parquet"
            import pandas as pd

            pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
            del study, frames
            gc.collect()
            rss_before = current_rss_gb()
            reset_peak_rss()
            t1 = time.perf_counter()
            inputs = load_inputs(
                cohort=str(path), mapping=None, db=None, config=config, seed=0, n_derivation=0, n_external=0
            )
            t_read = time.perf_counter() - t1
            _progress(f"read the cohort back in {t_read:.1f} s")
            derivation, external = inputs.derivation, inputs.external
            mem_cohort = sum(f.memory_usage(deep=True).sum() for f in (derivation, external) if f is not None)
        else:
            derivation = study.derivation
            external = study.external if args.external else None
            del study
            gc.collect()
            rss_before = current_rss_gb()
            reset_peak_rss()
            mem_cohort = sum(f.memory_usage(deep=True).sum() for f in (derivation, external) if f is not None)
        t1, c1 = time.perf_counter(), time.process_time()
        reset_peak_rss()
        results = run_study(derivation, external, config)
        results.attach_truth(truth)
        t_an, c_an = time.perf_counter() - t1, time.process_time() - c1
        _progress(f"analyses {t_an:.1f} s (CPU {c_an:.1f} s), peak {max([peak_rss_gb(), *step_peaks.values()]):.2f} GB")
        peak_an = max([peak_rss_gb(), *step_peaks.values()])
        out = Path(args.out or tmp) / "report"
        writing: dict[str, float] = {}
        t2, c2 = time.perf_counter(), time.process_time()
        reset_peak_rss()
        index = write_study_report(out, results, config=config, synthetic=True, source="benchmark", timings=writing)
        t_wr, c_wr = time.perf_counter() - t2, time.process_time() - c2
        peak_wr = peak_rss_gb()
        peak_all = max(peak_an, peak_wr)
        size = index.stat().st_size
        out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    analysed = sum(c.n for c in results.cohorts.values())
    print(f"participants analysed      {analysed:,}")
    print(f"simulate (s)               {t_sim:.1f}")
    if args.via == "parquet":
        print(f"read cohort (s)            {t_read:.1f}   (Parquet -> compact frame, report.inputs)")
    print(f"cohort frame in memory     {mem_cohort / 1e9:.2f} GB")
    print(f"analyses (s)               {t_an:.1f}   (CPU {c_an:.1f} s)")
    mi = results.timings_s.get("multiple imputation")
    if args.imputation and mi is not None:
        print(f"  of which imputation (s)  {mi:.1f}   (its own line: not in the 60 s target)")
    else:
        print("  imputation               not run (--imputation times it on its own line)")
    print(f"write report (s)           {t_wr:.1f}   (CPU {c_wr:.1f} s; target < 10)")
    total = t_read + t_an + t_wr
    if args.imputation and mi is not None:
        total -= mi
    print(f"total report (s)           {total:.1f}   (target < 60 at 1,000,000; read + analyses + writing)")
    print("(CPU: this process's user+system seconds; on a shared machine wall time can be far longer)")
    print(f"RSS before (GB)            {rss_before:.2f}   (simulator and interpreter, before the peak reset)")
    print(f"peak RSS analyses (GB)     {peak_an:.2f}")
    print(f"peak RSS writing (GB)      {peak_wr:.2f}")
    print(f"peak RSS all (GB)          {peak_all:.2f}   (target < 2 at 1,000,000)")
    print(f"index.html (MB)            {size / 1e6:.2f}")
    print(f"report folder (MB)         {out_bytes / 1e6:.2f}")
    clock = "CPU s" if args.clock == "cpu" else "s"
    _shares(f"analysis step ({clock})", results.timings_s, c_an if args.clock == "cpu" else t_an, step_peaks)
    _shares(f"writing part ({clock})", writing, c_wr if args.clock == "cpu" else t_wr)


if __name__ == "__main__":
    main()
