"""Image QC before scoring: is this a lateral spine view, by its DICOM tags?

Only tags that are present can refuse an image: PNG/JPEG/TIFF files and DICOMs with empty tags
pass (a model trained on lateral spine views is the last line of defence there). Refused images
are recorded in ``images`` with ``qc_status = 'not_spine'`` and the reason; ``--include-non-spine``
scores them anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

#: ViewPosition values that are lateral projections (DICOM CID 4010 and common vendor spellings).
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLAT", "RLAT", "L", "R"})

#: BodyPartExamined values for the spine (DICOM CID 4031 plus vendor spellings).
SPINE_PARTS = frozenset(
    {
        "SPINE",
        "LSPINE",
        "TSPINE",
        "CSPINE",
        "TLSPINE",
        "LSSPINE",
        "WHOLESPINE",
        "WHOLE SPINE",
        "LUMBAR",
        "THORACIC",
        "THORACOLUMBAR",
        "LUMBARSPINE",
        "THORACICSPINE",
        "L-SPINE",
        "T-SPINE",
    }
)

#: Projection radiography and secondary-capture SOP classes (DXA VFA images are secondary capture).
PROJECTION_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray, for presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray, for processing
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame single bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame grayscale byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame grayscale word SC
        "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic (fluoroscopy frames)
        "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic
    }
)


def _clean(value) -> str:
    return str(value or "").strip().upper()


def lateral_spine_problem(meta: Mapping) -> str | None:
    """Why an image is not a lateral spine view, or ``None`` when nothing says so.

    >>> lateral_spine_problem({"format": "dicom", "view_position": "AP", "body_part_examined": "LSPINE"})
    'ViewPosition AP is not lateral'
    """
    if meta.get("format") not in (None, "dicom"):
        return None
    sop_class = str(meta.get("sop_class_uid") or "").strip()
    if sop_class and sop_class not in PROJECTION_SOP_CLASSES:
        return f"SOP class {sop_class} is not a projection radiograph or secondary capture"
    view = _clean(meta.get("view_position"))
    if view and view not in LATERAL_VIEWS:
        return f"ViewPosition {view} is not lateral"
    part = _clean(meta.get("body_part_examined"))
    if part and part not in SPINE_PARTS and "SPINE" not in part:
        return f"BodyPartExamined {part} is not the spine"
    return None


def classify_read_error(reason: str) -> str:
    """A short ``errors.error_type`` for an ``ImageReadError`` reason."""
    text = reason.lower()
    if "truncat" in text or "end of file" in text or "incomplete" in text or "less than expected" in text:
        return "truncated"
    if (
        "not an image" in text
        or "not a dicom" in text
        or "no pixel" in text
        or "unknown format" in text
        or "not a supported" in text
        or "unsupported" in text
        or "unrecognised" in text
    ):
        return "not_an_image"
    return "unreadable"
