"""Torch batch preprocessing on a CUDA device vs the NumPy path (agreement and images/s).

Prints, for 2500 x 1500 16-bit radiographs: mean/max absolute difference of the CUDA batch path
against ``imaging.preprocess`` (NumPy + OpenCV, one thread), and images per second for both.
Without a CUDA device it says so and exits 0. Run: ``python benchmarks/preprocess_gpu.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main() -> int:
    try:
        import torch
    except ImportError:
        print("torch not installed; skipped")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device; skipped")
        return 0
    import cv2
    from preprocess import synthetic_radiograph

    from epi_spineage.imaging.preprocess import PreprocessConfig, preprocess
    from epi_spineage.imaging.preprocess_torch import preprocess_batch

    cv2.setNumThreads(1)
    batch = 45  # the authors' batch size
    distinct = [synthetic_radiograph(seed=s) for s in range(5)]
    images = [distinct[i % len(distinct)] for i in range(batch)]
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; batch {batch} x 2500x1500 uint16")
    print(
        f"{'mode':<8} {'mean |gpu-numpy|':>17} {'max':>9} {'gpu img/s (host arrays)':>24} "
        f"{'gpu img/s (on device)':>22} {'numpy img/s/core':>17}"
    )
    for mode in ("authors", "full"):
        cfg = PreprocessConfig(equalization=mode)
        ref = np.stack([preprocess(img, "radiograph", cfg) for img in distinct])
        out = preprocess_batch(distinct, "radiograph", cfg, device="cuda").cpu().numpy()
        diff = np.abs(out - ref)
        on_device = [torch.from_numpy(img.astype(np.int32)).cuda() for img in images]
        timings = {}
        for label, inputs in (("host", images), ("device", on_device)):
            preprocess_batch(inputs, "radiograph", cfg, device="cuda")
            torch.cuda.synchronize()
            reps, t0 = 3, time.perf_counter()
            for _ in range(reps):
                preprocess_batch(inputs, "radiograph", cfg, device="cuda")
            torch.cuda.synchronize()
            timings[label] = reps * batch / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for img in images[:15]:
            preprocess(img, "radiograph", cfg)
        cpu = 15 / (time.perf_counter() - t0)
        print(
            f"{mode:<8} {diff.mean():>17.2e} {diff.max():>9.2e} {timings['host']:>24.0f} "
            f"{timings['device']:>22.0f} {cpu:>17.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
