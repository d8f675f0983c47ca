"""CPU proof: a small spine-age model trained on 2,000 phantoms beats the training-mean predictor.

Writes 2,000 synthetic phantom DICOMs (mixed radiograph/VFA), trains the ``phantom-bench`` preset
(a small timm backbone at reduced size, see ``epi_spineage.model.presets``) within a time budget, and
prints the test MAE beside the MAE of always predicting the training-mean age (ratio; target <= 0.60).

    python benchmarks/train_phantom.py                     # about 10 minutes on 2 CPU cores
    python benchmarks/train_phantom.py --n 600 --minutes 2 # quicker look
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from epi_spineage.model.pipeline import run_training, summary_text
    from epi_spineage.model.presets import make_phantoms, preset
    from epi_spineage.model.training import TrainConfig
    from epi_spineage.schema import SYNTHETIC_NOTICE

    settings = preset("phantom-bench")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=settings.pop("phantoms"))
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="optional training time budget (default none: the preset budgets by epochs)",
    )
    p.add_argument("--backbone", default=settings.pop("backbone"))
    p.add_argument("--image-size", default="x".join(map(str, settings.pop("image_size"))))
    p.add_argument("--epochs", type=int, default=settings.pop("epochs"))
    p.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    h, w = (int(v) for v in args.image_size.split("x"))
    seed, scale = settings.pop("phantom_seed"), settings.pop("phantom_scale")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        t0 = time.monotonic()
        manifest = make_phantoms(out / "phantoms", args.n, seed=seed, scale=scale)
        t_phantoms = time.monotonic() - t0
        cfg = TrainConfig(
            manifest=manifest,
            out=out,
            backbone=args.backbone,
            image_size=(h, w),
            epochs=args.epochs,
            max_minutes=args.minutes,
            preset="phantom-bench",
            **settings,
        )
        meta = run_training(cfg)
        total = time.monotonic() - t0
    print(summary_text(meta))
    m = meta["_metrics_frame"]
    test = m[(m.split == "test") & (m.modality == "all") & (m.prediction == "uncorrected")].iloc[0]
    base = meta["baseline_mae_train_mean_years"]["test"]
    print()
    print(
        f"phantoms: {args.n} ({t_phantoms:.0f} s to write), backbone {args.backbone} at {h}x{w}, "
        f"{len(meta['history'])} epochs, total {total / 60:.1f} min"
    )
    print(
        f"test MAE {test.mae_years:.2f} years vs training-mean predictor {base:.2f} years: "
        f"ratio {test.mae_years / base:.3f} (target <= 0.60), r = {test.pearson_r:.3f}"
    )
    print(SYNTHETIC_NOTICE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
