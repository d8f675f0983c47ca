"""Lateral spine phantoms whose look is driven by a biological *spine age* and by conditions.

Each image is drawn directly at its output size with vectorised numpy (and OpenCV for blurs and the
small rotation), so 1,000 reduced-size images take well under a minute. MONOCHROME2 convention
(bone bright). What changes with spine age (``t = (spine_age - 40) / 50``), each with individual
noise so that ages overlap as in real spines:

- vertebral bone density falls (mean body intensity) and trabecular texture coarsens (vertical
  striation contrast rises);
- disc spaces narrow, endplates become more concave;
- anterior osteophytes become more frequent and larger;
- aortic calcification plaques (anterior to the spine) become more numerous;
- prevalent vertebral fractures (Genant grade 1-3; wedge, biconcave or crush) become likelier.

Independent of age: soft-tissue thickness, exposure, contrast (gamma), scatter, quantum noise,
rotation, scale, collimation margins, and (rarely) a prosthesis (pedicle screws and rods, very bright).

``render_phantom`` returns the pixels; ``render_phantom_with_truth`` also returns what was drawn.
``write_phantom_archive`` (module ``archive``) writes many phantoms to a folder, zip or tar with a manifest.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)

STYLES = ("radiograph", "vfa")
#: Full-size (scale=1) image shapes (rows, columns).
FULL_SHAPE = {"radiograph": (2400, 1600), "vfa": (1000, 400)}
#: Default scale of write_phantom_archive: radiographs 600 x 400, VFA 250 x 100.
DEFAULT_SCALE = 0.25
GENANT_HEIGHT_LOSS = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.55)}
FRACTURE_KINDS = ("wedge", "biconcave", "crush")
_CONDITIONS = (
    "sex",
    "bmd_tscore",
    "fractures",
    "prosthesis",
    "osteophyte_rate",
    "aortic_plaques",
    "bits_stored",
    "disc_height",
    "soft_tissue",
)


def _t(age: float) -> float:
    return float(np.clip((age - 40.0) / 50.0, -0.3, 1.4))


def _levels(style: str) -> list[str]:
    if style == "vfa":
        return [f"T{i}" for i in range(5, 13)] + [f"L{i}" for i in range(1, 5)]
    return ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]


def _draw_conditions(age: float, rng: np.random.Generator, style: str, given: dict) -> dict:
    """Age-driven conditions; anything in ``given`` overrides the draw."""
    t = _t(age)
    levels = _levels(style)
    c: dict = {}
    c["sex"] = given.get("sex", "F" if rng.random() < 0.6 else "M")
    fem = c["sex"] == "F"
    # Bone density on a T-score-like scale; wide individual spread so ages overlap.
    c["bmd_tscore"] = float(given.get("bmd_tscore", 0.3 - 3.0 * t - 0.5 * fem * t + rng.normal(0, 1.2)))
    c["disc_height"] = float(given.get("disc_height", np.clip(1.0 - 0.45 * t + rng.normal(0, 0.16), 0.25, 1.3)))
    c["concavity"] = float(np.clip(0.02 + 0.06 * t + rng.normal(0, 0.015), 0.0, 0.15))
    c["texture"] = float(np.clip(0.08 + 0.14 * t + rng.normal(0, 0.03), 0.02, 0.4))
    c["osteophyte_rate"] = float(given.get("osteophyte_rate", np.clip(0.04 + 0.45 * t + rng.normal(0, 0.08), 0.0, 0.9)))
    c["osteophyte_size"] = float(np.clip(0.6 + 0.8 * t + rng.normal(0, 0.15), 0.3, 2.0))
    lam = max(0.0, 7.0 * t * t + rng.normal(0, 0.5))
    c["aortic_plaques"] = int(given.get("aortic_plaques", rng.poisson(lam)))
    if "fractures" in given:
        fr = [
            dict(zip(("level", "kind", "grade"), f)) if not isinstance(f, dict) else dict(f) for f in given["fractures"]
        ]
    else:
        fr = []
        if rng.random() < np.clip(0.03 + 0.22 * t, 0, 0.5):
            k = 1 + int(rng.random() < 0.3)
            lo = len(levels) // 3 if style == "vfa" else 0
            for lev in rng.choice(np.arange(lo, len(levels)), size=k, replace=False):
                fr.append(
                    {
                        "level": levels[int(lev)],
                        "kind": FRACTURE_KINDS[int(rng.integers(3))],
                        "grade": int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])),
                    }
                )
    for f in fr:
        if f["level"] not in levels:
            raise UserError(
                f"fracture level {f['level']!r} is not drawn in a {style} phantom ({levels[0]}-{levels[-1]})"
            )
        if f["kind"] not in FRACTURE_KINDS or int(f["grade"]) not in (1, 2, 3):
            raise UserError(f"fracture needs kind in {FRACTURE_KINDS} and Genant grade 1-3, got {f}")
    c["fractures"] = fr
    c["prosthesis"] = bool(given.get("prosthesis", rng.random() < 0.04 + 0.06 * t))
    c["soft_tissue"] = float(given.get("soft_tissue", np.clip(rng.normal(1.0, 0.15), 0.6, 1.5)))
    c["bits_stored"] = int(given.get("bits_stored", (12 if style == "vfa" else int(rng.choice([12, 14, 16])))))
    return c


def _box(h, w, cx, cy, rx, ry):
    """Slices and local coordinate grids for a box of half-sizes rx, ry around (cx, cy)."""
    x0, x1 = max(int(cx - rx) - 1, 0), min(int(cx + rx) + 2, w)
    y0, y1 = max(int(cy - ry) - 1, 0), min(int(cy + ry) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xx - cx, yy - cy


def _ellipse(img, cx, cy, rx, ry, angle, value, soft=1.0):
    h, w = img.shape
    r = max(rx, ry)
    b = _box(h, w, cx, cy, r, r)
    if b is None:
        return
    sl, dx, dy = b
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / max(rx, 1e-3)
    v = (-dx * sa + dy * ca) / max(ry, 1e-3)
    d = (1.0 - np.sqrt(u * u + v * v)) * min(rx, ry)
    img[sl] += value * np.clip(d / max(soft, 1e-3) + 0.5, 0.0, 1.0)


def _vertebra(img, mask, tex, v, px):
    """One vertebral body: superellipse with per-position half height (fracture shapes, concavity)."""
    h, w = img.shape
    a = v["half_width"]
    r = math.hypot(a, max(v["h_ant"], v["h_post"]) / 2) + 2
    b = _box(h, w, v["cx"], v["cy"], r, r)
    if b is None:
        return
    sl, dx, dy = b
    ca, sa = math.cos(v["angle"]), math.sin(v["angle"])
    u = dx * ca + dy * sa
    vv = -dx * sa + dy * ca
    un = np.clip(u / a, -1.5, 1.5)
    frac = (un + 1.0) / 2.0  # 0 anterior .. 1 posterior
    hh = (v["h_ant"] + (v["h_post"] - v["h_ant"]) * frac) / 2.0
    hh = hh - (v["concavity"] + v["mid_loss"]) * v["h_post"] * np.clip(1.0 - un * un, 0.0, 1.0)
    hh = np.maximum(hh, 1.0)
    p = 8.0
    q = (np.abs(u) / a) ** p + (np.abs(vv) / hh) ** p
    dist = (1.0 - q ** (1.0 / p)) * np.minimum(a, hh)
    inside = np.clip(dist / max(px, 0.5) + 0.5, 0.0, 1.0)
    cortex = np.clip(1.0 - dist / max(2.2 * px, 0.8), 0.0, 1.0) * inside
    body = v["density"] * (1.0 + v["texture"] * tex[sl]) * inside + v["cortex"] * cortex
    img[sl] += body
    mask[sl] = np.maximum(mask[sl], (inside > 0.5).astype(np.uint8) * v["index"])


def _layout(style, h, w, c, rng, s):
    """Vertebra geometry along a gently curved column."""
    levels = _levels(style)
    n = len(levels)
    if style == "vfa":
        body_h, half_w, disc0 = 60.0 * s, 50.0 * s, 17.0 * s
        top = 0.06 * h
        grow = np.linspace(0.78, 1.1, n)
    else:
        body_h, half_w, disc0 = 185.0 * s, 200.0 * s, 62.0 * s
        top = 0.10 * h
        grow = np.linspace(0.92, 1.08, n)
    jitter = rng.normal(1.0, 0.04)
    body_h *= jitter
    half_w *= jitter
    disc = disc0 * c["disc_height"]
    cx0 = w * (0.52 if style == "radiograph" else 0.5) + rng.normal(0, 0.02) * w
    curv = rng.normal(0.05, 0.02) * w
    phase = rng.normal(0, 0.3)
    fr = {f["level"]: f for f in c["fractures"]}
    out = []
    y = top + rng.normal(0, 0.01) * h
    for i, lev in enumerate(levels):
        bh = body_h * grow[i]
        hw = half_w * (0.85 + 0.15 * grow[i])
        h_ant = h_post = bh
        mid_loss = 0.0
        dens = 1.0
        if lev in fr:
            f = fr[lev]
            lo_, hi_ = GENANT_HEIGHT_LOSS[int(f["grade"])]
            loss = rng.uniform(lo_, hi_)
            if f["kind"] == "wedge":
                h_ant = bh * (1 - loss)
            elif f["kind"] == "biconcave":
                mid_loss = loss / 2.0
            else:
                h_ant = bh * (1 - loss)
                h_post = bh * (1 - 0.8 * loss)
            dens = 1.0 + 0.6 * loss  # compressed trabeculae look denser
        tpos = (i + 0.5) / n
        cx = cx0 - curv * math.sin(math.pi * tpos + phase)
        angle = -math.cos(math.pi * tpos + phase) * 0.25 * (curv / w) * 4 + rng.normal(0, 0.03)
        hmax = max(h_ant, h_post)
        cy = y + hmax / 2
        out.append(
            {
                "level": lev,
                "index": i + 1,
                "cx": cx,
                "cy": cy,
                "angle": angle,
                "half_width": hw,
                "h_ant": h_ant,
                "h_post": h_post,
                "mid_loss": mid_loss,
                "dens_factor": dens,
                "concavity": c["concavity"] * rng.uniform(0.6, 1.4),
            }
        )
        y = cy + hmax / 2 + disc * rng.uniform(0.8, 1.2) * (0.7 if style == "vfa" and i < 6 else 1.0)
    return out


def render_phantom_with_truth(
    spine_age: float,
    *,
    style: str = "radiograph",
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    scale: float = 1.0,
    **conditions,
) -> tuple[np.ndarray, dict]:
    """Like :func:`render_phantom`, also returning a dict of what was drawn (the truth)."""
    import cv2

    if style not in STYLES:
        raise UserError(f"style must be one of {STYLES}, got {style!r}")
    unknown = set(conditions) - set(_CONDITIONS)
    if unknown:
        raise UserError(f"unknown phantom condition(s): {', '.join(sorted(unknown))}; known: {', '.join(_CONDITIONS)}")
    if not 0.02 <= float(scale) <= 2.0:
        raise UserError(f"scale must lie in 0.02..2, got {scale}")
    if not np.isfinite(spine_age):
        raise UserError("spine_age must be a finite number")
    if rng is None:
        rng = np.random.default_rng(seed)
    age = float(spine_age)
    c = _draw_conditions(age, rng, style, conditions)
    H0, W0 = FULL_SHAPE[style]
    h, w = max(int(round(H0 * scale)), 16), max(int(round(W0 * scale)), 8)
    s = h / H0
    px = max(1.0, 1.5 * s)

    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    img = np.zeros((h, w), np.float32)
    # Soft tissue: a thick trunk (lateral view), thicker in the middle; the anterior belly wall curves.
    st = c["soft_tissue"]
    if style == "vfa":  # the DXA field is narrow: the trunk fills it
        belly, back = -1.5 + 0 * yy, 1.5
    else:
        belly = -0.92 + 0.08 * np.cos(yy * 2.0) * st
        back = 0.95 - 0.02 * st
    trunk = np.clip((xx - belly) * 25, 0, 1) * np.clip((back - xx) * 25, 0, 1)
    img += (0.16 + 0.06 * st) * trunk * (1.0 - 0.25 * xx * xx)

    # Trabecular texture: vertically elongated noise (older bone keeps vertical trabeculae).
    noise = rng.standard_normal((h, w)).astype(np.float32)
    sig = max(0.6, 3.0 * s * (1.6 if style == "vfa" else 1.0))
    tex = cv2.GaussianBlur(noise, (0, 0), sigmaX=sig * 0.6, sigmaY=sig * 2.2)
    tex /= max(float(tex.std()), 1e-6)  # type: ignore[misc]  # cv2's stubs type the result as any MatLike

    verts = _layout(style, h, w, c, rng, s)
    density = float(np.clip(0.50 + 0.07 * c["bmd_tscore"], 0.12, 0.85))
    mask = np.zeros((h, w), np.uint8)
    for v in verts:
        v["density"] = density * v["dens_factor"] * rng.uniform(0.93, 1.07)
        v["texture"] = c["texture"]
        v["cortex"] = 0.10 + 0.35 * density
        _vertebra(img, mask, tex, v, px)
        # Posterior elements: pedicle/facet blob and a downward-sloping spinous process.
        ca, sa = math.cos(v["angle"]), math.sin(v["angle"])
        hw = v["half_width"]
        for off, ry, rx, val in ((1.25, 0.28, 0.30, 0.55), (1.95, 0.20, 0.45, 0.45)):
            px_ = v["cx"] + off * hw * ca
            py_ = v["cy"] + off * hw * sa + (0.15 * (off - 1.0)) * v["h_post"]
            _ellipse(img, px_, py_, rx * hw, ry * v["h_post"], v["angle"] + 0.35 * (off > 1.5), val * density, soft=px)
    # Sacrum/pelvis (radiograph) or ribs (vfa): distracting overlaps that do not carry age.
    if style == "radiograph":
        last = verts[-1]
        _ellipse(
            img,
            last["cx"] + 0.2 * last["half_width"],
            last["cy"] + 1.6 * last["h_post"],
            1.3 * last["half_width"],
            0.9 * last["h_post"],
            0.5,
            0.45 * density,
            soft=px,
        )
        _ellipse(img, w * 0.55, h * 0.93, w * 0.42, h * 0.09, rng.normal(0, 0.1), 0.10, soft=8 * px)
    else:
        for v in verts[:-3]:
            for side in (-1, 1):
                _ellipse(
                    img,
                    v["cx"] + side * 0.6 * v["half_width"],
                    v["cy"] + 0.3 * v["h_post"],
                    1.8 * v["half_width"],
                    0.12 * v["h_post"],
                    0.25 * side,
                    0.05,
                    soft=2 * px,
                )

    # Osteophytes: spurs at anterior (and sometimes posterior) endplate corners.
    n_ost = 0
    for v in verts:
        ca, sa = math.cos(v["angle"]), math.sin(v["angle"])
        for sign_v in (-1, 1):
            for sign_u, p_scale in ((-1, 1.0), (1, 0.25)):
                if rng.random() < c["osteophyte_rate"] * p_scale:
                    n_ost += 1
                    L = c["osteophyte_size"] * v["h_post"] * rng.uniform(0.10, 0.22)
                    hh = (v["h_ant"] if sign_u < 0 else v["h_post"]) / 2
                    lu, lv = sign_u * (v["half_width"] + 0.25 * L), sign_v * (hh + 0.1 * L)
                    gx, gy = v["cx"] + lu * ca - lv * sa, v["cy"] + lu * sa + lv * ca
                    _ellipse(
                        img,
                        gx,
                        gy,
                        0.55 * L,
                        0.22 * L,
                        v["angle"] + sign_u * sign_v * 0.7,
                        0.35 + 0.4 * density,
                        soft=px,
                    )

    # Aortic calcification: short bright plaques along the aortic walls anterior to L1-L4.
    lumbar = [v for v in verts if v["level"].startswith("L")]
    if c["aortic_plaques"] and lumbar:
        y_top, y_bot = lumbar[0]["cy"], lumbar[-1]["cy"]
        x_wall = [v["cx"] - v["half_width"] * 1.35 for v in lumbar]
        for _ in range(c["aortic_plaques"]):
            yy_ = rng.uniform(y_top, y_bot)
            xw = float(np.interp(yy_, [v["cy"] for v in lumbar], x_wall))
            xw -= rng.choice([0.0, 0.55]) * lumbar[0]["half_width"]
            _ellipse(
                img,
                xw,
                yy_,
                max(px, 3 * s),
                rng.uniform(8, 30) * s,
                rng.normal(0, 0.15),
                rng.uniform(0.25, 0.5),
                soft=px,
            )

    # Prosthesis: pedicle screws through 2-4 adjacent levels and a posterior rod (metal: saturates).
    instrumented = []
    if c["prosthesis"]:
        k = int(rng.integers(2, 5))
        start = int(rng.integers(max(1, len(verts) - k - 2), len(verts) - k + 1))
        instrumented = [verts[i]["level"] for i in range(start, start + k)]
        heads = []
        for v in verts[start : start + k]:
            ca, sa = math.cos(v["angle"]), math.sin(v["angle"])
            hw = v["half_width"]
            mx, my = v["cx"] + 0.35 * hw * ca, v["cy"] + 0.35 * hw * sa
            _ellipse(img, mx, my, 1.05 * hw, max(0.07 * v["h_post"], px), v["angle"], 1.6, soft=px)
            heads.append((v["cx"] + 1.4 * hw * ca, v["cy"] + 1.4 * hw * sa))
        (x1, y1), (x2, y2) = heads[0], heads[-1]
        _ellipse(
            img,
            (x1 + x2) / 2,
            (y1 + y2) / 2,
            max(2.5 * px, 6 * s),
            math.hypot(x2 - x1, y2 - y1) / 2 + 10 * s,
            math.atan2(x1 - x2, y2 - y1),
            1.4,
            soft=px,
        )

    # Acquisition: small rotation and scale, scatter, exposure and contrast, quantum noise, margins.
    ang = rng.normal(0, 2.0)
    zoom = rng.uniform(0.94, 1.06)
    M = cv2.getRotationMatrix2D((w / 2 + rng.normal(0, 0.02) * w, h / 2 + rng.normal(0, 0.02) * h), ang, zoom)
    border = cv2.BORDER_REPLICATE if style == "vfa" else cv2.BORDER_CONSTANT
    img = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)  # type: ignore[assignment]
    mask = cv2.warpAffine(  # type: ignore[assignment]  # cv2's stubs: any MatLike, same dtype in fact
        mask, M, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    # Scatter is very low-frequency: blur a 1/8-size copy (a full-size sigma-60 blur costs seconds).
    small = cv2.resize(img, (max(w // 8, 2), max(h // 8, 2)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(0.5, 60 * s / 8))
    scatter = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img = img + rng.uniform(0.1, 0.3) * scatter
    gain = rng.normal(1.0, 0.08)
    gamma = rng.uniform(0.85, 1.15)
    img = np.clip(img * gain, 0, None)
    img = np.clip(img / 1.6, 0, 1) ** gamma * 0.92 + 0.03
    if style == "vfa":
        # DXA: coarse sampling noise and horizontal scan-line striping.
        img += rng.normal(0, 0.035, img.shape).astype(np.float32)
        img += rng.normal(0, 0.012, (h, 1)).astype(np.float32)
    else:
        img += rng.normal(0, 1, img.shape).astype(np.float32) * (0.006 + 0.018 * np.sqrt(np.clip(img, 0, 1)))
    img = np.clip(img, 0, 1)
    if style == "radiograph":
        # Collimation margins (unexposed: bright) and a lead marker.
        mt, mb = (int(rng.uniform(0.01, 0.05) * h) for _ in range(2))
        ml, mr = (int(rng.uniform(0.01, 0.06) * w) for _ in range(2))
        edge = rng.uniform(0.85, 0.97)
        img[:mt, :] = edge
        img[h - mb :, :] = edge
        img[:, :ml] = edge
        img[:, w - mr :] = edge
        my, mx = int(0.08 * h), int(0.85 * w)
        img[my : my + max(2, int(40 * s)), mx : mx + max(2, int(30 * s))] = 0.98
    top = 2 ** c["bits_stored"] - 1
    out = np.rint(img * top).astype(np.uint16)
    truth = {
        "spine_age_years": age,
        "style": style,
        "shape": [h, w],
        **{
            k: c[k]
            for k in (
                "sex",
                "bmd_tscore",
                "disc_height",
                "concavity",
                "texture",
                "osteophyte_rate",
                "aortic_plaques",
                "prosthesis",
                "bits_stored",
                "soft_tissue",
            )
        },
        "bone_density": density,
        "n_osteophytes": n_ost,
        "fractures": c["fractures"],
        "n_fractures": len(c["fractures"]),
        "fracture_grade_max": max([int(f["grade"]) for f in c["fractures"]], default=0),
        "instrumented_levels": instrumented,
        "levels": [v["level"] for v in verts],
        "vertebra_mask": mask,
        "rotation_deg": float(ang),
        "zoom": float(zoom),
        "gain": float(gain),
        "gamma": float(gamma),
    }
    return out, truth


def render_phantom(
    spine_age: float,
    *,
    style: str = "radiograph",
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    scale: float = 1.0,
    **conditions,
) -> np.ndarray:
    """One lateral spine phantom, 2-D ``uint16`` (MONOCHROME2; values < 2**bits_stored).

    ``style``: ``"radiograph"`` (2400 x 1600 at scale 1, 12/14/16 bit, collimation margins) or ``"vfa"``
    (1000 x 400, 12 bit, DXA noise). ``scale`` shrinks both sides. Pass ``seed`` or ``rng``.
    Conditions (drawn from spine age when not given): ``sex`` ("F"/"M"), ``bmd_tscore``,
    ``fractures`` (list of ``(level, kind, grade)`` or dicts; kind wedge/biconcave/crush, Genant 1-3),
    ``prosthesis`` (bool), ``osteophyte_rate`` (0..1 per corner), ``aortic_plaques`` (count),
    ``disc_height`` (1 = young), ``soft_tissue`` (1 = average), ``bits_stored``.
    """
    return render_phantom_with_truth(spine_age, style=style, seed=seed, rng=rng, scale=scale, **conditions)[0]
