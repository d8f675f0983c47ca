"""Grad-CAM of the expected age (METHODS 11) and ``python -m epi_spineage.explain``, a gallery CLI.

Library: ``gradcam(net, x, target="older")`` returns maps in [0, 1] at the input size;
``overlay(image, cam)`` blends one map over its image (BGR uint8, for PNG). The score is the expected
age ``m = sum_j a_j softmax(z / T)_j`` (``target="older"``) or ``-m`` (``"younger"``); the layer is the
network's ``forward_features`` output (the last feature map), or any named module via a forward hook.
``w_k = mean_uv dm/dA^k_uv``; map = ReLU(sum_k w_k A^k), bilinear upsampling, min-max per image
(an all-zero map stays zero).
"""

from __future__ import annotations

import html
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from epi_spineage.cli import make_parser, run_main, setup_logging
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


def write_overlays(loaded, refs: Sequence[str], out_dir: Path, modality: str | Sequence[str] = "auto",
                   target: str = "older", alpha: float = 0.4, batch_size: int = 8, first_index: int = 1) -> list[Path]:
    """One overlay PNG per image (``<n>_<stem>_gradcam_<target>.png``) into ``out_dir``; returns the paths."""
    import cv2
    import torch

    from epi_spineage.model.inference import prepare_images

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(refs), batch_size):
        chunk = list(refs[start:start + batch_size])
        mods = modality if isinstance(modality, str) else list(modality[start:start + batch_size])
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


def _gallery_html(rows: list[dict], meta: dict, target: str) -> str:
    from epi_spineage.schema import SYNTHETIC_NOTICE

    cards = []
    for r in rows:
        caption = [f"spine age {r['spine_age_years']:.1f} &plusmn; {r['spine_age_sd_years']:.1f} y"]
        if r.get("age_years") is not None:
            caption.append(f"age {r['age_years']:.1f} y, PAD {r['spine_age_years'] - r['age_years']:+.1f} y")
        caption.append(html.escape(f"{r['modality']} · {r['label']}"))
        cards.append(f'<figure><img src="{html.escape(r["png"])}" alt="Grad-CAM overlay">'
                     f'<figcaption>{"<br>".join(caption)}</figcaption></figure>')
    notice = f'<p class="notice">{html.escape(SYNTHETIC_NOTICE)}</p>' if meta.get("synthetic") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Grad-CAM gallery</title>
<style>body{{font-family:sans-serif;margin:1.5em}}figure{{display:inline-block;margin:.5em;text-align:center;
vertical-align:top}}img{{height:320px}}figcaption{{font-size:.85em}}.notice{{background:#fee;padding:.5em}}</style>
</head><body><h1>Grad-CAM gallery</h1>{notice}
<p>Model {html.escape(str(meta.get('model_id')))} ({html.escape(str(meta.get('backbone')))}).
Heat shows where evidence for an <b>{target}</b> spine age lies (Grad-CAM of the expected age on the
last feature map; red = strongest). Grad-CAM shows where the network looked, not why.</p>
{''.join(cards)}
</body></html>
"""


def build_parser():
    epilog = """examples:
  python -m epi_spineage.explain a.dcm b.dcm --model runs/tiny --out gallery
  python -m epi_spineage.explain --manifest images.csv --top-accelerated 8 --model runs/tiny --out gallery
  python -m epi_spineage.explain a.dcm --model runs/tiny --out gallery --target younger

With --manifest (needs age_years), the N most accelerated and the N most decelerated images (by
PAD = spine age - age) are shown, accelerated with target older and decelerated with target younger.
"""
    p = make_parser("epi-spineage explain", "Render a Grad-CAM gallery (overlay PNGs + index.html).", epilog)
    p.add_argument("images", nargs="*", help="image files or ARCHIVE::MEMBER references")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--manifest", help="manifest to pick images from (with --top-accelerated)")
    p.add_argument("--table", help="table name inside a DuckDB manifest")
    p.add_argument("--top-accelerated", type=int, default=0, metavar="N",
                   help="with --manifest: the N most accelerated and N most decelerated images")
    p.add_argument("--target", choices=TARGETS, default="older", help="evidence for older (m) or younger (-m)")
    p.add_argument("--modality", choices=("auto", "radiograph", "vfa"), default="auto")
    p.add_argument("--alpha", type=float, default=0.4, help="heat-map opacity (0..1)")
    p.add_argument("--device", default="cpu")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not 0 <= args.alpha <= 1:
        raise UserError("--alpha must be between 0 and 1")
    if not args.images and not args.manifest:
        raise UserError("give image files, or --manifest FILE with --top-accelerated N")
    if args.manifest and args.top_accelerated < 1:
        raise UserError("--manifest needs --top-accelerated N (N >= 1)")
    from epi_spineage.model.checkpoint import load_checkpoint
    from epi_spineage.model.inference import predict_table

    loaded = load_checkpoint(args.model, map_location=args.device)
    chosen: list[tuple[str, str, str, float | None, str]] = []  # (ref, target, label, age, modality)
    for ref in args.images:
        chosen.append((ref, args.target, "chosen", None, args.modality))
    if args.manifest:
        from epi_spineage.model.data import read_manifest

        df = read_manifest(args.manifest, args.table)
        mods = list(df["modality"]) if args.modality == "auto" else args.modality
        table = predict_table(loaded, list(df["image"]), mods)
        table["modality"] = list(df["modality"]) if args.modality == "auto" else args.modality
        table["age_years"] = df["age_years"].to_numpy(float)
        table["pad"] = table["spine_age_years"] - table["age_years"]
        order = table.sort_values("pad", kind="stable")
        n = min(args.top_accelerated, len(order))
        for k, r in enumerate(order.iloc[::-1].head(n).itertuples()):
            chosen.append((r.image, "older", f"accelerated #{k + 1}", r.age_years, r.modality))
        for k, r in enumerate(order.head(n).itertuples()):
            if r.image not in {c[0] for c in chosen}:
                chosen.append((r.image, "younger", f"decelerated #{k + 1}", r.age_years, r.modality))
    preds = predict_table(loaded, [c[0] for c in chosen], [c[4] for c in chosen])
    rows = []
    for i, ((ref, target, label, age, mod), pred) in enumerate(zip(chosen, preds.to_dict(orient="records"))):
        png = write_overlays(loaded, [ref], args.out, [mod], target, args.alpha, first_index=i + 1)[0]
        rows.append({**pred, "label": label, "age_years": age, "png": png.name, "target": target})
    page = _gallery_html(rows, loaded.meta, args.target if not args.manifest else "older (accelerated) / younger (decelerated)")
    (args.out / "index.html").write_text(page, encoding="utf-8")
    print(f"wrote {len(rows)} overlay(s) and {args.out / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage explain")


if __name__ == "__main__":
    sys.exit(main())
