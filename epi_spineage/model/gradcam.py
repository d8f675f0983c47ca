"""Grad-CAM of the expected age (docs: methods, Grad-CAM).

``gradcam(net, x, target="older")`` returns maps in [0, 1] at the input size;
``overlay(image, cam)`` blends one map over its image (BGR uint8, for PNG). The score is the expected
age ``m = sum_j a_j softmax(z / T)_j`` (``target="older"``) or ``-m`` (``"younger"``); the layer is the
network's ``forward_features`` output (the last feature map), or any named module via a forward hook.
``w_k = mean_uv dm/dA^k_uv``; map = ReLU(sum_k w_k A^k), bilinear upsampling, min-max per image
(an all-zero map stays zero). The gallery tool is ``epi_spineage.cli.explain``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)
TARGETS = ("older", "younger")


def gradcam(net, x, target: str = "older", temperature: float = 1.0, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps (B, H, W) float32 in [0, 1] for a batch ``x`` (B, C, H, W).

    ``net`` needs ``forward_features``, ``forward_head`` and an ``ages`` buffer (``SpineAgeNet`` has
    them). ``layer``: a module name for a forward hook instead of the ``forward_features`` output.
    """
    import torch
    import torch.nn.functional as F

    if target not in TARGETS:
        raise UserError(f"Grad-CAM target must be one of {TARGETS}, got {target!r}")
    net = getattr(net, "module", net)
    was_training = net.training
    net.eval()
    x = x.detach().float()
    captured: dict = {}
    handle = None
    try:
        with torch.enable_grad():
            if layer is None:
                feats = net.forward_features(x)
                logits = net.forward_head(feats)
            else:
                module = net.get_submodule(layer)
                handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
                logits = net(x)
                feats = captured["a"]
            p = torch.softmax(logits.float() / float(temperature), dim=1)
            m = (p * net.ages.to(p.device, p.dtype)).sum(dim=1)
            score = m.sum() if target == "older" else -m.sum()
            grads = torch.autograd.grad(score, feats)[0]
    finally:
        if handle is not None:
            handle.remove()
        net.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * feats).sum(dim=1, keepdim=True)).detach().float()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    span = hi - lo
    cam = torch.where(span > 0, (cam - lo) / span.clamp_min(1e-12), torch.zeros_like(cam))
    return cam.cpu().numpy().astype("float32")


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Heat map (JET) of ``cam`` over a [0, 1] grey ``image`` (H, W); returns BGR uint8."""
    import cv2

    grey = (np.clip(np.asarray(image, dtype="float32"), 0, 1) * 255).astype(np.uint8)
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(heat, float(alpha), base, 1.0 - float(alpha), 0.0)


def write_overlays(
    loaded,
    refs: Sequence[str],
    out_dir: Path,
    modality: str | Sequence[str] = "auto",
    target: str = "older",
    alpha: float = 0.4,
    batch_size: int = 8,
    first_index: int = 1,
) -> list[Path]:
    """One overlay PNG per image (``<n>_<stem>_gradcam_<target>.png``) into ``out_dir``; returns the paths."""
    import cv2
    import torch

    from epi_spineage.model.inference import prepare_images

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(refs), batch_size):
        chunk = list(refs[start : start + batch_size])
        mods = modality if isinstance(modality, str) else list(modality[start : start + batch_size])
        x, _ = prepare_images(chunk, loaded.preprocess_config, mods)
        xt = torch.from_numpy(x).to(loaded.device)
        cams = gradcam(loaded.network, xt, target)  # the reported spine age: untempered expectation
        for i, ref in enumerate(chunk):
            stem = Path(ref.split("::")[-1]).stem[:60] or "image"
            path = out_dir / f"{first_index + start + i:03d}_{stem}_gradcam_{target}.png"
            if not cv2.imwrite(str(path), overlay(x[i, 0], cams[i], alpha)):
                raise UserError(f"cannot write {path}")
            paths.append(path)
    return paths
