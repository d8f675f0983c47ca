"""``python -m epi_spineage.explain``: a Grad-CAM gallery (overlay PNGs + index.html) for chosen images.

The algorithm lives in ``epi_spineage.model.gradcam``.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from pathlib import Path

from epi_spineage.cli import make_parser, run_main, setup_logging
from epi_spineage.errors import UserError
from epi_spineage.model.gradcam import TARGETS, write_overlays


def _gallery_html(rows: list[dict], meta: dict, target: str) -> str:
    from epi_spineage.schema import SYNTHETIC_NOTICE

    cards = []
    for r in rows:
        caption = [f"spine age {r['spine_age_years']:.1f} &plusmn; {r['spine_age_sd_years']:.1f} y"]
        if r.get("age_years") is not None:
            caption.append(f"age {r['age_years']:.1f} y, PAD {r['spine_age_years'] - r['age_years']:+.1f} y")
        caption.append(html.escape(f"{r['modality']} · {r['label']}"))
        cards.append(
            f'<figure><img src="{html.escape(r["png"])}" alt="Grad-CAM overlay">'
            f"<figcaption>{'<br>'.join(caption)}</figcaption></figure>"
        )
    notice = f'<p class="notice">{html.escape(SYNTHETIC_NOTICE)}</p>' if meta.get("synthetic") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Grad-CAM gallery</title>
<style>body{{font-family:sans-serif;margin:1.5em}}figure{{display:inline-block;margin:.5em;text-align:center;
vertical-align:top}}img{{height:320px}}figcaption{{font-size:.85em}}.notice{{background:#fee;padding:.5em}}</style>
</head><body><h1>Grad-CAM gallery</h1>{notice}
<p>Model {html.escape(str(meta.get("model_id")))} ({html.escape(str(meta.get("backbone")))}).
Heat shows where evidence for an <b>{target}</b> spine age lies (Grad-CAM of the expected age on the
last feature map; red = strongest). Grad-CAM shows where the network looked, not why.</p>
{"".join(cards)}
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
    p.add_argument(
        "--top-accelerated",
        type=int,
        default=0,
        metavar="N",
        help="with --manifest: the N most accelerated and N most decelerated images",
    )
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
        from epi_spineage.tables.manifest import read_manifest

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
    title = args.target if not args.manifest else "older (accelerated) / younger (decelerated)"
    page = _gallery_html(rows, loaded.meta, title)
    (args.out / "index.html").write_text(page, encoding="utf-8")
    print(f"wrote {len(rows)} overlay(s) and {args.out / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="epi-spineage explain")


if __name__ == "__main__":
    sys.exit(main())
