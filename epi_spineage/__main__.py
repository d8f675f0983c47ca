"""``epi-spineage <tool> [args]``: dispatches to ``python -m epi_spineage.<tool>``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from epi_spineage import __version__
from epi_spineage.schema import TOOLS

_HELP = {
    "synth": "simulated cohorts (synth cohort) and phantom DICOM archives (synth images)",
    "preprocess": "one image to a PNG of the model input",
    "train": "train a spine-age model from a manifest (--preset phantom-tiny for the CPU demo)",
    "predict": "spine age +/- SD for a few images, optional Grad-CAM",
    "explain": "Grad-CAM gallery for chosen images",
    "score": "score archives into DuckDB (the nightly job)",
    "ingest": "load Parquet shards (Ray or spool) into DuckDB",
    "cohort": "load and validate a cohort table into DuckDB (ids pseudonymised); cut points; bias fits per scanner",
    "frax": "export FRAX batch input with spine age; import FRAX results",
    "report": "the HTML report (no arguments: the synthetic demo)",
    "demo": "the whole product on synthetic data: phantom archive -> model -> DuckDB -> report",
}


def _usage() -> str:
    lines = [f"usage: epi-spineage <tool> [options]   (epi_spineage {__version__})", "", "tools:"]
    lines += [f"  {t:<11} {_HELP.get(t, '')}" for t in TOOLS]
    lines += ["", "Run `epi-spineage <tool> --help` for a tool's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(__version__)
        return 0
    tool = args[0]
    if tool not in TOOLS:
        print(f"epi-spineage: error: unknown tool {tool!r}; choose one of: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"epi_spineage.cli.{tool}")
    except ModuleNotFoundError as exc:
        print(
            f"epi-spineage: error: tool {tool!r} needs a package that is not installed ({exc.name}); "
            "install the extra, e.g. pip install 'epi-spineage[imaging]'",
            file=sys.stderr,
        )
        return 2
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
