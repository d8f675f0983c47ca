"""``python -m epi_spineage.train``: train a spine-age model from an image manifest.

Writes ``model.safetensors`` + ``meta.json`` (the checkpoint), ``last.pt`` (resume state),
``metrics.csv``/``metrics.jsonl`` (per epoch) and ``predictions.csv`` (per image, pseudonymised) into
``--out``. Multi-GPU: ``torchrun --nproc_per_node 4 -m epi_spineage.train ...``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError

EPILOG = """examples:
  python -m epi_spineage.train --preset phantom-tiny --out runs/tiny
  python -m epi_spineage.train --manifest images.csv --out runs/b4 --init-weights b4_imagenet.safetensors
  torchrun --nproc_per_node 4 -m epi_spineage.train --manifest images.parquet --out runs/b4 --batch-size 12
  python -m epi_spineage.train --manifest images.csv --out runs/b4 --resume      # after a crash
  python -m epi_spineage.train --manifest images.csv --out runs/try --epochs 2 --allow-weak-model

Training ends with a model-quality verdict on the test split (MAE against the mean-age predictor, r,
prediction SD, the bias correction's alpha). A weak model (flat predictions, no better than the mean
age, or |alpha| > 0.9) is refused with exit 2 unless --allow-weak-model, which saves it flagged weak.

The manifest (CSV, Parquet, or a DuckDB table chosen with --table) needs columns image (a path or
ARCHIVE::MEMBER), participant_id, age_years, modality, and optionally split (train/val/test); without
split, participants are split 60/20/20 (seeded). --batch-size is per process under torchrun.
"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-size must look like 1024x512, got {text!r}") from None
    if h < 32 or w < 32:
        raise UserError("--image-size: both sides must be at least 32 pixels")
    return h, w


def build_parser():
    p = make_parser("epi-spineage train", "Train a spine-age model (timm backbone + mean-variance loss).", EPILOG)
    p.add_argument("--manifest", help="image manifest (CSV, Parquet or DuckDB)")
    p.add_argument("--table", help="table name inside a DuckDB manifest")
    p.add_argument("--out", required=True, type=Path, help="output directory (the checkpoint)")
    p.add_argument("--preset", help="named configuration; phantom-tiny makes its own phantoms (CPU demo)")
    p.add_argument("--phantoms", type=int, help="number of phantom images for a phantom preset")
    p.add_argument("--backbone", help="timm model name (default efficientnet_b4)")
    p.add_argument("--image-size", type=_size, help="HxW of the model input (default 1024x512)")
    p.add_argument("--equalization", choices=("authors", "full"), help="histogram equalisation variant")
    p.add_argument("--batch-size", type=int, help="batch size (default 45)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 100)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument(
        "--lr-schedule", choices=("constant", "cosine"), help="constant (default, the study) or cosine decay"
    )
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up over this many steps (default 0)")
    p.add_argument("--clip-grad", type=float, help="clip the gradient norm to this value (default: no clipping)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better validation MAE (default 10)")
    p.add_argument("--workers", type=int, help="DataLoader workers that decode and preprocess (default 4)")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads of the training process (default: one per core; phantom-tiny: 1)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--init-weights", help="local timm weights (safetensors/pth) for the backbone")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--seed", type=int, help="seed for the split and training (default 0)")
    p.add_argument("--max-age", type=int, help="oldest age class K (default 100; older ages are clipped)")
    p.add_argument(
        "--bias-folds",
        type=int,
        help="out-of-fold models for bias correction (default 10; "
        "0 = fit on validation predictions, the quick fallback)",
    )
    p.add_argument("--fold-epochs", type=int, help="maximum epochs of each out-of-fold model (default --epochs)")
    p.add_argument("--bias-method", choices=("beheshti", "zhang"), help="bias correction (default beheshti)")
    p.add_argument(
        "--bias-by-modality",
        action="store_true",
        default=None,
        help="also fit a separate bias correction per modality (stored beside the pooled one)",
    )
    p.add_argument("--augment", action="store_true", default=None, help="small random affine augmentation")
    p.add_argument("--cache", choices=("auto", "yes", "no"), help="keep preprocessed images in memory (auto: < 4 GiB)")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="stop training after this many minutes (after an epoch); "
        "the result then depends on the machine's speed (presets budget by epochs)",
    )
    p.add_argument(
        "--allow-weak-model",
        action="store_true",
        default=None,
        help="save a model that fails the quality check (flat, no better than the mean age, or "
        "|alpha| > 0.9), flagged as weak in meta.json, every score and the report",
    )
    p.add_argument("--key-file", help="pseudonymisation key file (default: EPI_SPINEAGE_PSEUDONYM_KEY[_FILE])")
    p.add_argument("--json", action="store_true", help="print the metadata summary as JSON instead of a table")
    return p


def _training_key(key_file: str | None, *, synthetic: bool) -> bytes:
    """The key, resolved once for the run; only a synthetic preset may fall back to the public demo key."""
    from epi_spineage.cli.common import resolve_key
    from epi_spineage.privacy import DEMO_KEY

    key = resolve_key(key_file, required=False)
    if key is not None:
        return key
    if synthetic:
        return DEMO_KEY
    raise UserError(
        "training records keyed hashes of the participants its bias correction is fitted on; set "
        "EPI_SPINEAGE_PSEUDONYM_KEY (or EPI_SPINEAGE_PSEUDONYM_KEY_FILE) to the scorer's key"
    )


def config_from_args(args):
    from epi_spineage.model.presets import make_phantoms, preset
    from epi_spineage.model.training import TrainConfig

    settings: dict = {}
    phantoms: int | None = None
    if args.preset:
        settings = preset(args.preset)
        phantoms = settings.pop("phantoms")
        phantom_seed = settings.pop("phantom_seed")
        phantom_scale = settings.pop("phantom_scale")
        if args.manifest:
            # A preset's settings on the user's own images: not synthetic, and never the public demo key.
            settings["synthetic"] = False
    elif not args.manifest:
        raise UserError("give --manifest FILE (or --preset phantom-tiny)")
    for name in (
        "backbone",
        "image_size",
        "batch_size",
        "epochs",
        "lr",
        "lr_schedule",
        "warmup_steps",
        "clip_grad",
        "patience",
        "workers",
        "threads",
        "device",
        "init_weights",
        "seed",
        "max_age",
        "bias_folds",
        "fold_epochs",
        "bias_method",
        "bias_by_modality",
        "augment",
        "cache",
        "table",
        "max_minutes",
        "allow_weak_model",
    ):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    for name in ("batch_size", "epochs", "patience", "threads"):
        if name in settings and settings[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if settings.get("lr", 1e-4) <= 0:
        raise UserError("--lr must be positive")
    if args.equalization:
        settings["preprocess"] = {"equalization": args.equalization}
    settings["key"] = _training_key(args.key_file, synthetic=settings.get("synthetic", False))
    manifest = args.manifest
    if manifest is None:
        n = args.phantoms or phantoms
        assert n is not None  # no --manifest means a preset (refused above otherwise), and it names its count
        manifest = make_phantoms(args.out / "phantoms", n, seed=phantom_seed, scale=phantom_scale)
    elif not Path(manifest).is_file():
        raise UserError(f"manifest not found: {manifest}")
    return TrainConfig(manifest=manifest, out=args.out, resume=args.resume, preset=args.preset, **settings)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(max(args.verbose, 0))
    package = logging.getLogger("epi_spineage")
    previous = package.level
    if not args.verbose:
        package.setLevel(logging.WARNING)
    try:
        cfg = config_from_args(args)
        from epi_spineage.model.pipeline import run_training, summary_text

        meta = run_training(cfg)
    finally:
        # main() may run inside another program (or a test session): leave its logging as it was
        package.setLevel(previous)
    if not meta:  # torchrun rank > 0
        return 0
    if args.json:
        meta.pop("_metrics_frame", None)
        keep = {
            k: meta[k]
            for k in (
                "model_id",
                "backbone",
                "image_size",
                "temperature",
                "metrics",
                "coverage",
                "baseline_mae_train_mean_years",
                "bias_correction_source",
                "total_seconds",
                "quality",
            )
        }
        print(json.dumps(keep, indent=2, default=str))
    else:
        print(summary_text(meta))
        print(f"checkpoint: {cfg.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage train")


if __name__ == "__main__":
    sys.exit(main())
