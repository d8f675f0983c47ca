"""Bridges to ``epi_spineage.imaging`` (helper area A), imported lazily.

The preprocessing config travels with the weights (STYLE: timm's pretrained config); the model code
only needs ``PreprocessConfig`` (``to_dict``/``from_dict``/``config_hash``) and ``preprocess``.
"""

from __future__ import annotations

from typing import Any


def preprocess_config_cls():
    from epi_spineage.imaging.preprocess import PreprocessConfig

    return PreprocessConfig


def make_preprocess_config(value: Any = None, **overrides):
    """A ``PreprocessConfig`` from None (defaults), a dict, or a config; ``overrides`` replace fields."""
    cls = preprocess_config_cls()
    if value is None:
        base = cls().to_dict()
    elif isinstance(value, dict):
        base = dict(value)
    else:
        base = value.to_dict()
    base.update({k: v for k, v in overrides.items() if v is not None})
    return cls.from_dict(base)


def preprocess_hash(value: Any) -> str:
    """Hash of a config, a config dict, or a hash string (returned as is)."""
    if isinstance(value, str):
        return value
    return make_preprocess_config(value).config_hash()


def preprocess(pixels, modality, config):
    from epi_spineage.imaging.preprocess import preprocess as _pre

    return _pre(pixels, modality=modality or "radiograph", config=config)


def load_image(source):
    from epi_spineage.imaging import load_image as _load

    return _load(source)
