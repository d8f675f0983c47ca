"""Shared fixtures and markers. Every test seeds its own generators."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    cuda = None
    for item in items:
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
