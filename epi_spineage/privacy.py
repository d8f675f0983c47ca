"""Pseudonymisation: identifiers become a keyed hash (HMAC-SHA256) before anything is stored.

Library functions take the key as an argument (``key: bytes``) and never read the environment: each
tool's ``main()`` resolves it once, from ``--key-file``, ``EPI_SPINEAGE_PSEUDONYM_KEY`` or the file named
by ``EPI_SPINEAGE_PSEUDONYM_KEY_FILE`` (``epi_spineage.cli.common.resolve_key``, the one place that reads
those variables). Without a key, tools that store identifiers refuse to run: an unkeyed hash of a
hospital ID is reversible by enumeration.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from epi_spineage.errors import UserError
from epi_spineage.schema import PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV

#: Published so that demos and tests can run; never use it for real data.
DEMO_KEY = b"epi-spineage-demo-key-not-for-real-data"
_MIN_KEY_BYTES = 16

#: What a pseudonym looks like: ``p_`` + 24 lower-case hex digits (see ``pseudonymise``).
PSEUDONYM_PATTERN = r"p_[0-9a-f]{24}"
_PSEUDONYM_RE = re.compile(PSEUDONYM_PATTERN)

#: The one-line refusal of every tool and function that needs a key and got none.
NO_KEY_MESSAGE = (
    f"no pseudonymisation key: set {PSEUDONYM_KEY_ENV} (at least {_MIN_KEY_BYTES} characters) "
    f"or {PSEUDONYM_KEY_FILE_ENV}, or pass --key-file"
)


def is_pseudonym(value: object) -> bool:
    """True when ``value`` is a string shaped like a pseudonym made by ``pseudonymise``."""
    return isinstance(value, str) and _PSEUDONYM_RE.fullmatch(value) is not None


def check_key(key: str | bytes) -> bytes:
    """The key as bytes; ``UserError`` when it is shorter than 16 characters."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < _MIN_KEY_BYTES:
        raise UserError(f"pseudonymisation key too short: use at least {_MIN_KEY_BYTES} characters")
    return raw


def read_key_file(path: str | os.PathLike) -> bytes:
    """The key stored in ``path`` (surrounding whitespace stripped); ``UserError`` if missing or short."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pseudonym key file not found: {path}")
    return check_key(path.read_bytes().strip())


def require_key(key: str | bytes | None = None, key_file: str | os.PathLike | None = None) -> bytes:
    """The key from the argument or ``key_file``; never the environment. ``UserError`` when neither is given.

    Library functions call this; tools resolve the key once in ``main()`` and pass it down.
    """
    if key is not None:
        return check_key(key)
    if key_file is not None:
        return read_key_file(key_file)
    raise UserError(NO_KEY_MESSAGE)


def load_key(key: str | bytes | None = None, key_file: str | os.PathLike | None = None) -> bytes:
    """Return the pseudonymisation key from the argument, a key file or the environment.

    A convenience for Python users and notebooks, resolved as the tools do; the package's own library
    code never calls it (it takes ``key`` as an argument).
    """
    from epi_spineage.cli.common import resolve_key

    if key is not None:
        return check_key(key)
    resolved = resolve_key(key_file)  # required: raises UserError rather than return None
    assert resolved is not None
    return resolved


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
