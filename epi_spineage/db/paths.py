"""Stored file paths: a keyed hash by default, so that no identifier in a folder or member name is stored.

PACS exports name folders and files after record and accession numbers, so the full reference of an image
(``/data/night1.zip::exports/HOSP03000009/img0009.dcm``) is as identifying as the PatientID itself. The
scorer stores ``hash_path(reference, key)`` instead: ``"h_"`` + 32 hex digits (128 bits) of
HMAC-SHA256(key, ``"path\\0"`` + reference), a different domain from participant pseudonyms (``p_``) so a
path hash can never equal one. The same key and the same reference give the same hash, so reruns skip
what is done; ``python -m epi_spineage.score --locate HASH ARCHIVE...`` finds the member again on a
machine that has both the archive and the key. See docs/privacy.md#stored-paths.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_PATH_HASH = re.compile(r"^h_[0-9a-f]{32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def hash_path(reference: str, key: bytes) -> str:
    """The stored form of one path or ``ARCHIVE::MEMBER`` reference: ``h_`` + 32 hex digits."""
    if not key:
        raise ValueError("hash_path needs the pseudonymisation key")
    digest = hmac.new(bytes(key), b"path\0" + str(reference).encode("utf-8", "surrogateescape"), hashlib.sha256)
    return "h_" + digest.hexdigest()[:32]


def is_path_hash(value: object) -> bool:
    """True for a stored path hash (``h_`` + 32 hex digits)."""
    return isinstance(value, str) and bool(_PATH_HASH.match(value))


def log_safe(text: object) -> str:
    """``text`` with newlines and other control characters escaped, so a file name cannot forge a log line."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), str(text))
