"""Training loop: early stopping on validation MAE, resumable, bf16 + channels-last on CUDA, DDP.

``run_training(TrainConfig)`` does the whole job (split, train, calibrate, bias-correct, evaluate,
save); ``fit_network`` is the epoch loop, reused for the out-of-fold models of the bias correction.
Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains on its DistributedSampler shard, every
rank evaluates the full validation set (so all take the same early-stopping decision), and only
rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from epi_spineage.errors import UserError
from epi_spineage.model.checkpoint import atomic_torch_save, atomic_write_bytes
from epi_spineage.model.loss import MeanVarianceLoss
from epi_spineage.model.network import SpineAgeNet, logits_to_age
from epi_spineage.progress import Progress

if TYPE_CHECKING:
    from torch.utils.data.distributed import DistributedSampler

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every training setting; stored in ``meta.json`` under ``training``."""

    manifest: object = None  # path or DataFrame
    out: Path = Path("model")
    backbone: str = "efficientnet_b4"
    image_size: tuple[int, int] = (1024, 512)
    batch_size: int = 45
    eval_batch_size: int | None = None
    epochs: int = 100
    lr: float = 1e-4
    patience: int = 10
    workers: int = 4
    # torch intra-op threads of the training process (None: torch's default, one per core). A small
    # network on a busy CPU trains far faster on 1 thread: with 2 threads on a loaded 2-core machine
    # each step waited on the descheduled thread (6 steps took 48 s vs 0.85 s; docs/guides/train.md).
    threads: int | None = None
    device: str | None = None
    init_weights: str | None = None
    resume: bool = False
    seed: int = 0
    min_age: int = 40
    max_age: int = 100
    head_hidden: int = 100
    lambda_mean: float = 0.2
    lambda_var: float = 0.05
    bias_folds: int = 10
    bias_method: str = "beheshti"
    bias_by_modality: bool = False  # also fit one correction per modality (>= 10 pairs each)
    fold_epochs: int | None = None  # epochs for the out-of-fold models (default: epochs)
    lr_schedule: str = "constant"  # constant (the study) | cosine (decay to 1% over the epochs)
    warmup_steps: int = 0  # linear learning-rate warm-up over the first steps (0: none, the study)
    clip_grad: float | None = None  # clip the gradient norm (None: no clipping, the study)
    augment: bool = False
    # channels-last memory format on the CPU too (always on CUDA): the small phantom-tiny network's steps
    # took 28 % less CPU time with it on one thread, but its model was weaker, so the preset keeps it off
    # (docs/guides/train.md#measured)
    channels_last: bool = False
    cache: str = "auto"  # auto | yes | no: keep preprocessed tensors in memory
    cache_max_gib: float = 4.0
    preprocess: dict | None = None  # PreprocessConfig fields other than the size
    table: str | None = None
    max_minutes: float | None = None  # stop after this much time (opt-in; not deterministic, presets never use it)
    allow_weak_model: bool = False  # save a model whose quality verdict is "weak", flagged as such
    synthetic: bool = False
    preset: str | None = None
    key: bytes | None = field(default=None, repr=False)

    def public_dict(self) -> dict:
        d = asdict(self)
        d.pop("key", None)
        d["manifest"] = None if not isinstance(self.manifest, (str, Path)) else str(self.manifest)
        d["out"] = str(self.out)
        d["image_size"] = list(self.image_size)
        return d


# ---------------------------------------------------------------------------- distributed helpers
def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _init_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def choose_device(requested: str | None) -> torch.device:
    _, world, local = dist_info()
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(requested)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda requested but no CUDA device is available")
        if world > 1:  # one GPU per torchrun process
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- batches
def _to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True).float()
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random affine (scale +-5%, shift +-3%, rotation +-3 degrees), zero padding."""
    import torch.nn.functional as F

    b = x.shape[0]
    r = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)  # noqa: E731
    s, ang = r(0.95, 1.05), r(-3.0, 3.0) * np.pi / 180
    tx, ty = r(-0.03, 0.03), r(-0.03, 0.03)
    theta = torch.stack(
        [
            torch.stack([s * torch.cos(ang), -s * torch.sin(ang), tx], 1),
            torch.stack([s * torch.sin(ang), s * torch.cos(ang), ty], 1),
        ],
        1,
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def predict_logits(
    net: torch.nn.Module, dataset, device: torch.device, batch_size: int = 64, workers: int = 0, desc: str | None = None
) -> np.ndarray:
    """Logits (N, C) float32 for a dataset of ``(x, age)`` pairs, in order (a bar on a terminal when
    ``desc`` names the pass)."""
    net = getattr(net, "module", net)
    was_training = net.training
    net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out = []
    cuda = device.type == "cuda"
    shown = None if desc else False
    with Progress(desc or "predicting", total=len(loader), unit="batch", leave=False, show=shown) as bar:
        for x, _ in bar.iterate(loader):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                out.append(net(_to_input(x, device)).float().cpu())
    net.train(was_training)
    if not out:
        return np.zeros((0, cast(SpineAgeNet, net).num_classes), dtype="float32")
    return torch.cat(out).numpy()


def mae_of(logits: np.ndarray, ages: np.ndarray, net) -> float:
    mean, _ = logits_to_age(torch.from_numpy(logits), getattr(net, "module", net).ages.cpu())
    return float(np.mean(np.abs(mean.numpy() - np.asarray(ages, dtype="float64"))))


# ---------------------------------------------------------------------------- the epoch loop
_Net = TypeVar("_Net", bound=torch.nn.Module)


def fit_network(
    net: _Net,
    train_ds,
    val_ds,
    cfg: TrainConfig,
    device: torch.device,
    *,
    state_dir: Path | None = None,
    desc: str = "train",
    epochs: int | None = None,
    workers: int = 0,
) -> tuple[_Net, list[dict]]:
    """Train with Adam and the mean-variance loss, early stopping on validation MAE.

    With ``state_dir``, writes ``last.pt`` (model, optimizer, epoch, RNG, best weights) and
    ``metrics.csv``/``metrics.jsonl`` after every epoch (rank 0), and resumes from ``last.pt`` when
    ``cfg.resume``. Returns the network holding the best validation weights, and the history.

    Progress (``epi_spineage.progress``, rank 0): on a terminal a bar over the epochs (loss, validation
    MAE, best so far, ETA) above a bar over the current epoch's batches; otherwise one INFO line per
    epoch and a summary line at the end.
    """
    rank, world, _ = dist_info()
    epochs = cfg.epochs if epochs is None else epochs
    net.to(device)
    if device.type == "cuda" or cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    loss_fn = MeanVarianceLoss(cfg.min_age, cfg.max_age, cfg.lambda_mean, cfg.lambda_var).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"unknown lr schedule {cfg.lr_schedule!r}; use constant or cosine")
    model: torch.nn.Module = net
    if world > 1:
        _init_distributed(device)
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    start_epoch, best_mae, best_epoch, stale = 0, float("inf"), -1, 0
    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
    history: list[dict] = []
    last_path = state_dir / "last.pt" if state_dir else None
    resumed_lr = None
    if last_path and cfg.resume and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best_mae = state["epoch"] + 1, state["best_mae"]
        best_epoch, stale = state["best_epoch"], state["stale"]
        best_state, history = state["best_state"], state["history"]
        resumed_lr = state.get("sched_lr")
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        log.info(
            "resumed from %s at epoch %d (best validation MAE %.3f at epoch %d)",
            last_path,
            start_epoch,
            best_mae,
            best_epoch,
        )
    elif cfg.resume and last_path:
        log.warning("--resume: no %s yet; starting from scratch", last_path)
    val_ages = np.asarray(val_ds.tensors[1] if hasattr(val_ds, "tensors") else val_ds.ages, dtype="float64")
    eval_bs = cfg.eval_batch_size or max(cfg.batch_size, 32)
    t_start = time.monotonic()
    cuda = device.type == "cuda"
    sched_lr = float(resumed_lr if resumed_lr is not None else cfg.lr)
    show = None if rank == 0 else False
    progress = Progress(desc, total=epochs, unit="epoch", show=show, logger=log, initial=start_epoch)
    try:
        for epoch in range(start_epoch, epochs):
            if stale >= cfg.patience:
                break
            sampler: DistributedSampler | None = None
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            if world > 1:
                from torch.utils.data.distributed import DistributedSampler

                sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
                sampler.set_epoch(epoch)
            loader = DataLoader(
                train_ds,
                batch_size=cfg.batch_size,
                shuffle=sampler is None,
                sampler=sampler,
                num_workers=workers,
                generator=gen if sampler is None else None,
                pin_memory=cuda,
                persistent_workers=False,
            )
            model.train()
            t0 = time.monotonic()
            total, parts_sum, seen = 0.0, {"softmax": 0.0, "mean": 0.0, "variance": 0.0}, 0
            bar = Progress(f"epoch {epoch + 1}/{epochs}", total=len(loader), unit="batch", show=show, leave=False)
            epoch_lr = sched_lr  # the schedule's value for this epoch; warm-up scales it
            for i, (x, ages) in enumerate(bar.iterate(loader)):
                x = _to_input(x, device)
                if cfg.augment:
                    x = augment_batch(x, gen)
                ages = ages.to(device)
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    logits = model(x)
                loss = loss_fn(logits.float(), ages)
                loss.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
                step_in_run = epoch * len(loader) + i
                if cfg.warmup_steps and step_in_run <= cfg.warmup_steps:
                    for group in opt.param_groups:
                        group["lr"] = epoch_lr * min(1.0, (step_in_run + 1) / cfg.warmup_steps)
                opt.step()
                n = x.shape[0]
                seen += n
                total += float(loss.detach()) * n
                for k in parts_sum:
                    parts_sum[k] += loss_fn.last_components[k] * n
                bar.set_postfix_str(f"loss {total / seen:.3f}", refresh=False)
            bar.close()
            lr_now = epoch_lr
            if cfg.lr_schedule == "cosine":
                # Progress is the larger of epochs done and time budget used, so a run cut short by
                # --max-minutes still ends at the low learning rate.
                frac = (epoch + 1) / max(epochs, 1)
                if cfg.max_minutes:
                    frac = max(frac, (time.monotonic() - t_start) / 60 / cfg.max_minutes)
                frac = min(frac, 1.0)
                sched_lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * frac)))
            for group in opt.param_groups:
                group["lr"] = sched_lr
            val_logits = predict_logits(net, val_ds, device, eval_bs)
            val_mae = mae_of(val_logits, val_ages, net)
            improved = val_mae < best_mae - 1e-9
            if improved:
                best_mae, best_epoch, stale = val_mae, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
            row = {
                "stage": desc,
                "epoch": epoch + 1,
                "train_loss": total / max(seen, 1),
                **{f"train_{k}_loss": v / max(seen, 1) for k, v in parts_sum.items()},
                "val_mae_years": val_mae,
                "best_val_mae_years": best_mae,
                "best_epoch": best_epoch + 1,
                "lr": lr_now,
                "epoch_seconds": time.monotonic() - t0,
                "images": seen * world,
                "steps": (epoch + 1) * len(loader),
            }
            history.append(row)
            progress.set_postfix_str(
                f"loss {row['train_loss']:.3f}, val MAE {val_mae:.2f} (best {best_mae:.2f} at epoch {best_epoch + 1})"
            )
            progress.update(1)
            log.log(
                logging.DEBUG if progress.shown else logging.INFO,  # on a terminal the bar shows it
                "%s epoch %d: loss %.3f, validation MAE %.3f%s",
                desc,
                epoch + 1,
                row["train_loss"],
                val_mae,
                " (best)" if improved else "",
            )
            if state_dir and last_path is not None and rank == 0:  # last_path is set exactly when state_dir is
                _append_metrics(state_dir, row)
                atomic_torch_save(
                    {
                        "model": net.state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": epoch,
                        "best_mae": best_mae,
                        "sched_lr": sched_lr,
                        "best_epoch": best_epoch,
                        "stale": stale,
                        "best_state": best_state,
                        "history": history,
                        "rng": {
                            "torch": torch.get_rng_state(),
                            "numpy": np.random.get_state(),
                            "python": random.getstate(),
                        },
                        "config": cfg.public_dict(),
                    },
                    last_path,
                )
            if cfg.max_minutes is not None and (time.monotonic() - t_start) / 60 > cfg.max_minutes:
                log.info("%s: time budget of %.1f min reached after epoch %d", desc, cfg.max_minutes, epoch + 1)
                break
    finally:
        progress.close()
    net.load_state_dict(best_state)
    return net, history


def _append_metrics(state_dir: Path, row: dict) -> None:
    jsonl = state_dir / "metrics.jsonl"
    csv = state_dir / "metrics.csv"
    lines = jsonl.read_text().splitlines() if jsonl.is_file() else []
    # after a resume, drop rows of epochs being redone
    rows = [json.loads(s) for s in lines if s.strip()]
    rows = [r for r in rows if not (r.get("stage") == row["stage"] and r["epoch"] >= row["epoch"])] + [row]
    atomic_write_bytes(jsonl, ("\n".join(json.dumps(r) for r in rows) + "\n").encode())
    atomic_write_bytes(csv, pd.DataFrame(rows).to_csv(index=False).encode())
