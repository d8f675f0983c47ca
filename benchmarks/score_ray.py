"""images/s of ``--engine local`` vs ``--engine ray`` on this machine, in one run (issue 14).

Both score the same phantom DICOM folder into fresh databases with the same checkpoint. Ray
starts a local cluster (``ray.init``) with one model replica per CPU, so on a 2-core machine it
runs two replicas against the local engine's one decode worker plus the model: Ray's fixed costs
(starting the cluster and the replica processes, shipping the model, one task per unit, the final
ingest) are printed beside the rates instead of being hidden. On one machine Ray is not meant to
win; it is the way to many GPUs (docs/guides/ray.md).

    python benchmarks/score_ray.py                    # tiny network, 192 images: a couple of minutes here
    python benchmarks/score_ray.py --backbone efficientnet_b0 --size 512x256 --n 256
    python benchmarks/score_ray.py --device auto --backbone efficientnet_b4 --size 1024x512 --n 2000  # GPU node
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from score_throughput import BENCH_KEY, make_archive, make_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192, help="images (default 192)")
    ap.add_argument("--backbone", default="test_efficientnet")
    ap.add_argument("--size", default="256x128", help="model input HxW (default 256x128)")
    ap.add_argument("--scale", type=float, default=0.1, help="phantom scale (default 0.1)")
    ap.add_argument("--unit-size", type=int, default=32)
    ap.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "auto"),
        help="cpu (default), or auto: on a GPU node the local engine and each replica take the GPU path",
    )
    args = ap.parse_args(argv)
    os.environ["EPI_SPINEAGE_PSEUDONYM_KEY"] = BENCH_KEY
    height, width = (int(v) for v in args.size.split("x"))

    import ray

    from epi_spineage.score.pipeline import score_archives
    from epi_spineage.score.ray_engine import score_archives_ray

    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_archive(tmp / "images", args.n, scale=args.scale)
        model = make_model(tmp / "model", args.backbone, height, width)

        t = time.perf_counter()
        # the scorers take the key as an argument (the tools resolve it from the environment)
        opts: dict = {"workers": 1} if args.device == "cpu" else {"decode": "auto", "workers": None, "batch_size": None}
        local = score_archives(
            [folder], model, tmp / "local.duckdb", key=BENCH_KEY, device=args.device, progress=False, **opts
        )
        local_s = time.perf_counter() - t

        t = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t
        try:
            t = time.perf_counter()
            onray = score_archives_ray(
                [folder],
                model,
                tmp / "ray.duckdb",
                key=BENCH_KEY,
                device=args.device,
                progress=False,
                unit_size=args.unit_size,
            )
            ray_s = time.perf_counter() - t
        finally:
            ray.shutdown()
    assert local.n_scored == onray.n_scored == args.n, (local.n_scored, onray.n_scored)
    lr, rr, rr_all = args.n / local_s, args.n / ray_s, args.n / (ray_s + init_s)
    print(f"{args.n} phantom DICOMs, {args.backbone} at {height}x{width}, CPU, {cores} core(s)")
    print(f"local engine (1 decode worker + model): {local_s:6.1f} s  {lr:7.1f} images/s")
    print(
        f"ray engine ({onray.ray.n_replicas} replica(s), {onray.ray.n_units} units): {ray_s:6.1f} s  "
        f"{rr:7.1f} images/s  (+ {init_s:.1f} s ray.init: {rr_all:.1f} images/s with it)"
    )
    print(f"ray / local: {rr / lr:.2f} (with ray.init: {rr_all / lr:.2f})")
    path = "GPU path (device decode and preprocessing)" if onray.decode == "gpu" else "CPU reader and the CPU model"
    print(f"replicas ran the {path}")
    # the machine may be shared: the 1-minute load average says how much of it the run had
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on {cores} core(s)")
    if cores <= 2:
        print(
            f"on {cores} cores Ray's replicas compete with its own raylet, GCS and the driver for the same "
            "cores, and every replica loads the model and decodes on its own: expect Ray to be slower here"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
