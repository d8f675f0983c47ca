"""Benchmark: the full report on a simulated cohort of ``--n`` participants, all analysed (issue 18).

Prints seconds for simulation, the paper's analyses (``run_study``) and writing the report (figures,
tables, HTML, Quarto), the total, each analysis step's and each writing part's share of its phase, and
the peak memory. Targets (issue 18, 2 cores): total under 60 s at 1,000,000; writing under 10 s at any n;
analyses 1M / 100k at most 10; peak memory under 2 GB at 1M.

What the total counts: reading the cohort, the paper's analyses and the HTML/CSV/JSON output. As issue
18 asks, the competing-risk step (Aalen-Johansen, Gray's test, Fine-Gray and the other competing-risk
HRs), multiple imputation (``--imputation``) and the manuscript exports (tables.xlsx, tables.docx) are
timed on their own lines, outside it: ``run_study`` runs without those two steps, then each runs alone
in this process on the same prepared cohorts (their sections still go into the report), and the export
time is taken out of the writing total.

``--jobs`` (default auto: min(2, cores)) is the report's ``[report] jobs``: the analysis steps in two
processes. Memory is then measured for both together: a thread samples the proportional set size
(Pss, shared pages split between the processes that share them) of this process and its children
(``/proc/PID/smaps_rollup``, every 50 ms or more: ``PssSampler``) and keeps the largest sum, printed
beside the largest peak resident set of either process (VmHWM, which counts the shared pages in full).
CPU seconds count both processes (this one's plus its reaped children's).

``--via parquet`` writes the simulated cohort to a Parquet file first and reads it back the way
``epi-spineage report --cohort`` does (``report.inputs.load_inputs``: only the analysis columns, compact
dtypes), so the peak then covers reading too and the simulator's frames are gone. Without it, the
simulator's frames stay in memory beside the analysis (the peak includes them).

Usage::

    python benchmarks/report.py --n 1000000
    python benchmarks/report.py --n 1000000 --clock cpu   # on a shared machine
    python benchmarks/report.py --n 5000000 --via parquet
    python benchmarks/report.py --n 1000000 --via parquet --jobs 1   # the steps one after another
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import tempfile
import threading
import time
from pathlib import Path


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set of this process (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_gb(field: str) -> float | None:
    """A kB field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in GB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def peak_rss_gb() -> float:
    """Peak resident set (VmHWM) since the last reset, in GB; falls back to ``ru_maxrss``."""
    peak = _status_gb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def current_rss_gb() -> float:
    rss = _status_gb("VmRSS")
    return float("nan") if rss is None else rss


def _pss_kb(pid: int) -> int:
    """Proportional set size of one process in kB (0 when it has ended or cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):  # a thread or process that ended meanwhile
            out += [int(p) for p in task.read_text().split()]
    return out


class PssSampler(threading.Thread):
    """Samples the summed Pss of this process and its children; ``peak_gb`` since the last ``reset``.

    The interval is 50 ms, or 25 times the CPU one sample took if longer: reading smaps_rollup walks the
    page tables (about 12 CPU ms for the two processes at a million participants), so the sampler stays
    under 4% of one core. Its CPU (``sample_s``) is counted in this process's CPU seconds and step times
    (``--clock cpu`` counts the whole process); the summary subtracts it where it says so."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="pss-sampler")
        self.pid = os.getpid()
        self.peak_kb = 0
        self.samples = 0
        self.sample_s = 0.0
        self.available = Path(f"/proc/{self.pid}/smaps_rollup").exists()
        self._halt = threading.Event()

    def sample(self) -> int:
        t0 = time.thread_time()
        kb = sum(_pss_kb(p) for p in [self.pid, *_children(self.pid)])
        self.sample_s += time.thread_time() - t0
        self.samples += 1
        self.peak_kb = max(self.peak_kb, kb)
        return kb

    def run(self) -> None:
        while self.available:
            t0 = time.thread_time()
            self.sample()
            if self._halt.wait(max(0.05, 25 * (time.thread_time() - t0))):
                return

    def reset(self) -> None:
        self.peak_kb = 0
        if self.available:
            self.sample()

    @property
    def peak_gb(self) -> float:
        return self.peak_kb * 1024 / 1e9 if self.available else float("nan")

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (the analysis worker)."""
    return sum(_cpu_split())


def _cpu_split() -> tuple[float, float]:
    """(this process's, its ended children's) CPU seconds."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


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


def _track_step_peaks(peaks_file: Path) -> None:
    """Wrap each analysis step so that its own peak resident set is recorded (reset before, read after),
    in whichever process runs it: one line per step appended to ``peaks_file`` (``_read_peaks``)."""
    from epi_spineage.report import steps

    def wrap(name, func):
        def run(results):
            reset_peak_rss()
            try:
                return func(results)
            finally:
                with open(peaks_file, "a", encoding="utf-8") as fh:
                    fh.write(f"{name}\t{peak_rss_gb()}\t{os.getpid()}\n")

        return run

    steps.STEPS[:] = [(name, attr, wrap(name, func)) for name, attr, func in steps.STEPS]
    from epi_spineage.report import analyses

    prepare = analyses.prepare_cohorts

    def prepare_tracked(*args, **kwargs):
        reset_peak_rss()
        try:
            return prepare(*args, **kwargs)
        finally:
            with open(peaks_file, "a", encoding="utf-8") as fh:
                fh.write(f"prepare\t{peak_rss_gb()}\t{os.getpid()}\n")

    analyses.prepare_cohorts = prepare_tracked  # type: ignore[assignment]


def _read_peaks(peaks_file: Path) -> tuple[dict[str, float], dict[str, bool]]:
    """Step -> its peak (GB), and step -> whether the worker process (not this one) ran it."""
    peaks: dict[str, float] = {}
    worker: dict[str, bool] = {}
    if peaks_file.exists():
        for line in peaks_file.read_text(encoding="utf-8").splitlines():
            name, gb, pid = line.split("\t")
            peaks[name] = float(gb)
            worker[name] = int(pid) != os.getpid()
    return peaks, worker


#: steps timed on their own lines, outside the paper's analyses (issue 18)
OWN_LINE_STEPS = ("competing risk", "multiple imputation")


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
    ap.add_argument(
        "--jobs",
        default="auto",
        help='processes for the analysis steps (the report\'s [report] jobs): "auto" = min(2, cores), or N',
    )
    args = ap.parse_args()

    from epi_spineage.report import steps
    from epi_spineage.report.analyses import merge, run_step, run_study
    from epi_spineage.report.config import StudyConfig, parse_jobs, resolve_jobs
    from epi_spineage.report.document import write_study_report
    from epi_spineage.synth.cohort import simulate_study

    if args.clock == "cpu":
        _use_cpu_clock()
    # analyse every derivation row (not only the 20% test split), so the analysed cohort is --n
    config = StudyConfig(derivation_split="", multiple_imputation=args.imputation, jobs=parse_jobs(args.jobs))
    sampler = PssSampler()
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        peaks_file = Path(tmp) / "step_peaks.tsv"
        _track_step_peaks(peaks_file)
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
        own = [s for s in steps.STEPS if s[0] in OWN_LINE_STEPS]
        steps.STEPS[:] = [s for s in steps.STEPS if s[0] not in OWN_LINE_STEPS]
        t1, c1, s1 = time.perf_counter(), _cpu_s(), _cpu_split()
        reset_peak_rss()
        sampler.reset()
        sampled = sampler.sample_s
        results = run_study(derivation, external, config)
        t_an, c_an, s2 = time.perf_counter() - t1, _cpu_s() - c1, _cpu_split()
        cpu_me, cpu_worker, cpu_sampler = s2[0] - s1[0], s2[1] - s1[1], sampler.sample_s - sampled
        pss_an = sampler.peak_gb
        step_peaks, in_worker = _read_peaks(peaks_file)
        peak_an = max([peak_rss_gb(), *step_peaks.values()])
        _progress(f"paper analyses {t_an:.1f} s (CPU {c_an:.1f} s), peak {peak_an:.2f} GB, both {pss_an:.2f} GB")
        # the steps timed on their own lines: each alone, here, on the same prepared cohorts
        own_s: dict[str, tuple[float, float]] = {}
        for name, attr, func in own:
            t3, c3 = time.perf_counter(), _cpu_s()
            merge(results, attr, run_step(results, name, func))
            own_s[name] = (time.perf_counter() - t3, _cpu_s() - c3)
            _progress(f"{name} {own_s[name][0]:.1f} s (CPU {own_s[name][1]:.1f} s)")
        steps.STEPS[:] = [*steps.STEPS, *own]
        pss_own = sampler.peak_gb
        step_peaks, in_worker = _read_peaks(peaks_file)
        peak_an = max([peak_rss_gb(), *step_peaks.values()])
        results.attach_truth(truth)
        out = Path(args.out or tmp) / "report"
        writing: dict[str, float] = {}
        t2, c2 = time.perf_counter(), time.process_time()
        reset_peak_rss()
        sampler.reset()
        index = write_study_report(out, results, config=config, synthetic=True, source="benchmark", timings=writing)
        t_wr, c_wr = time.perf_counter() - t2, time.process_time() - c2
        peak_wr = peak_rss_gb()
        pss_wr = sampler.peak_gb
        peak_all = max(peak_an, peak_wr)
        size = index.stat().st_size
        out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    sampler.stop()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    analysed = sum(c.n for c in results.cohorts.values())
    print(f"participants analysed      {analysed:,}")
    print(f"simulate (s)               {t_sim:.1f}")
    if args.via == "parquet":
        print(f"read cohort (s)            {t_read:.1f}   (Parquet -> compact frame, report.inputs)")
    print(f"cohort frame in memory     {mem_cohort / 1e9:.2f} GB")
    jobs = resolve_jobs(config.jobs)
    two = any(in_worker.values())
    print(
        f"paper analyses (s)         {t_an:.1f}   (CPU {c_an:.1f} s, both processes; --jobs {args.jobs} -> "
        f"{'2 processes' if two else '1 process'}; every step but {' and '.join(OWN_LINE_STEPS)})"
    )
    net = cpu_me - cpu_sampler
    print(f"  CPU of the memory sampler  {cpu_sampler:.1f} s (in this process's CPU above; not in the line below)")
    if two:
        print(
            f"  CPU per process            this one {net:.1f} s, the worker {cpu_worker:.1f} s: on two free cores "
            f"the analyses take about {max(net, cpu_worker):.1f} s of wall time (the larger)"
        )
    for name in OWN_LINE_STEPS:
        if name not in own_s:
            continue
        w, c = own_s[name]
        if name == "multiple imputation" and not args.imputation:
            print("multiple imputation        not run (--imputation times it on its own line)")
        else:
            print(f"{name + ' (s)':<27}{w:.1f}   (CPU {c:.1f} s; its own line, alone in one process, not in the total)")
    exports = writing.get("tables.xlsx and tables.docx", 0.0)
    print(f"write report (s)           {t_wr - exports:.1f}   (CPU {c_wr:.1f} s with the exports; target < 10)")
    print(f"manuscript exports (s)     {exports:.1f}   (tables.xlsx and tables.docx; its own line, not in the total)")
    total = t_read + t_an + t_wr - exports
    print(f"total report (s)           {total:.1f}   (target < 60 at 1,000,000: read + paper analyses + HTML/CSV/JSON)")
    print(
        f"load average               {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}   ({os.cpu_count()} cores; "
        f"jobs resolves to {jobs}; wall times mean little while other work runs)"
    )
    print("(CPU: user+system seconds of this process and the analysis worker)")
    print(f"RSS before (GB)            {rss_before:.2f}   (simulator and interpreter, before the peak reset)")
    print(f"peak RSS analyses (GB)     {peak_an:.2f}   (the largest one process reached: this one or the worker)")
    print(f"peak Pss both (GB)         {pss_an:.2f}   (paper analyses: this process + the worker, sampled)")
    print(f"peak Pss own lines (GB)    {pss_own:.2f}   (up to the end of the steps on their own lines)")
    print(f"peak RSS writing (GB)      {peak_wr:.2f}   (Pss {pss_wr:.2f})")
    print(f"peak RSS all (GB)          {peak_all:.2f}   (target < 2 at 1,000,000)")
    if sampler.samples:
        print(f"  (Pss: {sampler.samples} samples, {1000 * sampler.sample_s / sampler.samples:.1f} CPU ms each)")
    print(f"index.html (MB)            {size / 1e6:.2f}")
    print(f"report folder (MB)         {out_bytes / 1e6:.2f}")
    clock = "CPU s" if args.clock == "cpu" else "s"
    timings = {k: v for k, v in results.timings_s.items() if k not in OWN_LINE_STEPS}
    marked = {(f"{k} [worker]" if in_worker.get(k) else k): v for k, v in timings.items()}
    peaks = {(f"{k} [worker]" if in_worker.get(k) else k): v for k, v in step_peaks.items()}
    steps_sum = sum(v for k, v in timings.items() if k != "total")
    print(f"(steps marked [worker] ran in the worker process; shares are of the steps' sum, {steps_sum:.1f})")
    _shares(f"analysis step ({clock})", marked, steps_sum, peaks)
    _shares(f"writing part ({clock})", writing, c_wr if args.clock == "cpu" else t_wr)


if __name__ == "__main__":
    main()
