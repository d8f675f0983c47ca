"""Shared fixtures and markers. Every test seeds its own generators."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: ``EPI_SPINEAGE_TEST_CORE_ONLY=1`` (``make test-core``): run as a core install would, without the imaging
#: extra; the tests that need it skip (module-level ``pytest.importorskip`` or the ``needs_imaging`` marker).
CORE_ONLY = os.environ.get("EPI_SPINEAGE_TEST_CORE_ONLY") == "1"
_CORE_ONLY_DIR = Path(__file__).parent / "_core_only"


def pytest_configure(config):
    if CORE_ONLY:
        # the import blocker, in this process (before any test module is collected) ...
        runpy.run_path(str(_CORE_ONLY_DIR / "sitecustomize.py"))
        # ... and in every Python subprocess a test starts
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_CORE_ONLY_DIR), os.environ.get("PYTHONPATH")]))


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_imaging = pytest.mark.skip(reason="needs the imaging extra (core-only run)")
    cuda = None
    for item in items:
        if CORE_ONLY and "needs_imaging" in item.keywords:
            item.add_marker(skip_imaging)
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(skip_gpu)


@pytest.fixture
def pseudonym_key(monkeypatch):
    """A test key in the environment, as the tools read it."""
    key = "test-key-0123456789abcdef"
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", key)
    return key.encode()
