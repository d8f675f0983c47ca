"""Pseudonymisation: identifiers become a keyed hash (HMAC-SHA256) before anything is stored.

The key comes from ``EPI_SPINEAGE_PSEUDONYM_KEY`` or from the file named by
``EPI_SPINEAGE_PSEUDONYM_KEY_FILE`` (or passed explicitly). Without a key, tools that store
identifiers refuse to run: an unkeyed hash of a hospital ID is reversible by enumeration.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from epi_spineage.errors import UserError
from epi_spineage.schema import PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV

#: Published so that demos and tests can run; never use it for real data.
DEMO_KEY = b"epi-spineage-demo-key-not-for-real-data"
_MIN_KEY_BYTES = 16


def load_key(key: str | bytes | None = None, key_file: str | os.PathLike | None = None) -> bytes:
    """Return the pseudonymisation key from the argument, a key file or the environment."""
    if key is not None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
    elif key_file is not None or os.environ.get(PSEUDONYM_KEY_FILE_ENV):
        path = Path(key_file or os.environ[PSEUDONYM_KEY_FILE_ENV])
        if not path.is_file():
            raise UserError(f"pseudonym key file not found: {path}")
        raw = path.read_bytes().strip()
    elif os.environ.get(PSEUDONYM_KEY_ENV):
        raw = os.environ[PSEUDONYM_KEY_ENV].encode()
    else:
        raise UserError(
            f"no pseudonymisation key: set {PSEUDONYM_KEY_ENV} (at least {_MIN_KEY_BYTES} characters) "
            f"or {PSEUDONYM_KEY_FILE_ENV}, or pass --key-file"
        )
    if len(raw) < _MIN_KEY_BYTES:
        raise UserError(f"pseudonymisation key too short: use at least {_MIN_KEY_BYTES} characters")
    return raw


def pseudonymise(identifier: object, key: bytes) -> str:
    """Keyed hash of one identifier: ``"p_" + 24 hex digits`` (96 bits). ``None`` stays ``None``."""
    if identifier is None:
        return None  # type: ignore[return-value]
    text = str(identifier).strip()
    if not text or text.lower() == "nan":
        return None  # type: ignore[return-value]
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return "p_" + digest[:24]


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible name for a key, so stored hashes can say which key made them."""
    return hashlib.sha256(b"fingerprint:" + key).hexdigest()[:12]
