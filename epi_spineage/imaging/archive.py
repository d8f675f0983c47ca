"""Iterate images in folders, zip and tar archives without extracting anything to disk.

Members are named ``"ARCHIVE::MEMBER"`` (folder files keep their plain path), the form manifests
use. Archives are untrusted input: a member path that climbs out of the archive (``../``) or is
absolute refuses the whole archive, and so do absurd sizes (a member larger than
``ArchiveLimits.max_member_bytes``, or a compression ratio above ``max_ratio`` once more than
``ratio_floor_bytes`` would be inflated: the zip-bomb pattern). Directories, hidden files
(any path part starting with ".") and ``__MACOSX`` resource forks are skipped.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from epi_spineage.errors import ImageReadError, UserError

SEP = "::"
IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Size limits that refuse hostile archives; the defaults are far above any radiograph."""

    max_member_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 64 * 1024**2

    def __post_init__(self):
        if self.max_member_bytes <= 0 or self.max_ratio <= 1 or self.ratio_floor_bytes < 0:
            raise UserError(f"invalid archive limits: {self}")


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class ArchiveMember:
    """One file of a folder or archive. ``read_bytes()`` returns its content.

    ``fingerprint()`` is a cheap change test that never reads the whole file: a zip member's size and
    the CRC-32 its central directory already holds; a tar member's size, mtime and a hash of its first
    and last MiB; a folder file's size, mtime and a hash of its first and last MiB. None when unknown.
    """

    name: str
    size: int
    _reader: Callable[[], bytes] = field(repr=False, compare=False)
    _fingerprint: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)

    def read_bytes(self) -> bytes:
        return self._reader()

    def fingerprint(self) -> str | None:
        return self._fingerprint() if self._fingerprint is not None else None


def _head_tail_hash(head: bytes, tail: bytes) -> str:
    import hashlib

    return hashlib.sha256(head + b"\0" + tail).hexdigest()[:16]


def _file_fingerprint(path: Path) -> str | None:
    """Size, mtime and a hash of the first and last MiB of a file (at most 2 MiB read)."""
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            head = fh.read(_CHUNK)
            if st.st_size > 2 * _CHUNK:
                fh.seek(st.st_size - _CHUNK)
                tail = fh.read(_CHUNK)
            else:
                tail = fh.read()
    except OSError:
        return None
    return f"f:{st.st_size}:{st.st_mtime_ns}:{_head_tail_hash(head, tail)}"


def _data_fingerprint(data: bytes, mtime: float | None) -> str:
    tail = data[-_CHUNK:] if len(data) > _CHUNK else b""
    return f"t:{len(data)}:{int(mtime or 0)}:{_head_tail_hash(data[:_CHUNK], tail)}"


def _returning(data: bytes) -> Callable[[], bytes]:
    """A reader for content already in memory (bound now, as a default argument would bind it)."""
    return lambda: data


def _refused(reason: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise ImageReadError("<member>", reason)

    return read


def safe_member_name(archive: str, name: str) -> str:
    """The member's path with "/" separators; refuses absolute paths and ``..`` (UserError).

    Absolute means a leading "/" (or "\\") or a Windows drive ("C:/", "C:\\", "C:" alone); a name
    such as ``a::b.dcm`` is an ordinary relative name.
    """
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:(/|$)", clean):
        raise ArchiveRefused(
            f"{archive}: refusing archive with an absolute member path {name!r}",
            "refusing archive with an absolute member path",
        )
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(
            f"{archive}: refusing archive with a path-traversal member {name!r}",
            "refusing archive with a path-traversal member",
        )
    return "/".join(parts)


#: Sidecar files that travel with image archives (manifests, notes, reports) and are never images.
#: Skipped like hidden files, so a nightly run does not log the same "not an image" error every time.
SIDECAR_SUFFIXES = (
    ".csv",
    ".tsv",
    ".txt",
    ".json",
    ".xml",
    ".md",
    ".html",
    ".htm",
    ".pdf",
    ".log",
    ".ini",
    ".yaml",
    ".yml",
    ".toml",
    ".parquet",
    ".xlsx",
    ".xls",
    ".sha256",
    ".md5",
)


def _skipped(name: str) -> bool:
    parts = name.split("/")
    if not name or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return True
    # DICOMDIR is the media's directory record: DICOM, but never an image.
    return parts[-1].upper() == "DICOMDIR" or parts[-1].lower().endswith(SIDECAR_SUFFIXES)


def _suffix_ok(name: str, suffixes: tuple[str, ...] | None) -> bool:
    if suffixes is None:
        return True
    low = name.lower()
    return any(low.endswith(s) for s in suffixes)


def _norm_suffixes(suffixes: Iterable[str] | None) -> tuple[str, ...] | None:
    if suffixes is None:
        return None
    if isinstance(suffixes, str):
        suffixes = [suffixes]
    return tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes)


class ArchiveRefused(UserError):
    """An archive (or one member) refused; ``reason`` says why without naming the archive or member."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _check_size(archive: str, member: str, size: int, packed: int | None, limits: ArchiveLimits) -> None:
    if size > limits.max_member_bytes:
        reason = (
            f"member of {size} bytes refused (limit {limits.max_member_bytes}; "
            "raise ArchiveLimits.max_member_bytes if this is genuine)"
        )
        raise ArchiveRefused(f"{archive}: refusing member {member!r}: {reason}", reason)
    if packed is not None and size > limits.ratio_floor_bytes and size > limits.max_ratio * max(packed, 1):
        reason = f"compression ratio {size / max(packed, 1):.0f} exceeds {limits.max_ratio:g} (zip bomb?)"
        raise ArchiveRefused(f"{archive}: refusing member {member!r}: {reason}", reason)


def _read_limited(fh, archive: str, member: str, declared: int, limits: ArchiveLimits) -> bytes:
    """Read at most the declared size: a zip header can lie about the inflated size."""
    cap = min(declared, limits.max_member_bytes)
    chunks, total = [], 0
    while True:
        chunk = fh.read(min(_CHUNK, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise ArchiveRefused(
                f"{archive}: member {member!r} inflates beyond its declared size {declared} (zip bomb?)",
                f"member inflates beyond its declared size {declared} (zip bomb?)",
            )
    return b"".join(chunks)


def archive_kind(path: str | os.PathLike) -> str:
    """ "folder", "zip" or "tar" (any compression tarfile reads); UserError otherwise."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise UserError(f"{path}: no such file or folder")
    if zipfile.is_zipfile(p):
        return "zip"
    try:
        if tarfile.is_tarfile(p):
            return "tar"
    except (OSError, tarfile.TarError):
        pass
    raise UserError(f"{path}: not a folder, zip or tar archive")


def _iter_folder(root: Path, suffixes) -> Iterator[ArchiveMember]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for fname in sorted(filenames):
            if _skipped(fname) or not _suffix_ok(fname, suffixes):
                continue
            fpath = Path(dirpath) / fname
            if not fpath.is_file():
                continue
            yield ArchiveMember(str(fpath), fpath.stat().st_size, fpath.read_bytes, partial(_file_fingerprint, fpath))


def _zip_reader(archive: str, info: zipfile.ZipInfo, limits: ArchiveLimits, zf_holder: list) -> Callable[[], bytes]:
    def read() -> bytes:
        zf = zf_holder[0] if zf_holder and zf_holder[0].fp is not None else None
        try:
            if zf is None:  # read after the iteration closed the archive: reopen
                with zipfile.ZipFile(archive) as zf2, zf2.open(info) as fh:
                    return _read_limited(fh, archive, info.filename, info.file_size, limits)
            with zf.open(info) as fh:
                return _read_limited(fh, archive, info.filename, info.file_size, limits)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            # one corrupt member (bad CRC, sizes that lie, unsupported method) must not end a batch
            raise ImageReadError(f"{archive}{SEP}{info.filename}", f"corrupt zip member ({exc})") from None

    return read


def _iter_zip(archive: str, suffixes, limits: ArchiveLimits, odd: bool = False) -> Iterator[ArchiveMember]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        reason = f"unreadable zip archive ({' '.join(str(exc).split())})".replace(archive, "<archive>")
        raise ArchiveRefused(f"{archive}: {reason}", reason) from None
    holder = [zf]
    with zf:
        infos = zf.infolist()
        # Refuse the whole archive before yielding anything: the central directory is all here.
        names = [safe_member_name(archive, i.filename) for i in infos]
        for info, name in zip(infos, names):
            if info.is_dir() or _skipped(name) or not _suffix_ok(name, suffixes):
                continue
            fingerprint = lambda i=info: f"z:{i.file_size}:{i.CRC:08x}"
            try:
                _check_size(archive, name, info.file_size, info.compress_size, limits)
            except ArchiveRefused as exc:
                if not odd:
                    raise
                yield ArchiveMember(f"{archive}{SEP}{name}", info.file_size, _refused(exc.reason), fingerprint)
                continue
            yield ArchiveMember(
                f"{archive}{SEP}{name}", info.file_size, _zip_reader(archive, info, limits, holder), fingerprint
            )


_TAR_KINDS = (
    (tarfile.TarInfo.issym, "a symbolic link"),
    (tarfile.TarInfo.islnk, "a hard link"),
    (tarfile.TarInfo.ischr, "a character device"),
    (tarfile.TarInfo.isblk, "a block device"),
    (tarfile.TarInfo.isfifo, "a FIFO"),
)


def _iter_tar(
    archive: str, suffixes, limits: ArchiveLimits, only: str | None = None, odd: bool = False
) -> Iterator[ArchiveMember]:
    packed = os.path.getsize(archive)
    inflated = 0
    try:
        # streaming: one pass, no seeks, no temp files; closed by the `with tf:` below (the open alone is guarded)
        tf = tarfile.open(archive, mode="r|*")  # noqa: SIM115
    except (tarfile.TarError, OSError) as exc:
        reason = f"unreadable tar archive ({' '.join(str(exc).split())})".replace(archive, "<archive>")
        raise ArchiveRefused(f"{archive}: {reason}", reason) from None
    with tf:
        try:
            for info in tf:
                name = safe_member_name(archive, info.name)
                if not info.isfile():  # directories, links, devices
                    kind = next((what for test, what in _TAR_KINDS if test(info)), None)
                    if odd and kind and not _skipped(name) and _suffix_ok(name, suffixes):
                        # recorded (an error row), never followed: a link may point anywhere
                        yield ArchiveMember(
                            f"{archive}{SEP}{name}", 0, _refused(f"tar member is {kind}, not a file (not followed)")
                        )
                    continue
                inflated += info.size
                try:
                    _check_size(archive, name, info.size, None, limits)
                except ArchiveRefused as exc:
                    if not odd:
                        raise
                    yield ArchiveMember(f"{archive}{SEP}{name}", info.size, _refused(exc.reason))
                    continue
                if inflated > limits.ratio_floor_bytes and inflated > limits.max_ratio * max(packed, 1):
                    reason = f"refusing archive: it inflates more than {limits.max_ratio:g} times (tar bomb?)"
                    raise ArchiveRefused(f"{archive}: {reason}", reason)
                if _skipped(name) or not _suffix_ok(name, suffixes) or (only is not None and name != only):
                    continue
                fh = tf.extractfile(info)
                data = _read_limited(fh, archive, name, info.size, limits) if fh is not None else b""
                yield ArchiveMember(
                    f"{archive}{SEP}{name}",
                    info.size,
                    _returning(data),
                    partial(_data_fingerprint, data, info.mtime),
                )
        except (tarfile.TarError, EOFError, OSError) as exc:
            reason = f"truncated or corrupt tar archive ({type(exc).__name__}: {exc})".replace(archive, "<archive>")
            raise ArchiveRefused(f"{archive}: {reason}", reason) from None


def iter_archive(
    path: str | os.PathLike,
    *,
    suffixes: Iterable[str] | None = None,
    limits: ArchiveLimits | None = None,
    odd_members: bool = False,
) -> Iterator[ArchiveMember]:
    """Yield the files of a folder (recursive, sorted), a zip, or a tar / tar.gz / tgz.

    ``suffixes`` (e.g. ``IMAGE_SUFFIXES``) keeps only names ending so (case-insensitive); None keeps
    every file, which matters because DICOM files often have no suffix. Hidden files, ``__MACOSX``,
    ``DICOMDIR`` and sidecar files (``SIDECAR_SUFFIXES``: manifest.csv, notes, reports) are always
    skipped. Tar archives are read as one stream: their members' bytes are read during iteration, zip
    members when ``read_bytes()`` is called. Raises ``UserError`` for traversal, absurd sizes and unreadable archives.

    ``odd_members`` (the scorer's choice): a member refused for its size, and tar links and devices,
    are yielded as members whose ``read_bytes()`` raises ``ImageReadError`` saying why, so each gets
    its own error row instead of refusing (or silently skipping) it.
    """
    limits = limits or DEFAULT_LIMITS
    sfx = _norm_suffixes(suffixes)
    kind = archive_kind(path)
    archive = os.fspath(path)
    if kind == "folder":
        yield from _iter_folder(Path(path), sfx)
    elif kind == "zip":
        yield from _iter_zip(archive, sfx, limits, odd=odd_members)
    else:
        yield from _iter_tar(archive, sfx, limits, odd=odd_members)


def split_reference(name: str) -> tuple[str, str | None]:
    """``"A.zip::x/y.dcm"`` -> ``("A.zip", "x/y.dcm")``; a plain path -> ``(path, None)``.

    The archive part is the shortest prefix before a ``::`` that exists on disk, so member names
    may themselves contain ``::``.
    """
    name = os.fspath(name)
    start = 0
    while True:
        idx = name.find(SEP, start)
        if idx < 0:
            return name, None
        head = name[:idx]
        if os.path.exists(head):
            return head, name[idx + len(SEP) :]
        start = idx + 1


def read_reference(name: str | os.PathLike, *, limits: ArchiveLimits | None = None) -> bytes:
    """The bytes of a path or of an ``"ARCHIVE::MEMBER"`` reference (ImageReadError if absent).

    A tar member is found by streaming the archive up to it, so reading many members of one tar
    this way costs one pass each: prefer ``iter_archive`` for batches.
    """
    limits = limits or DEFAULT_LIMITS
    archive, member = split_reference(os.fspath(name))
    if member is None:
        p = Path(archive)
        if not p.exists():
            raise ImageReadError(archive, "no such file")
        if p.is_dir():
            raise ImageReadError(archive, "is a folder, not an image (use iter_archive)")
        return p.read_bytes()
    kind = archive_kind(archive)
    member = safe_member_name(archive, member)
    if kind == "folder":
        p = Path(archive) / member
        if not p.is_file():
            raise ImageReadError(os.fspath(name), "no such file in folder")
        return p.read_bytes()
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            info: zipfile.ZipInfo | None
            try:
                info = zf.getinfo(member)
            except KeyError:
                info = next((i for i in zf.infolist() if safe_member_name(archive, i.filename) == member), None)
            if info is None or info.is_dir():
                raise ImageReadError(os.fspath(name), "no such member in archive")
            _check_size(archive, member, info.file_size, info.compress_size, limits)
            return _zip_reader(archive, info, limits, [zf])()
    for item in _iter_tar(archive, None, limits, only=member):
        return item.read_bytes()
    raise ImageReadError(os.fspath(name), "no such member in archive")
