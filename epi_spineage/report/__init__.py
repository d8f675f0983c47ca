"""The study report: every analysis, written as one self-contained HTML report with tables and figures.

``build_report`` runs the analyses and writes the output folder; ``demo_study`` simulates the synthetic demo
cohorts. The tool ``python -m epi_spineage.report`` lives in ``epi_spineage.cli.report``. Never imports
torch: the optional Grad-CAM gallery loads the model only when asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.errors import UserError

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


def build_report(out: Path, *, derivation=None, external=None, truth=None, config=None, synthetic: bool,
                 source: str = "", db_path: str | None = None, gallery=None, svg: bool = True,
                 extra_warnings: Sequence[str] = ()) -> Path:
    """Run every analysis and write the report under ``out``; returns the path of ``index.html``."""
    from epi_spineage.report.analyses import run_study
    from epi_spineage.report.config import StudyConfig
    from epi_spineage.report.document import write_study_report

    config = config or StudyConfig()
    t0 = time.perf_counter()
    results = run_study(derivation, external, config)
    results.warnings.extend(extra_warnings)
    if truth is not None:
        results.attach_truth(truth)
    qc = None
    if db_path is not None:
        from epi_spineage.report.scoring_qc import scoring_qc

        qc = scoring_qc(db_path)
    log.info("analyses took %.1f s", time.perf_counter() - t0)
    return write_study_report(out, results, config=config, synthetic=synthetic, source=source, qc=qc,
                              gallery=gallery, svg=svg)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m epi_spineage.report``: the tool lives in ``epi_spineage.cli.report``."""
    from epi_spineage.cli.report import main as _main

    return _main(argv)
