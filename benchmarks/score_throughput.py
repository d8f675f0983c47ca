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

``--compression rle|jpeg2000`` writes the archive compressed. JPEG 2000 encoding is slow (about a
second per 2400 x 1600 image on one core), so ``--distinct`` images (default 24) are encoded once and
copied under new names; identical pixels would be skipped as duplicates, so de-duplication is
switched off for the measurement (the output says so). ``--decode gpu`` runs the GPU path
(``score.gpu_batches``: nvImageCodec, device-side pixels and preprocessing; docs/guides/score.md#gpu)
and adds a GPU decode probe and the SHA-256 throughput of the hashing pool; ``--compile`` compiles the
network for both the model-alone and the end-to-end runs. Every run prints end to end, model alone
and their ratio. ``--decode gpu --device cpu`` runs the GPU loop's logic with a CPU stand-in decoder
(a check of the script, not a measurement).

    python benchmarks/score_throughput.py                       # CPU, under a minute here
    python benchmarks/score_throughput.py --null-model --n 192 --size 1024x512   # pipeline ceiling
    python benchmarks/score_throughput.py --device cuda --backbone efficientnet_b4 --size 1024x512
    python benchmarks/score_throughput.py --device cuda --decode gpu --compile --compression jpeg2000 \\
        --scale 1.0 --backbone efficientnet_b4 --size 1024x512 --batch-size 64   # the H200 targets
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


def make_archive(
    folder: Path, n: int, *, scale: float, n_base: int = 24, seed: int = 0, compression: str = "none"
) -> Path:
    """``n`` DICOM files with distinct pixels, made from ``n_base`` rendered phantoms.

    Compressed (``rle`` / ``jpeg2000``): the ``n_base`` phantoms are encoded once and copied, so the
    pixels repeat every ``n_base`` files (measure with ``no_deduplication``).
    """
    from epi_spineage.synth.dicom import dicom_bytes, make_uid
    from epi_spineage.synth.phantom import render_phantom

    rng = np.random.default_rng(seed)
    bases = [
        np.minimum(
            render_phantom(float(rng.uniform(45, 90)), style="radiograph", seed=seed + b, scale=scale, bits_stored=12),
            4095,
        ).astype(np.uint16)
        for b in range(n_base)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    if compression != "none":
        encoded = [
            dicom_bytes(
                px,
                modality="radiograph",
                patient_name=f"BENCH^{b}",
                patient_id=f"B{b:07d}",
                study_date="20240101",
                manufacturer="BENCH",
                bits_stored=12,
                compression=compression,
                sop_instance_uid=make_uid(rng),
                rng=rng,
            )
            for b, px in enumerate(bases)
        ]
        for i in range(n):
            (folder / f"img{i:06d}.dcm").write_bytes(encoded[i % n_base])
        return folder
    for i in range(n):
        px = bases[i % n_base].copy()
        px[0, 0], px[0, 1] = i % 4096, i // 4096  # distinct content hash per file
        data = dicom_bytes(
            px,
            modality="radiograph",
            patient_name=f"BENCH^{i}",
            patient_id=f"B{i:07d}",
            study_date=f"2024{1 + i % 12:02d}01",
            manufacturer="BENCH",
            bits_stored=12,
            sop_instance_uid=make_uid(rng),
            rng=rng,
        )
        (folder / f"img{i:06d}.dcm").write_bytes(data)
    return folder


def make_model(out: Path, backbone: str, height: int, width: int) -> Path:
    import torch

    from epi_spineage.imaging.preprocess import PreprocessConfig
    from epi_spineage.model.checkpoint import save_checkpoint
    from epi_spineage.model.network import build_model

    torch.manual_seed(0)
    save_checkpoint(
        build_model(backbone, in_chans=1), out, {"preprocess": PreprocessConfig(height=height, width=width)}
    )
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


def bench_model(
    model_dir: Path, device: str, batch_size: int, n_batches: int, threads: int, compile_model: bool = False
) -> float:
    """images/s of ``LoadedModel.predict`` on preprocessed batches (already in memory)."""
    import torch

    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.score.gpu_batches import maybe_compile

    if device == "cpu":
        torch.set_num_threads(threads)
    loaded = load_checkpoint(model_dir, map_location=device)
    maybe_compile(loaded, compile_model)
    cfg = loaded.preprocess_config
    batch = torch.rand(batch_size, 1, cfg.height, cfg.width)
    if device == "cuda":
        batch = batch.pin_memory()  # the DataLoader pins too: compare like with like
    for _ in range(2 if not compile_model else 4):  # compiling happens in the first calls
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


class _NeverSeen(dict):
    """A de-duplication store that remembers nothing: repeated pixels are scored every time."""

    def get(self, key, default=None):
        return default

    def __setitem__(self, key, value):
        pass


def no_deduplication() -> None:
    """Switch off within-run de-duplication by content hash (for archives of repeated images)."""
    from epi_spineage.score import pipeline

    pipeline._seen_hashes = lambda known: _NeverSeen()


def bench_hash(threads: int, shape=(2400, 1600), n: int = 32) -> tuple[float, float]:
    """GB/s of ``content_hash`` on uint16 images: one thread, and ``threads`` threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    from epi_spineage.imaging.image import content_hash

    imgs = [np.random.default_rng(i).integers(0, 4096, shape, dtype=np.uint16) for i in range(4)]
    t = time.perf_counter()
    for i in range(n // 4):
        content_hash(imgs[i % 4])
    one = (n // 4) * imgs[0].nbytes / (time.perf_counter() - t) / 1e9
    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        list(pool.map(content_hash, [imgs[i % 4] for i in range(n)]))
        many = n * imgs[0].nbytes / (time.perf_counter() - t) / 1e9
    return one, many


def bench_gpu_decode(folder: Path, config, n: int, batch_size: int, device: str) -> tuple[float, str]:
    """images/s of header parsing + batched device decode + device pixels + device preprocessing, one
    thread (the GPU path's work per image, without the workers, the model or the hashing)."""
    import torch

    from epi_spineage.imaging.encapsulated import parse_dicom
    from epi_spineage.imaging.gpu_decode import (
        CpuCodestreamDecoder,
        NvImageCodecDecoder,
        finish_pixels,
        plan_pixels,
        stored_tensor,
    )
    from epi_spineage.imaging.preprocess_torch import preprocess_one

    decoder = NvImageCodecDecoder() if device == "cuda" else CpuCodestreamDecoder()
    files = [f.read_bytes() for f in sorted(folder.iterdir())[:n]]

    def run(chunk):
        frames = [parse_dicom(b) for b in chunk]
        streams = [f for f in frames if f.codestream]
        decoded = iter(decoder.decode([f.data for f in streams], device))
        out = []
        for f in frames:
            stored = next(decoded) if f.codestream else stored_tensor(f, device, pin=device == "cuda")
            values, _ = finish_pixels(stored, plan_pixels(f.info))
            out.append(preprocess_one(values, "radiograph", config, device))
        return torch.stack(out)

    run(files[:batch_size])  # warm-up (decoder and allocator start-up)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(files), batch_size):
        run(files[i : i + batch_size])
    if device == "cuda":
        torch.cuda.synchronize()
    return len(files) / (time.perf_counter() - t), decoder.name


def bench_end_to_end(
    folder: Path,
    model_dir: Path,
    db: Path,
    device: str,
    batch_size: int,
    workers: int,
    decode: str = "cpu",
    compile_model: bool = False,
):
    from epi_spineage.score.pipeline import score_archives

    summary = score_archives(
        [folder],
        model_dir,
        db,
        batch_size=batch_size,
        workers=workers,
        device=device,
        key=BENCH_KEY,
        lock_timeout_s=30,
        progress=False,
        decode=decode,
        compile_model=compile_model,
    )
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
    p.add_argument(
        "--compression",
        default="none",
        choices=("none", "rle", "jpeg2000"),
        help="pixel data encoding of the archive (default none)",
    )
    p.add_argument(
        "--distinct", type=int, default=24, help="distinct images encoded for a compressed archive, reused (default 24)"
    )
    p.add_argument("--decode", default="cpu", choices=("cpu", "gpu"), help="score --decode (default cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (model alone and end to end)")
    p.add_argument(
        "--null-model",
        action="store_true",
        help="end to end with the model replaced by a no-op that reads each batch: the pipeline's own "
        "ceiling, compared with decode alone (what matters when the model is fast, as on a GPU)",
    )
    args = p.parse_args(argv)

    gpu = args.device == "cuda"
    backbone = args.backbone or ("efficientnet_b4" if gpu else "mobilenetv3_small_100")
    height, width = (int(v) for v in (args.size or ("1024x512" if gpu else "512x256")).lower().split("x"))
    n = args.n or (3000 if gpu else 400)
    if args.decode == "gpu" and not gpu:
        # The GPU loop's logic on the CPU with a stand-in decoder: a check of this script, not a figure.
        from epi_spineage.imaging.gpu_decode import CpuCodestreamDecoder
        from epi_spineage.score import gpu_batches

        gpu_batches.resolve_decode = lambda decode, device: (
            gpu_batches.DecodeChoice("gpu", lambda _d: CpuCodestreamDecoder())
            if decode == "gpu"
            else gpu_batches.DecodeChoice("cpu")
        )
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
        folder = make_archive(
            tmp / "archive",
            n,
            scale=scale,
            n_base=args.distinct if args.compression != "none" else 24,
            compression=args.compression,
        )
        model_dir = make_model(tmp / "model", backbone, height, width)
        print(
            f"# {n} phantom DICOMs (scale {scale}, {args.compression}), {backbone} at {height}x{width}, "
            f"device {args.device}, decode {args.decode}{', compiled' if args.compile else ''}, "
            f"batch {batch_size}, {workers} decode worker(s); setup {time.perf_counter() - t:.1f} s"
        )
        if args.compression != "none":
            no_deduplication()
            print(
                f"# {args.distinct} distinct images encoded once ({args.compression}) and reused under new names: "
                "de-duplication is switched off for this measurement"
            )
        if args.decode == "gpu" and not gpu:
            print("# --decode gpu on the CPU: the GPU loop with a CPU stand-in decoder (a logic check, not a figure)")
        if gpu:
            print(f"# GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; {os.cpu_count()} CPU cores")
        from epi_spineage.imaging.preprocess import PreprocessConfig
        from epi_spineage.model.checkpoint import read_meta

        cfg = PreprocessConfig.from_dict(read_meta(model_dir)["preprocess"])
        decode = bench_decode(
            folder,
            cfg,
            min(n, 200 if not gpu else 300) if args.compression != "jpeg2000" else min(n, 24 if not gpu else 16),
        )
        print(f"decode+preprocess only (1 core):   {decode:8.1f} images/s  (CPU reader)")
        if args.decode == "gpu":
            gdec, name = bench_gpu_decode(folder, cfg, min(n, 256 if gpu else 32), batch_size, args.device)
            print(f"GPU path decode+preprocess only:   {gdec:8.1f} images/s  ({name}, one thread, no model)")
            threads = max(2, min(8, (os.cpu_count() or 2) // 2))
            one, many = bench_hash(threads)
            print(
                f"SHA-256 content hash, 2400x1600:   {one:8.2f} GB/s one thread, {many:.2f} GB/s with {threads} "
                f"threads (1,000 images/s needs 7.7 GB/s)"
            )
        if args.null_model:
            from epi_spineage.model.checkpoint import LoadedModel

            LoadedModel.predict = null_predict
            print(
                "model replaced by a no-op that reads each batch (--null-model): end to end is the pipeline's ceiling"
            )
        else:
            model = bench_model(
                model_dir,
                args.device,
                batch_size,
                n_batches=(8 if not gpu else 40),
                threads=1,
                compile_model=args.compile,
            )
            what = ("1 core" if not gpu else "GPU, bf16, channels-last") + (", compiled" if args.compile else "")
            print(f"model only ({what}):".ljust(36) + f"{model:8.1f} images/s")
        summary = bench_end_to_end(
            folder,
            model_dir,
            tmp / "bench.duckdb",
            args.device,
            batch_size,
            workers,
            decode=args.decode,
            compile_model=args.compile,
        )
        e2e = summary.loop_images_per_s
        tail = summary.steady_seconds - summary.loop_seconds
        print(f"end to end (score_archives):        {e2e:8.1f} images/s  (first to last batch scored)")
        print(
            f"  with the run's fixed costs:       {summary.steady_images_per_s:8.1f} images/s after the first batch "
            f"(final commit + shutdown {tail:.2f} s); {summary.images_per_s:.1f} images/s with worker start-up "
            f"({summary.n_scored} in {summary.seconds:.1f} s)"
        )
        if args.null_model:
            capacity = decode * workers
            print(
                f"end to end / decode alone:          {e2e / capacity:8.2f}  ({workers} worker(s) x decode alone; "
                f"1.00 = the pipeline costs nothing)"
            )
            print(f"  with the run's fixed costs:       {summary.steady_images_per_s / capacity:8.2f}")
            print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        else:
            print(
                f"end to end / model alone:           {e2e / model:8.2f}"
                + ("  (target >= 0.80 of the compiled model)" if gpu and args.compile else "")
            )
        if args.decode == "gpu":
            print(f"decoded on the GPU path: {summary.n_gpu_decoded}; by the CPU reader: {summary.n_cpu_fallback}")
        if gpu:
            print(f"decode capacity ({workers} workers, est.): {decode * workers:8.1f} images/s")
        if not gpu and not args.null_model and args.decode == "cpu":
            slower = min(decode, model)
            ratio = e2e / slower
            verdict = "met" if ratio >= 0.8 else "NOT met"
            print(f"end to end / slower stage:          {ratio:8.2f}  (target >= 0.80: {verdict})")
            cdec, cmod = bench_concurrent(folder, cfg, model_dir, batch_size, min(n, 300))
            print(
                f"both stages at once, uncoupled:     decode {cdec:.1f}, model {cmod:.1f} images/s "
                f"(end to end / slower of these: {e2e / min(cdec, cmod):.2f})"
            )
            load = os.getloadavg()[0]
            print(f"# load average {load:.1f} on {os.cpu_count()} cores: other processes share these cores")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
