"""Training and inference throughput of the full-size spine-age network on one GPU.

EfficientNet-B4 (timm, 1 channel) + the methods' age head at 1024 x 512, bf16 autocast, channels-last,
Adam and the mean-variance loss, on random tensors (this measures the device, not the data path).
Prints training images/s, inference images/s and peak memory (``torch.cuda.max_memory_allocated``).

    python benchmarks/gpu_train_step.py                  # batch 45 (the study's global batch)
    python benchmarks/gpu_train_step.py --batch 64
    python benchmarks/gpu_train_step.py --find-max       # also probe the largest batch that fits
    python benchmarks/gpu_train_step.py --smoke          # tiny CPU run, checks the script itself

Needs only torch, timm and numpy (run from the repository root).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from epi_spineage.model.loss import MeanVarianceLoss  # noqa: E402  (torch only)
from epi_spineage.model.network import build_model  # noqa: E402  (torch + timm only)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _oom_types():
    types = [torch.cuda.OutOfMemoryError] if hasattr(torch.cuda, "OutOfMemoryError") else []
    return tuple(types) or (RuntimeError,)


def measure(
    backbone: str,
    batch: int,
    size: tuple[int, int],
    device: torch.device,
    steps: int,
    warmup: int,
    infer_batch: int | None = None,
    seed: int = 0,
) -> dict:
    """One configuration: returns a dict of figures (images/s, seconds/step, peak memory)."""
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    net = build_model(backbone).to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    loss_fn = MeanVarianceLoss().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    h, w = size
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.rand(batch, 1, h, w, generator=gen).to(device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    ages = (40 + 60 * torch.rand(batch, generator=gen)).to(device)

    # Everything the step uses is passed in, not closed over: `opt`, `net` and `x` are deleted below to free
    # device memory between the training and inference phases.
    def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = net(x)
        loss = loss_fn(logits.float(), ages)
        loss.backward()
        opt.step()
        return loss

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    net.train()
    for _ in range(warmup):
        train_step(net, opt, x)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = train_step(net, opt, x)
    _sync(device)
    train_s = time.perf_counter() - t0
    peak_train = torch.cuda.max_memory_allocated(device) if cuda else 0
    out = {
        "backbone": backbone,
        "image_size": f"{h}x{w}",
        "batch": batch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "train_steps": steps,
        "train_s_per_step": train_s / steps,
        "train_images_per_s": batch * steps / train_s,
        "train_peak_mem_gib": peak_train / 2**30,
        "final_loss": float(loss.detach()),
    }
    del opt
    ib = infer_batch or batch
    xi = torch.rand(ib, 1, h, w, generator=gen).to(device)
    if cuda:
        xi = xi.contiguous(memory_format=torch.channels_last)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    net.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        for _ in range(warmup):
            net(xi)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            net(xi)
        _sync(device)
    infer_s = time.perf_counter() - t0
    out.update(
        {
            "infer_batch": ib,
            "infer_images_per_s": ib * steps / infer_s,
            "infer_peak_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if cuda else 0.0,
        }
    )
    del net, x, xi
    if cuda:
        torch.cuda.empty_cache()
    return out


def fits(backbone, batch, size, device) -> bool:
    """Whether two training steps at ``batch`` run without running out of memory."""
    try:
        measure(backbone, batch, size, device, steps=1, warmup=1)
        return True
    except _oom_types():
        gc.collect()  # drop the failed step's tensors before the next probe
        torch.cuda.empty_cache()
        return False


def find_max_batch(backbone, size, device, start: int, limit: int = 1024) -> int:
    """Largest batch that trains: doubling from ``start``, then bisection."""
    lo = 0
    b = start
    while b <= limit and fits(backbone, b, size, device):
        lo, b = b, b * 2
    hi = min(b, limit + 1)
    if lo == 0:  # even start fails: bisect below it
        hi, lo = start, 0
    while hi - lo > max(1, lo // 16):  # within ~6%
        mid = (lo + hi) // 2
        if mid == lo:
            break
        if fits(backbone, mid, size, device):
            lo = mid
        else:
            hi = mid
    return lo


def _print(r: dict) -> None:
    print(f"{r['backbone']} {r['image_size']} on {r['device_name']}: batch {r['batch']}")
    print(
        f"  training : {r['train_images_per_s']:8.1f} images/s ({r['train_s_per_step'] * 1000:.0f} ms/step), "
        f"peak memory {r['train_peak_mem_gib']:.2f} GiB"
    )
    print(
        f"  inference: {r['infer_images_per_s']:8.1f} images/s (batch {r['infer_batch']}), "
        f"peak memory {r['infer_peak_mem_gib']:.2f} GiB"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnet_b4")
    p.add_argument("--batch", type=int, default=45)
    p.add_argument("--infer-batch", type=int, default=None, help="inference batch (default: --batch)")
    p.add_argument("--image-size", default="1024x512", help="HxW")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--find-max", action="store_true", help="probe the largest training batch that fits")
    p.add_argument("--max-batch-limit", type=int, default=512)
    p.add_argument("--smoke", action="store_true", help="tiny CPU run (64x32, batch 2, 2 steps)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.image_size.lower().split("x"))
    if args.smoke:
        device = torch.device("cpu")
        h, w, args.batch, args.steps, args.warmup = 64, 32, 2, 2, 1
        torch.set_num_threads(min(2, torch.get_num_threads()))
    else:
        if not torch.cuda.is_available():
            print("gpu_train_step: no CUDA device; nothing measured (use --smoke for the CPU check)")
            return 0
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(f"torch {torch.__version__}, numpy {np.__version__}")
    results = {"runs": []}
    try:
        r = measure(args.backbone, args.batch, (h, w), device, args.steps, args.warmup, args.infer_batch)
        _print(r)
        results["runs"].append(r)
    except _oom_types():
        print(f"batch {args.batch} does not fit on this device (out of memory)")
        torch.cuda.empty_cache()
    if args.find_max and device.type == "cuda":
        best = find_max_batch(args.backbone, (h, w), device, start=args.batch, limit=args.max_batch_limit)
        results["max_train_batch"] = best
        print(f"largest training batch that fits: {best} (probed by doubling from {args.batch} and bisection)")
        if best and best != args.batch:
            r = measure(args.backbone, best, (h, w), device, args.steps, args.warmup, args.infer_batch or best)
            _print(r)
            results["runs"].append(r)
    if device.type == "cuda":
        results["total_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
        print(f"device memory: {results['total_memory_gib']:.1f} GiB")
    print("RESULTS " + json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
