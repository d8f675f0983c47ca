"""The study report: every analysis, written as one self-contained HTML report with tables and figures.

``build_report`` runs the analyses and writes the output folder; ``demo_study`` simulates the synthetic demo
cohorts. The tool ``python -m epi_spineage.report`` lives in ``epi_spineage.cli.report``. Never imports
torch: the optional Grad-CAM gallery loads the model only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.errors import UserError
from epi_spineage.progress import Progress

__all__ = ["main", "build_report", "demo_study"]

log = logging.getLogger(__name__)

DEFAULT_DEMO_OUT = Path("reports/demo")
DEFAULT_OUT = Path("reports/study")
DEMO_SEED = 2025
DEMO_N_DERIVATION = 10341
DEMO_N_EXTERNAL = 3508


def demo_study(seed: int = DEMO_SEED, n_derivation: int = DEMO_N_DERIVATION, n_external: int = DEMO_N_EXTERNAL):
    """The simulated demo cohorts: ``(derivation, external, truth)``."""
    from epi_spineage.synth.cohort import simulate_study

    if n_derivation < 200 or n_external < 100:
        raise UserError("demo cohorts need --n-derivation >= 200 and --n-external >= 100")
    study = simulate_study(seed=seed, n_derivation=n_derivation, n_external=n_external)
    return study.derivation, study.external, study.truth


def build_report(
    out: Path,
    *,
    derivation=None,
    external=None,
    truth=None,
    config=None,
    synthetic: bool,
    source: str = "",
    db_path: str | None = None,
    gallery=None,
    svg: bool = True,
    extra_warnings: Sequence[str] = (),
    save_cutpoints: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Run every analysis and write the report under ``out``; returns the path of ``index.html``.

    ``save_cutpoints`` (needs ``db_path``): write the accelerated-ageing cut the report learned into the
    database's ``cutpoints`` table, so that ``v_accelerated`` flags participants (docs/guides/report.md).
    ``progress``: an ``epi_spineage.progress.Progress`` that gets every step with its time (the tool
    passes the one that timed reading the inputs); without one, ``build_report`` makes its own.
    """
    from epi_spineage.report.analyses import n_steps, run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import WRITE_STEPS, write_study_report

    config = config or StudyConfig()
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(Progress("report", unit="step", logger=log)) if progress is None else progress
        # the rest of the report's steps: the analyses, the scoring QC (with --db), the sections and files
        bar.total = bar.n + n_steps() + (db_path is not None) + WRITE_STEPS
        results = run_study(derivation, external, config, progress=bar)
        results.warnings.extend(extra_warnings)
        if truth is not None:
            results.attach_truth(truth)
        if save_cutpoints:
            if db_path is None:
                raise UserError("--save-cutpoints needs --db (the database to write the cut into)")
            results.warnings.append(save_learned_cutpoint(db_path, results))
        qc = None
        if db_path is not None:
            import inspect

            from epi_spineage.report.scoring_qc import scoring_qc

            with bar.step("scoring QC"):
                params = inspect.signature(scoring_qc).parameters
                if "bias_correction" in params:
                    qc = scoring_qc(
                        db_path,
                        drift_min_count=config.drift_min_count,
                        bias_correction=config.bias_correction,
                        bias_calibration_set=config.bias_calibration_set,
                    )
                elif "drift_min_count" in params:
                    qc = scoring_qc(db_path, drift_min_count=config.drift_min_count)
                else:
                    qc = scoring_qc(db_path)
                    if config.drift_min_count is not None:
                        results.warnings.append(
                            "[scoring] drift_min_count ignored: this installation's scoring QC does not take it"
                        )
        return write_study_report(
            out,
            results,
            config=config,
            synthetic=synthetic,
            source=source,
            qc=qc,
            gallery=gallery,
            svg=svg,
            progress=bar,
        )


def cutpoint_name(results) -> tuple[str, str]:
    """(name, source role) of the cut the report learned: by which PAD the reference cohort used."""
    role = "derivation" if "derivation" in results.cohorts else next(iter(results.cohorts))
    corrected = results.cohorts[role].pad_kind == "corrected"
    return ("pad_corrected_tertile_years" if corrected else "pad_tertile_years"), role


def save_learned_cutpoint(db_path: str, results) -> str:
    """Write the learned accelerated-ageing cut into ``db_path`` (taking the writer lock); returns a log line."""
    import math

    groups = results.groups
    if groups is None or not math.isfinite(groups.cut_years):
        raise UserError("--save-cutpoints: the report learned no accelerated-ageing cut (see the data-quality section)")
    try:
        from epi_spineage.db.cutpoints import save_cutpoint
    except ImportError:
        raise UserError(
            "--save-cutpoints: this installation has no epi_spineage.db.cutpoints (a newer database schema is needed)"
        ) from None
    name, role = cutpoint_name(results)
    cfg = results.config
    method = (
        "fixed cut from the study config"
        if cfg.fixed_cut_years is not None
        else f"top tertile, quantile {cfg.tertile_method}"
    )
    save_cutpoint(
        db_path,
        name=name,
        value_years=float(groups.cut_years),
        cut_rule=cfg.cut_rule,
        source_cohort=role,
        method=method,
    )
    log.info("saved cut point %s = %.4f y into %s", name, groups.cut_years, db_path)
    return f"saved the cut point {name} = PAD {cfg.cut_rule} {groups.cut_years:.3f} y ({method}) into the database"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m epi_spineage.report``: the tool lives in ``epi_spineage.cli.report``."""
    from epi_spineage.cli.report import main as _main

    return _main(argv)
