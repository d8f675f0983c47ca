"""Image ingestion and preprocessing (torch-free; the torch path is ``imaging.preprocess_torch``).

``load_image`` reads DICOM / PNG / JPEG / TIFF from a path, bytes or ``"ARCHIVE::MEMBER"``;
``iter_archive`` walks folders, zip and tar archives; ``preprocess`` makes the model input.

Note: the package attribute ``preprocess`` is the *function*; import the module's other names
with ``from epi_spineage.imaging.preprocess import PreprocessConfig`` (``import
epi_spineage.imaging.preprocess as m`` would bind the function, a Python import rule).
"""

from __future__ import annotations

from .archive import IMAGE_SUFFIXES, ArchiveLimits, ArchiveMember, iter_archive, read_reference
from .image import LoadedImage, content_hash, infer_modality
from .load import header_summary, load_image
from .preprocess import PreprocessConfig, PreprocessError, preprocess

__all__ = [
    "IMAGE_SUFFIXES",
    "ArchiveLimits",
    "ArchiveMember",
    "LoadedImage",
    "PreprocessConfig",
    "PreprocessError",
    "content_hash",
    "header_summary",
    "infer_modality",
    "iter_archive",
    "load_image",
    "preprocess",
    "read_reference",
]
