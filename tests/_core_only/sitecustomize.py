"""Core-only test runs (``make test-core``): the imaging stack cannot be imported, in pytest's process
and in every Python subprocess a test starts (this folder is put first on ``PYTHONPATH``)."""

from __future__ import annotations

import importlib.abc
import sys

#: The imaging extra (and Ray): what a core install (``pip install epi-spineage``) does not have.
BLOCKED = (
    "torch",
    "torchvision",
    "timm",
    "pydicom",
    "pylibjpeg",
    "libjpeg",
    "openjpeg",
    "cv2",
    "tifffile",
    "safetensors",
    "ray",
)


class BlockImaging(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - the finder protocol
        top = name.split(".")[0]
        if top in BLOCKED or top.startswith("pylibjpeg"):
            raise ModuleNotFoundError(f"No module named {name!r} (core-only test run)", name=name)
        return None


def install() -> None:
    if not any(isinstance(f, BlockImaging) for f in sys.meta_path):
        sys.meta_path.insert(0, BlockImaging())


install()
