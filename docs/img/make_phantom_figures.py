"""Regenerate docs/img/phantom_radiograph.png and docs/img/phantom_vfa.png (synthetic phantoms).

Run: .venv/bin/python docs/img/make_phantom_figures.py
"""

from pathlib import Path

import cv2
import numpy as np

from epi_spineage.synth.phantom import render_phantom_with_truth

OUT = Path(__file__).resolve().parent


def to8(img, bits):
    return np.clip(img.astype(np.float32) / (2**bits - 1) * 255, 0, 255).astype(np.uint8)


def panel(items, size):
    tiles = []
    for img, bits, text in items:
        tile = cv2.resize(to8(img, bits), size, interpolation=cv2.INTER_AREA)
        head = np.zeros((26, size[0]), np.uint8)
        cv2.putText(head, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.48, 255, 1, cv2.LINE_AA)
        tiles.append(np.vstack([head, tile]))
    return np.hstack(tiles)


def main():
    rad = [
        (45, dict(seed=11, prosthesis=False, fractures=[]), "spine age 45"),
        (85, dict(seed=12, prosthesis=False, fractures=[("L1", "wedge", 3)]), "85, L1 wedge grade 3"),
        (70, dict(seed=13, prosthesis=True, fractures=[]), "70, prosthesis"),
    ]
    items = []
    for age, kw, text in rad:
        img, t = render_phantom_with_truth(age, style="radiograph", scale=0.25, **kw)
        items.append((img, t["bits_stored"], text))
    cv2.imwrite(str(OUT / "phantom_radiograph.png"), panel(items, (280, 420)), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    vfa = [
        (45, dict(seed=21, fractures=[]), "VFA, spine age 45"),
        (85, dict(seed=22, fractures=[("T12", "crush", 3)]), "85, T12 crush gr. 3"),
    ]
    items = []
    for age, kw, text in vfa:
        img, t = render_phantom_with_truth(age, style="vfa", scale=0.5, **kw)
        items.append((img, t["bits_stored"], text))
    cv2.imwrite(str(OUT / "phantom_vfa.png"), panel(items, (180, 440)), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
