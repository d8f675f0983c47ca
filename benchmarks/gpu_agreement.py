"""GPU decode vs CPU decode on the same images: content hashes and spine ages (the 0.01-year target).

Scores one archive twice on CUDA, ``--decode cpu`` then ``--decode gpu``, with an (untrained)
EfficientNet-B4 at 1024 x 512, and prints how many hashes agree and the largest score difference.
Lossless data must give identical hashes; scores differ only through the preprocessing resampler
(``imaging/preprocess_torch.py``) and bf16 rounding. Run by ``benchmarks/gpu_device_check.sh``.

    python benchmarks/gpu_agreement.py --compression jpeg2000 --n 48 --scale 1.0
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from score_throughput import BENCH_KEY, make_archive, make_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compression", default="jpeg2000", choices=("none", "rle", "jpeg2000"))
    p.add_argument("--n", type=int, default=48, help="distinct images (default 48)")
    p.add_argument("--scale", type=float, default=1.0, help="phantom scale (1.0: 2400 x 1600 px)")
    p.add_argument("--backbone", default="efficientnet_b4")
    p.add_argument("--size", default="1024x512")
    args = p.parse_args(argv)

    import duckdb
    import torch

    from epi_spineage.score.pipeline import score_archives

    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    height, width = (int(v) for v in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="gpu-agree-"))
    try:
        folder = make_archive(tmp / "archive", args.n, scale=args.scale, n_base=args.n, compression=args.compression)
        model = make_model(tmp / "model", args.backbone, height, width)
        out = {}
        for decode in ("cpu", "gpu"):
            db = tmp / f"{decode}.duckdb"
            s = score_archives(
                [folder],
                model,
                db,
                batch_size=16,
                workers=None,
                device="cuda",
                decode=decode,
                key=BENCH_KEY,
                progress=False,
            )
            con = duckdb.connect(str(db))
            out[decode] = {
                r[0]: r[1:]
                for r in con.execute(
                    "SELECT source_path, content_hash, spine_age_years, decoder FROM scores"
                ).fetchall()
            }
            con.close()
            print(f"# --decode {decode}: {s.line()}")
        cpu, gpu = out["cpu"], out["gpu"]
        common = sorted(set(cpu) & set(gpu))
        same_hash = sum(cpu[k][0] == gpu[k][0] for k in common)
        worst = max(abs(cpu[k][1] - gpu[k][1]) for k in common) if common else float("nan")
        decoders = sorted({gpu[k][2] for k in common})
        print(
            f"{args.compression} {args.scale:g}: {len(common)} images scored both ways; identical content hash "
            f"{same_hash}/{len(common)}; largest |GPU - CPU| spine age {worst:.4f} years "
            f"(target < 0.01: {'met' if worst < 0.01 else 'NOT met'}); GPU-path decoders {decoders}"
        )
        return 0 if same_hash == len(common) and worst < 0.01 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
