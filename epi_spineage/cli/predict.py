"""``python -m epi_spineage.predict IMAGE... --model DIR``: spine age +/- SD per image, no database."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import make_parser, run_main, setup_logging

EPILOG = """examples:
  python -m epi_spineage.predict scan1.dcm scan2.dcm --model runs/tiny
  python -m epi_spineage.predict archive.zip::img001.dcm --model runs/tiny --format json
  python -m epi_spineage.predict scan1.dcm --model runs/tiny --gradcam cams/

Spine age is the expected age under the model's (temperature-scaled) distribution; +/- is its SD and
the interval its central 90%. Bias-corrected spine age needs chronological age and the cohort: see
`epi-spineage score` and the report.
"""


def build_parser():
    p = make_parser("epi-spineage predict", "Spine age +/- SD for a few images.", EPILOG)
    p.add_argument("images", nargs="+", help="image files (DICOM/PNG/JPEG/TIFF) or ARCHIVE::MEMBER references")
    p.add_argument("--model", required=True, help="checkpoint directory (model.safetensors + meta.json)")
    p.add_argument(
        "--modality",
        choices=("auto", "radiograph", "vfa"),
        default="auto",
        help="preprocessing modality (auto: from the file, else radiograph)",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--gradcam", type=Path, metavar="OUT_DIR", help="also write Grad-CAM overlay PNGs here")
    p.add_argument("--target", choices=("older", "younger"), default="older", help="Grad-CAM target")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.model.inference import predict_table

    loaded = load_checkpoint(args.model, map_location=args.device)
    table = predict_table(loaded, args.images, args.modality)
    if args.gradcam:
        from epi_spineage.model.gradcam import write_overlays

        overlays = write_overlays(loaded, args.images, args.gradcam, args.modality, args.target)
        table["gradcam_png"] = [str(p) for p in overlays]
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "json":
        print(json.dumps(table.to_dict(orient="records"), indent=2))
    else:
        for r in table.itertuples():
            print(
                f"{r.image}\t{r.modality}\t{r.spine_age_years:.1f} ± {r.spine_age_sd_years:.1f} years "
                f"(90% interval {r.interval90_low_years:.1f}-{r.interval90_high_years:.1f})"
            )
        if loaded.meta.get("synthetic"):
            print(f"model {loaded.model_id} was trained on synthetic phantoms: not a clinical estimate")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage predict")


if __name__ == "__main__":
    sys.exit(main())
