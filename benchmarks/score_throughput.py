"""Scoring throughput on phantom DICOMs: decode+preprocess alone, model alone, and end to end.

CPU (default): one decode worker and the model on the other core; the target is end-to-end
images/s >= 0.8 x the slower of the two stages measured alone on one core each.

GPU: ``--device cuda --backbone efficientnet_b4 --size 1024x512`` reports end-to-end images/s on
one GPU and its share of model-only throughput (bf16, channels-last), with as many decode workers
as cores allow. Needs only torch, timm, numpy, pydicom, opencv, duckdb, pyarrow, safetensors and
this repository (no pretrained weights: the network is untrained; speed does not depend on it).

End to end is the per-image rate from the first batch to the last one scored; the line below it
adds the run's fixed costs at the end (final commit, worker shutdown), which dominate tiny runs.
``--null-model`` swaps the model for a no-op that reads each batch, so end to end shows the
pipeline's own ceiling against decode alone (large images are where its per-image costs show).

    python benchmarks/score_throughput.py                       # CPU, under a minute here
    python benchmarks/score_throughput.py --null-model --n 192 --size 1024x512   # pipeline ceiling
    python benchmarks/score_throughput.py --device cuda --backbone efficientnet_b4 --size 1024x512
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH_KEY = "benchmark-key-0123456789abcdef"


def make_archive(folder: Path, n: int, *, scale: float, n_base: int = 24, seed: int = 0) -> Path:
    """``n`` DICOM files with distinct pixels, made from ``n_base`` rendered phantoms."""
    from epi_spineage.synth.dicom import dicom_bytes, make_uid
    from epi_spineage.synth.phantom import render_phantom

    rng = np.random.default_rng(seed)
    bases = [np.minimum(render_phantom(float(rng.uniform(45, 90)), style="radiograph", seed=seed + b,
                                       scale=scale, bits_stored=12), 4095).astype(np.uint16)
             for b in range(n_base)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        px = bases[i % n_base].copy()
        px[0, 0], px[0, 1] = i % 4096, i // 4096  # distinct content hash per file
        data = dicom_bytes(px, modality="radiograph", patient_name=f"BENCH^{i}", patient_id=f"B{i:07d}",
                           study_date=f"2024{1 + i % 12:02d}01", manufacturer="BENCH", bits_stored=12,
                           sop_instance_uid=make_uid(rng), rng=rng)
        (folder / f"img{i:06d}.dcm").write_bytes(data)
    return folder


def make_model(out: Path, backbone: str, height: int, width: int) -> Path:
    import torch

    from epi_spineage.imaging.preprocess import PreprocessConfig
    from epi_spineage.model.checkpoint import save_checkpoint
    from epi_spineage.model.network import build_model

    torch.manual_seed(0)
    save_checkpoint(build_model(backbone, in_chans=1), out, {"preprocess": PreprocessConfig(height=height, width=width)})
    return out


def bench_decode(folder: Path, config, n: int) -> float:
    """images/s of read + decode + preprocess in this process, one thread."""
    import cv2

    from epi_spineage.imaging import load_image
    from epi_spineage.imaging.preprocess import preprocess

    cv2.setNumThreads(1)
    files = sorted(folder.iterdir())[:n]
    t = time.perf_counter()
    for f in files:
        img = load_image(f.read_bytes(), name=str(f))
        preprocess(img.pixels, modality=img.meta.get("modality") or "radiograph", config=config)
    return len(files) / (time.perf_counter() - t)


def bench_model(model_dir: Path, device: str, batch_size: int, n_batches: int, threads: int) -> float:
    """images/s of ``LoadedModel.predict`` on preprocessed batches (already in memory)."""
    import torch

    from epi_spineage.model.checkpoint import load_checkpoint

    if device == "cpu":
        torch.set_num_threads(threads)
    loaded = load_checkpoint(model_dir, map_location=device)
    cfg = loaded.preprocess_config
    batch = torch.rand(batch_size, 1, cfg.height, cfg.width)
    if device == "cuda":
        batch = batch.pin_memory()  # the DataLoader pins too: compare like with like
    for _ in range(2):
        loaded.predict(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n_batches):
        loaded.predict(batch)  # returns numpy, so each call waits for the GPU
    return n_batches * batch_size / (time.perf_counter() - t)


def _decode_proc(folder, config_dict, n, out):
    from epi_spineage.imaging.preprocess import PreprocessConfig
    from epi_spineage.score.malloc import keep_freed_memory

    keep_freed_memory()

    out.put(bench_decode(Path(folder), PreprocessConfig.from_dict(config_dict), n))


def bench_concurrent(folder: Path, config, model_dir: Path, batch_size: int, n: int) -> tuple[float, float]:
    """Both stages at once, uncoupled (decode in another process, model here): what the machine gives
    the two stages together. On an otherwise idle machine this equals the stages alone; on a shared
    one it shows the ceiling any pipeline could reach."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_decode_proc, args=(str(folder), config.to_dict(), n, q))
    proc.start()
    time.sleep(1.0)  # let the child import before the model starts
    model = bench_model(model_dir, "cpu", batch_size, n_batches=max(4, n // batch_size // 2), threads=1)
    decode = q.get()
    proc.join()
    return decode, model


def null_predict(self, batch):
    """``--null-model``: read the batch once (as a copy to the GPU would) and return constants, so
    that end to end shows what the pipeline itself costs when the model is fast."""
    batch.sum()
    n = batch.shape[0]
    return np.full(n, 60.0), np.full(n, 5.0)


def bench_end_to_end(folder: Path, model_dir: Path, db: Path, device: str, batch_size: int, workers: int):
    from epi_spineage.score.pipeline import score_archives

    summary = score_archives([folder], model_dir, db, batch_size=batch_size, workers=workers, device=device,
                             key=BENCH_KEY, lock_timeout_s=30, progress=False)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--backbone", default=None, help="timm backbone (default mobilenetv3_small_100 on CPU)")
    p.add_argument("--size", default=None, help="HxW model input (default 512x256 CPU, 1024x512 GPU)")
    p.add_argument("--n", type=int, default=None, help="images end to end (default 400 CPU, 3000 GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 CPU, 32 GPU")
    p.add_argument("--workers", type=int, default=None, help="decode workers (default 1 CPU; cores-1 GPU)")
    p.add_argument("--scale", type=float, default=None, help="phantom scale (default 0.5: 1200 x 800 px)")
    p.add_argument("--keep", default=None, help="keep the temporary files in this folder")
    p.add_argument("--null-model", action="store_true",
                   help="end to end with the model replaced by a no-op that reads each batch: the pipeline's own "
                        "ceiling, compared with decode alone (what matters when the model is fast, as on a GPU)")
    args = p.parse_args(argv)

    gpu = args.device == "cuda"
    backbone = args.backbone or ("efficientnet_b4" if gpu else "mobilenetv3_small_100")
    height, width = (int(v) for v in (args.size or ("1024x512" if gpu else "512x256")).lower().split("x"))
    n = args.n or (3000 if gpu else 400)
    batch_size = args.batch_size or (32 if gpu else 16)
    workers = args.workers if args.workers is not None else (max(1, min(15, (os.cpu_count() or 2) - 1)) if gpu else 1)
    scale = args.scale or 0.5

    import torch

    from epi_spineage.score.malloc import keep_freed_memory

    # The scorer sets these allocator thresholds in its processes; measure the stages alone under
    # the same ones so that the ratios compare like with like.
    keep_freed_memory()
    if gpu and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="score-bench-"))
    try:
        t = time.perf_counter()
        folder = make_archive(tmp / "archive", n, scale=scale)
        model_dir = make_model(tmp / "model", backbone, height, width)
        print(f"# {n} phantom DICOMs (scale {scale}), {backbone} at {height}x{width}, device {args.device}, "
              f"batch {batch_size}, {workers} decode worker(s); setup {time.perf_counter() - t:.1f} s")
        if gpu:
            print(f"# GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {os.cpu_count()} CPU cores")
        from epi_spineage.model.checkpoint import read_meta
        from epi_spineage.imaging.preprocess import PreprocessConfig

        cfg = PreprocessConfig.from_dict(read_meta(model_dir)["preprocess"])
        decode = bench_decode(folder, cfg, min(n, 200 if not gpu else 300))
        print(f"decode+preprocess only (1 core):   {decode:8.1f} images/s")
        if args.null_model:
            from epi_spineage.model.checkpoint import LoadedModel

            LoadedModel.predict = null_predict
            print("model replaced by a no-op that reads each batch (--null-model): end to end is the pipeline's ceiling")
        else:
            model = bench_model(model_dir, args.device, batch_size, n_batches=(8 if not gpu else 40), threads=1)
            print(f"model only ({'1 core' if not gpu else 'GPU, bf16, channels-last'}):{' ' * (9 if not gpu else 0)} "
                  f"{model:8.1f} images/s")
        summary = bench_end_to_end(folder, model_dir, tmp / "bench.duckdb", args.device, batch_size, workers)
        e2e = summary.loop_images_per_s
        tail = summary.steady_seconds - summary.loop_seconds
        print(f"end to end (score_archives):        {e2e:8.1f} images/s  (first to last batch scored)")
        print(f"  with the run's fixed costs:       {summary.steady_images_per_s:8.1f} images/s after the first batch "
              f"(final commit + shutdown {tail:.2f} s); {summary.images_per_s:.1f} images/s with worker start-up "
              f"({summary.n_scored} in {summary.seconds:.1f} s)")
        if args.null_model:
            capacity = decode * workers
            print(f"end to end / decode alone:          {e2e / capacity:8.2f}  ({workers} worker(s) x decode alone; "
                  f"1.00 = the pipeline costs nothing)")
            print(f"  with the run's fixed costs:       {summary.steady_images_per_s / capacity:8.2f}")
            print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        elif gpu:
            print(f"share of model-only throughput:     {e2e / model:8.2f}")
        if gpu:
            print(f"decode capacity ({workers} workers, est.): {decode * workers:8.1f} images/s")
        if not gpu and not args.null_model:
            slower = min(decode, model)
            ratio = e2e / slower
            print(f"end to end / slower stage:          {ratio:8.2f}  (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
            cdec, cmod = bench_concurrent(folder, cfg, model_dir, batch_size, min(n, 300))
            print(f"both stages at once, uncoupled:     decode {cdec:.1f}, model {cmod:.1f} images/s "
                  f"(end to end / slower of these: {e2e / min(cdec, cmod):.2f})")
            load = os.getloadavg()[0]
            print(f"# load average {load:.1f} on {os.cpu_count()} cores: other processes share these cores")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
