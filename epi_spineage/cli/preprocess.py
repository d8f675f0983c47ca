"""``epi-spineage preprocess``: one image to a PNG of the model input, for a person to look at."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

log = logging.getLogger("epi_spineage.preprocess")

EPILOG = """\
examples:
  python -m epi_spineage.preprocess scan.dcm --out scan.png
  python -m epi_spineage.preprocess images.zip::p001/lat.dcm --out p001.png --modality radiograph
  python -m epi_spineage.preprocess vfa.dcm --out vfa.png --equalization full --size 512x256
  python -m epi_spineage.preprocess scan.dcm --out after.png --before before.png

IMAGE is a DICOM, PNG, JPEG or TIFF file, or a manifest reference ARCHIVE::MEMBER into a zip/tar
archive or folder. The modality (radiograph or vfa) comes from the DICOM header when it can be
inferred (Modality BMD or "VFA" in the series description -> vfa; DX/CR/RF -> radiograph), else
from --modality, else radiograph with a warning. It decides the margin crop (radiographs only).
The PNG shows the float32 [0, 1] model input scaled to 0..255 (or 0..65535 with --bit-depth 16).
Prints one summary line: source, format, modality, size, content hash, preprocessing config hash.
"""


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"--size must look like HEIGHTxWIDTH (e.g. 1024x512), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _write_png(path: str, img01: np.ndarray, bit_depth: int) -> None:
    import cv2

    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    arr = np.rint(np.clip(img01, 0.0, 1.0) * top).astype(dtype)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise UserError(f"{path}: could not encode PNG")
    out = Path(path)
    if not out.parent.exists():
        raise UserError(f"{out.parent}: output folder does not exist")
    try:
        out.write_bytes(buf.tobytes())
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _main(argv: Sequence[str] | None) -> int:
    parser = make_parser(
        "epi-spineage preprocess",
        "Turn one image into a PNG of the spine-age model input (equalise, min-max, margin crop, "
        "resize onto a zero-padded canvas), exactly as scoring and training see it.",
        EPILOG,
    )
    parser.add_argument("image", metavar="IMAGE", help="image path or ARCHIVE::MEMBER")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument(
        "--modality", choices=("radiograph", "vfa"), help="override the modality inferred from the header"
    )
    parser.add_argument(
        "--equalization",
        choices=("authors", "full"),
        default="authors",
        help="authors: 8-bit cv2.equalizeHist as published (default); full: on the full bit depth",
    )
    parser.add_argument("--size", default="1024x512", help="model input HEIGHTxWIDTH (default 1024x512)")
    parser.add_argument(
        "--margin-crop",
        type=float,
        default=0.05,
        metavar="AREA",
        help="fraction of the area removed as a margin from radiographs (default 0.05; 0 turns it off)",
    )
    parser.add_argument("--voi-lut", action="store_true", help="apply the DICOM VOI LUT / window first (default off)")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    parser.add_argument(
        "--before", metavar="PNG", help="also write the decoded image (min-max to 8 bit) for comparison"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    from epi_spineage.imaging import PreprocessConfig, load_image, preprocess

    height, width = _parse_size(args.size)
    config = PreprocessConfig(
        height=height,
        width=width,
        equalization=args.equalization,
        margin_crop_area=args.margin_crop,
        apply_voi_lut=args.voi_lut,
    )
    image = load_image(args.image, apply_voi_lut=config.apply_voi_lut)
    inferred = image.meta.get("modality")
    if args.modality:
        modality, how = args.modality, "given"
        if inferred and inferred != args.modality:
            log.warning(
                "header suggests %s but --modality %s was given; using %s", inferred, args.modality, args.modality
            )
    elif inferred:
        modality, how = inferred, "header"
    else:
        modality, how = "radiograph", "default"
        log.warning("%s: modality not in the header; assuming radiograph (use --modality)", args.image)
    model_input = preprocess(image.pixels, modality=modality, config=config)
    _write_png(args.out, model_input[0], args.bit_depth)
    if args.before:
        p = image.pixels.astype(np.float64)
        span = float(p.max() - p.min())
        _write_png(args.before, (p - p.min()) / span if span > 0 else np.zeros_like(p), 8)
    h, w = image.pixels.shape
    print(
        f"{image.source}\tformat={image.meta['format']}\tmodality={modality} ({how})\tsize={h}x{w}"
        f"\tcontent_hash={image.content_hash}\tconfig_hash={config.config_hash()}\t-> {args.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage preprocess")


if __name__ == "__main__":
    sys.exit(main())
