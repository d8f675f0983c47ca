"""Split archives between DataLoader workers by member, so that each archive is read once.

One indexing pass in the main process lists every member with what it takes to read it alone: a
folder's file paths, a zip's central directory, an uncompressed tar's data offsets (its headers are
read, its data seeked over). Worker ``k`` of ``n`` then reads only members ``k, k + n, ...``; a
member's bytes are read by exactly one process.

A compressed tar (``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``) has no offsets to seek to: it is
split by position as before, and every worker decompresses the stream (the one case still read once
per worker; repack such archives as plain ``.tar`` or ``.zip`` for large runs, docs/guides/score.md).

The same checks as ``imaging.iter_archive`` apply (path traversal, absurd sizes and ratios, skipped
hidden and sidecar files): an archive refused part-way keeps the members listed before the refusal
and adds one error entry for the archive, as the streaming reader does.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from epi_spineage.errors import ImageReadError, UserError
from epi_spineage.imaging.archive import (
    _CHUNK,
    _TAR_KINDS,
    DEFAULT_LIMITS,
    SEP,
    ArchiveMember,
    ArchiveRefused,
    _check_size,
    _file_fingerprint,
    _head_tail_hash,
    _read_limited,
    _skipped,
    archive_kind,
    iter_archive,
    safe_member_name,
)


@dataclass(frozen=True)
class MemberRef:
    """One member and how to read it on its own. ``kind``: ``file``, ``zip``, ``tar`` (seek to
    ``offset``), ``error`` (``error`` says why; nothing to read) or ``stream`` (a compressed tar,
    ``name`` is the archive: split by position)."""

    name: str
    size: int | None
    kind: str
    archive: str
    inner: str | None = None
    offset: int | None = None
    error: str | None = None
    #: the cheap change test the streaming reader gives the same member (zip CRC, tar mtime), see
    #: ``imaging.archive.ArchiveMember.fingerprint``; folder files are fingerprinted when asked
    fingerprint: str | None = None
    mtime: float | None = None


def _index_tar(archive: str) -> Iterator[MemberRef]:
    """Names and data offsets of an uncompressed tar (``tarfile.ReadError`` when it is compressed)."""
    limits = DEFAULT_LIMITS
    packed = os.path.getsize(archive)
    inflated = 0
    with tarfile.open(archive, mode="r:") as tf:  # random access: headers read, data seeked over
        for info in tf:
            name = safe_member_name(archive, info.name)
            if not info.isfile():  # directories, links, devices: links and devices are recorded, never followed
                kind = next((what for test, what in _TAR_KINDS if test(info)), None)
                if kind and not _skipped(name):
                    yield MemberRef(
                        f"{archive}{SEP}{name}",
                        0,
                        "refused",
                        archive,
                        error=f"tar member is {kind}, not a file (not followed)",
                    )
                continue
            inflated += info.size
            try:
                _check_size(archive, name, info.size, None, limits)
            except ArchiveRefused as exc:  # one oversized member is its own error row, as in iter_members
                yield MemberRef(f"{archive}{SEP}{name}", info.size, "refused", archive, error=exc.reason)
                continue
            if inflated > limits.ratio_floor_bytes and inflated > limits.max_ratio * max(packed, 1):
                reason = f"refusing archive: it inflates more than {limits.max_ratio:g} times (tar bomb?)"
                raise ArchiveRefused(f"{archive}: {reason}", reason)
            if _skipped(name):
                continue
            yield MemberRef(
                f"{archive}{SEP}{name}", info.size, "tar", archive, offset=info.offset_data, mtime=info.mtime
            )


def _is_plain_tar(archive: str) -> bool:
    try:
        with tarfile.open(archive, mode="r:") as tf:
            tf.next()
        return True
    except (tarfile.ReadError, tarfile.CompressionError):
        return False


def index_archives(archives: Sequence[str]) -> list[MemberRef]:
    """Every member of ``archives`` in the order ``iter_members`` walks them (one pass per archive)."""
    refs: list[MemberRef] = []
    for archive in archives:
        archive = os.fspath(archive)
        try:
            kind = archive_kind(archive)
            if kind == "folder":
                refs.extend(MemberRef(m.name, m.size, "file", archive) for m in iter_archive(archive))
            elif kind == "zip":
                try:
                    with zipfile.ZipFile(archive) as zf:
                        infos = zf.infolist()
                except (zipfile.BadZipFile, OSError) as exc:
                    raise UserError(f"{archive}: unreadable zip archive ({' '.join(str(exc).split())})") from None
                names = [safe_member_name(archive, i.filename) for i in infos]  # refuse before listing any
                for info, name in zip(infos, names):
                    if info.is_dir() or _skipped(name):
                        continue
                    fingerprint = f"z:{info.file_size}:{info.CRC:08x}"
                    try:
                        _check_size(archive, name, info.file_size, info.compress_size, DEFAULT_LIMITS)
                    except ArchiveRefused as exc:  # its own error row, as in iter_members
                        refs.append(
                            MemberRef(
                                f"{archive}{SEP}{name}",
                                info.file_size,
                                "refused",
                                archive,
                                error=exc.reason,
                                fingerprint=fingerprint,
                            )
                        )
                        continue
                    refs.append(
                        MemberRef(
                            f"{archive}{SEP}{name}",
                            info.file_size,
                            "zip",
                            archive,
                            inner=info.filename,
                            fingerprint=fingerprint,
                        )
                    )
            elif _is_plain_tar(archive):
                try:
                    refs.extend(_index_tar(archive))
                except (tarfile.TarError, EOFError, OSError) as exc:
                    raise UserError(
                        f"{archive}: truncated or corrupt tar archive ({type(exc).__name__}: {exc})"
                    ) from None
            else:
                refs.append(MemberRef(archive, None, "stream", archive))
        except UserError as exc:
            # the reason only: the full message names the archive and the member (identifiers)
            reason = exc.reason if isinstance(exc, ArchiveRefused) else str(exc)
            refs.append(MemberRef(archive, None, "error", archive, error=reason))
    return refs


class MemberReader:
    """Reads members by reference; keeps one open handle per archive for the worker's lifetime."""

    def __init__(self) -> None:
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._tars: dict[str, IO[bytes]] = {}
        self.reads = 0  # members whose bytes this reader read (the tests count them)

    def read(self, ref: MemberRef) -> bytes:
        self.reads += 1
        try:
            if ref.kind == "file":
                return Path(ref.name).read_bytes()
            if ref.kind == "zip":
                zf = self._zips.get(ref.archive)
                if zf is None:
                    zf = self._zips[ref.archive] = zipfile.ZipFile(ref.archive)
                assert ref.inner is not None  # every zip ref names its member
                info = zf.getinfo(ref.inner)
                with zf.open(info) as member:
                    return _read_limited(member, ref.archive, ref.inner, info.file_size, DEFAULT_LIMITS)
            if ref.kind == "tar":
                assert ref.offset is not None and ref.size is not None  # every tar ref has its position
                fh = self._tars.get(ref.archive)
                if fh is None:
                    fh = self._tars[ref.archive] = open(ref.archive, "rb")  # noqa: SIM115 (closed in close())
                fh.seek(ref.offset)
                data = fh.read(ref.size)
                if len(data) != ref.size:
                    raise ImageReadError(ref.name, f"truncated tar member ({len(data)} of {ref.size} bytes)")
                return data
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, KeyError) as exc:
            raise ImageReadError(ref.name, f"could not read member ({type(exc).__name__}: {exc})") from None
        raise ValueError(f"nothing to read for a {ref.kind} entry")

    def member(self, ref: MemberRef) -> ArchiveMember:
        return ArchiveMember(ref.name, ref.size or 0, lambda: self.read(ref), lambda: self.fingerprint(ref))

    def fingerprint(self, ref: MemberRef) -> str | None:
        """The same cheap change test the streaming reader computes (head and tail only, never the whole member)."""
        if ref.fingerprint is not None or ref.kind == "zip":
            return ref.fingerprint
        if ref.kind == "file":
            return _file_fingerprint(Path(ref.name))
        if ref.kind == "tar" and ref.offset is not None and ref.size is not None:
            fh = self._tars.get(ref.archive)
            if fh is None:
                fh = self._tars[ref.archive] = open(ref.archive, "rb")  # noqa: SIM115 (closed in close())
            fh.seek(ref.offset)
            head = fh.read(min(ref.size, _CHUNK))
            tail = b""
            if ref.size > _CHUNK:
                fh.seek(ref.offset + ref.size - _CHUNK)
                tail = fh.read(_CHUNK)
            return f"t:{ref.size}:{int(ref.mtime or 0)}:{_head_tail_hash(head, tail)}"
        return None

    def close(self) -> None:
        for zf in self._zips.values():
            zf.close()
        for fh in self._tars.values():
            fh.close()
        self._zips.clear()
        self._tars.clear()


def _fixed_fingerprint(value: str | None) -> Callable[[], str | None]:
    return lambda: value


def _refused_reader(reason: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise ImageReadError("<member>", reason)

    return read


def shard_entries(
    refs: Sequence[MemberRef], shard: int, n_shards: int, reader: MemberReader
) -> Iterator[tuple[str, int | None, object]]:
    """(name, size, member-or-error) for this shard, as ``score.members.iter_members`` yields them."""
    from epi_spineage.score.members import iter_members

    listed = [r for r in refs if r.kind != "stream"]
    for ref in listed[shard::n_shards]:
        if ref.kind == "error":
            yield ref.name, None, UserError(ref.error or "unreadable archive")
        elif ref.kind == "refused":  # a member refused on its own: a member whose read fails (its own row)
            yield (
                ref.name,
                ref.size,
                ArchiveMember(
                    ref.name,
                    ref.size or 0,
                    _refused_reader(ref.error or "refused"),
                    _fixed_fingerprint(ref.fingerprint),
                ),
            )
        else:
            yield ref.name, ref.size, reader.member(ref)
    streams = [r.archive for r in refs if r.kind == "stream"]
    if streams:
        yield from iter_members(streams, shard=shard, n_shards=n_shards)
