"""The image dataset for training and inference; manifests are read by ``epi_spineage.tables.manifest``.

The manifest helpers are re-exported here for the model code that imported them from this module.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from epi_spineage.errors import ImageReadError
from epi_spineage.tables.manifest import (  # noqa: F401  (re-exported)
    SPLIT_FRACTIONS,
    assign_splits,
    manifest_hash,
    participant_folds,
    read_manifest,
    resolve_reference,
)

log = logging.getLogger(__name__)


class ImageDataset:
    """Decodes and preprocesses images on access (in DataLoader workers); yields ``(x, age)``."""

    def __init__(self, images: Sequence[str], modalities: Sequence[str], ages: Sequence[float], config):
        self.images = list(images)
        self.modalities = list(modalities)
        self.ages = np.asarray(ages, dtype="float32")
        self.config = config

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> np.ndarray:
        from epi_spineage.imaging import load_image, preprocess

        try:
            # Per-image notes (e.g. "MONOCHROME1 inverted") would repeat thousands of times in training;
            # they go to the debug log instead.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                img = load_image(self.images[i])
            for w in caught:
                log.debug("%s", w.message)
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - name the file, keep the reason
            raise ImageReadError(self.images[i], f"{type(exc).__name__}: {exc}") from None
        return preprocess(img.pixels, modality=self.modalities[i] or "radiograph", config=self.config)

    def __getitem__(self, i: int):
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.load(i), dtype=np.float32)), torch.tensor(self.ages[i])


def preload(dataset, workers: int = 0, batch_size: int = 32, desc: str = "decoding"):
    """Decode + preprocess every image once (in workers) and keep them in memory as float16.

    Returns a ``TensorDataset`` of ``(x, age)``; for small sets this makes each epoch pure compute.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from epi_spineage.progress import Progress

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    xs, ys = [], []
    with Progress(desc, total=len(loader), unit="batch") as bar:  # a bar on a terminal, else one INFO line
        for x, y in bar.iterate(loader):
            xs.append(x.to(torch.float16))
            ys.append(y)
    return TensorDataset(torch.cat(xs), torch.cat(ys))
