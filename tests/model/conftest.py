"""Fixtures for the model tests: toy images whose content encodes age, tiny networks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def toy_image(age: float, rng: np.random.Generator, h: int = 96, w: int = 48) -> np.ndarray:
    """A uint16 image with a bright bar whose height grows with age, plus noise."""
    img = rng.normal(800, 60, size=(h, w)).clip(0, 4095)
    frac = 0.15 + 0.7 * (age - 40) / 60
    top = int(h * (1 - frac))
    img[top:, w // 3 : 2 * w // 3] += 2000
    return img.clip(0, 4095).astype(np.uint16)


def write_toy_manifest(folder, n: int = 60, seed: int = 0, split: bool = False) -> pd.DataFrame:
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        age = float(rng.uniform(42, 98))
        name = f"img{i:03d}.png"
        cv2.imwrite(str(folder / name), toy_image(age, rng))
        rows.append(
            {
                "image": name,
                "participant_id": f"P{i // 2:03d}",
                "age_years": age,
                "modality": "radiograph" if i % 3 else "vfa",
            }
        )
    df = pd.DataFrame(rows)
    if split:
        df["split"] = np.where(df.index % 5 < 3, "train", np.where(df.index % 5 == 3, "val", "test"))
        df["split"] = df.groupby("participant_id")["split"].transform("first")
    df.to_csv(folder / "manifest.csv", index=False)
    return df


@pytest.fixture(scope="session")
def toy_manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    write_toy_manifest(folder, n=60, seed=0)
    return folder / "manifest.csv"
