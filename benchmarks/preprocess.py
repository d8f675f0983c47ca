"""Images per second per core for one 2500 x 1500 16-bit radiograph, one thread.

Compares, in one process on the same image: our default path (``authors`` equalisation),
``full`` bit-depth equalisation, the step-by-step reference of the same transform, and a naive
scikit-image baseline (``exposure.equalize_hist`` + ``transform.resize`` with its defaults).
Run: ``.venv/bin/python benchmarks/preprocess.py [--seconds 2]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from epi_spineage.imaging.preprocess import PreprocessConfig, fit_size, preprocess, preprocess_reference  # noqa: E402


def synthetic_radiograph(h: int = 2500, w: int = 1500, seed: int = 0) -> np.ndarray:
    """12-bit values in uint16: a bright spine column, soft tissue, noise, a dark margin."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tissue = 900 + 700 * np.exp(-(((xx - 0.55 * w) / (0.22 * w)) ** 2))
    bodies = 600 * (np.sin(yy / (h / 14.0)) > -0.2) * np.exp(-(((xx - 0.5 * w) / (0.08 * w)) ** 2))
    img = tissue + bodies + rng.normal(0, 60, (h, w)).astype(np.float32)
    img[:, : w // 20] = 80
    return np.clip(img, 0, 4095).astype(np.uint16)


def _time(fn, seconds: float) -> list[float]:
    fn()  # warm-up (imports, allocator)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per method (default 2)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    img = synthetic_radiograph()
    h, w = fit_size(*img.shape)

    from skimage import exposure, transform

    def skimage_naive():
        eq = exposure.equalize_hist(img)
        return transform.resize(eq, (h, w))

    authors, full = PreprocessConfig(), PreprocessConfig(equalization="full")
    methods = [
        ("skimage equalize_hist + resize (baseline)", skimage_naive),
        ("ours, authors mode (default)", lambda: preprocess(img, "radiograph", authors)),
        ("ours, full bit-depth mode", lambda: preprocess(img, "radiograph", full)),
        ("ours, authors mode, step-by-step reference", lambda: preprocess_reference(img, "radiograph", authors)),
    ]
    assert np.array_equal(preprocess(img, "radiograph", authors), preprocess_reference(img, "radiograph", authors))

    print(f"preprocess benchmark: {img.shape[0]}x{img.shape[1]} uint16 (12-bit values) -> 1x1024x512 float32")
    print(
        f"one thread (cv2.setNumThreads(1)); {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}"
    )
    rows = []
    for label, fn in methods:
        times = _time(fn, args.seconds)
        med = statistics.median(times)
        rows.append((label, med * 1e3, 1.0 / med, len(times)))
    base = rows[0][2]
    print(f"{'method':<46} {'ms/image':>9} {'images/s/core':>14} {'x baseline':>11} {'runs':>5}")
    for label, ms, ips, n in rows:
        print(f"{label:<46} {ms:>9.1f} {ips:>14.1f} {ips / base:>11.1f} {n:>5}")
    default = rows[1][2]
    print(f"target >= 40 images/s/core for the default mode: {'met' if default >= 40 else 'NOT met'} ({default:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
