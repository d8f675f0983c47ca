"""DICOM pixel data without decoding it: the first frame's codestream (or raw bytes) and the header
fields that turn decoded samples into the CPU reader's exact pixels.

The GPU path (``imaging.gpu_decode``, docs/guides/score.md#gpu) needs the compressed frame as its
codec wrote it, because nvImageCodec decodes JPEG 2000 / HTJ2K / JPEG codestreams and knows nothing
of DICOM. pydicom parses the header only (``stop_before_pixels``, which leaves the file position on
the Pixel Data element); the element itself is read here: native data as a view of the file's
bytes, encapsulated data (PS3.5 A.4) through its Basic (or Extended) Offset Table and fragments, so
a frame split over several fragments is joined and the fragments of other frames are not touched.

Torch-free and decoder-free, so DataLoader workers run it. Whatever the GPU path cannot reproduce
exactly (colour, palettes, a Modality LUT Sequence, float pixel data, deflated or JPEG-LS data, an
unusual layout) gets ``kind == "cpu"`` with the reason: the scorer gives that image to the CPU reader.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from epi_spineage.errors import ImageReadError

#: Transfer syntaxes by how their pixel data are carried.
NATIVE_LITTLE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
NATIVE_BIG = {"1.2.840.10008.1.2.2"}
RLE = {"1.2.840.10008.1.2.5"}
JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
JPEG2000 = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
HTJ2K = {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
#: Syntaxes whose decoded samples are the encoder's input bit for bit (so every decoder agrees).
#: 4.203 (HTJ2K) may be either; it is treated as lossy, so the hash records the decoder.
LOSSLESS = (
    NATIVE_LITTLE
    | NATIVE_BIG
    | RLE
    | {
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
    }
)

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_ITEM = 0xE000FFFE  # (FFFE,E000) read as a little-endian uint32
_SEQ_DELIM = 0xE0DDFFFE
_UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class PixelInfo:
    """The header fields that decide the pixels (PS3.3 C.7.6.3 and C.11.1)."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    number_of_frames: int
    transfer_syntax_uid: str
    #: (slope, intercept) when both are present (even 1 and 0), else None.
    rescale: tuple[float, float] | None

    @property
    def signed(self) -> bool:
        return self.pixel_representation == 1

    @property
    def lossless(self) -> bool:
        return self.transfer_syntax_uid in LOSSLESS

    def stored_range(self) -> tuple[int, int]:
        """The values BitsStored can hold (as ``imaging.dicom._stored_range``)."""
        bits = self.bits_stored or self.bits_allocated or 16
        if self.signed:
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return 0, 2**bits - 1

    def native_dtype(self) -> np.dtype:
        """NumPy dtype of one stored sample in native (uncompressed) data."""
        kind = "i" if self.signed else "u"
        order = ">" if self.transfer_syntax_uid in NATIVE_BIG else "<"
        return np.dtype(f"{order}{kind}{self.bits_allocated // 8}")


@dataclass(frozen=True)
class EncapsulatedFrame:
    """The first frame of a DICOM, undecoded.

    ``kind``: ``"native"`` (``data`` is the raw frame, see ``PixelInfo.native_dtype``), ``"rle"``
    (decoded on the CPU into a raw array: RLE is cheap, and no GPU codec reads it), ``"jpeg2000"``,
    ``"htj2k"`` or ``"jpeg"`` (``data`` is the codestream), or ``"cpu"`` (``reason`` says why the
    CPU reader must take the whole file).
    """

    kind: str
    info: PixelInfo | None
    data: bytes | memoryview | None
    reason: str | None = None
    header: object = None  # the pydicom Dataset without pixel data (for ``imaging.dicom.dicom_meta``)

    @property
    def codestream(self) -> bool:
        return self.kind in ("jpeg2000", "htj2k", "jpeg")


def _int(ds, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def pixel_info(ds, transfer_syntax_uid: str) -> PixelInfo:
    """``PixelInfo`` from a pydicom header."""
    rescale = None
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        rescale = (float(ds.RescaleSlope), float(ds.RescaleIntercept))
    bits_allocated = _int(ds, "BitsAllocated", 16) or 16
    return PixelInfo(
        rows=_int(ds, "Rows", 0) or 0,
        columns=_int(ds, "Columns", 0) or 0,
        bits_allocated=bits_allocated,
        bits_stored=_int(ds, "BitsStored", bits_allocated) or bits_allocated,
        pixel_representation=_int(ds, "PixelRepresentation", 0) or 0,
        samples_per_pixel=_int(ds, "SamplesPerPixel", 1) or 1,
        photometric=str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper(),
        number_of_frames=_int(ds, "NumberOfFrames", 1) or 1,
        transfer_syntax_uid=transfer_syntax_uid,
        rescale=rescale,
    )


def _cpu_reason(ds, info: PixelInfo) -> str | None:
    """Why the GPU path cannot reproduce the CPU reader's pixels for this header (None: it can)."""
    if info.rows <= 0 or info.columns <= 0:
        return "zero image size"
    if info.samples_per_pixel != 1 or info.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return f"colour ({info.photometric})"
    if ds.get("ModalityLUTSequence"):
        return "Modality LUT Sequence"
    if info.bits_allocated not in (8, 16, 32) or info.bits_stored > info.bits_allocated:
        return f"BitsAllocated {info.bits_allocated} / BitsStored {info.bits_stored}"
    kinds = NATIVE_LITTLE | NATIVE_BIG | RLE | JPEG | JPEG2000 | HTJ2K
    if info.transfer_syntax_uid not in kinds:
        return f"transfer syntax {info.transfer_syntax_uid or 'unknown'}"
    return None


def _element_value(data: bytes, pos: int, explicit_vr: bool, little: bool) -> tuple[int, int]:
    """(start, length) of the Pixel Data element's value at ``pos``; length -1 = undefined (encapsulated)."""
    if data[pos : pos + 4] != (_PIXEL_DATA_TAG if little else b"\x7f\xe0\x00\x10"):
        raise ValueError("Pixel Data element not where the header ended")
    end = "<" if little else ">"
    if explicit_vr:
        vr = data[pos + 4 : pos + 6]
        if vr not in (b"OB", b"OW", b"UN"):
            raise ValueError(f"Pixel Data with VR {vr!r}")
        (length,) = struct.unpack_from(end + "I", data, pos + 8)
        start = pos + 12
    else:
        (length,) = struct.unpack_from(end + "I", data, pos + 4)
        start = pos + 8
    if length == _UNDEFINED:
        return start, -1
    if start + length > len(data):
        raise ValueError("Pixel Data runs past the end of the file")
    return start, length


def _items(view: memoryview, start: int) -> list[memoryview]:
    """The items of an encapsulated Pixel Data value (the Basic Offset Table first), up to the
    Sequence Delimiter (a missing delimiter is accepted: some writers omit it)."""
    out, pos, n = [], start, len(view)
    while pos + 8 <= n:
        tag, length = struct.unpack_from("<II", view, pos)
        pos += 8
        if tag == _SEQ_DELIM:
            break
        if tag != _ITEM or length == _UNDEFINED or pos + length > n:
            raise ValueError("malformed encapsulated Pixel Data (bad item)")
        out.append(view[pos : pos + length])
        pos += length
    if not out:
        raise ValueError("encapsulated Pixel Data without a Basic Offset Table item")
    return out


def first_frame(items: list[memoryview], n_frames: int, extended_offsets: bytes | None = None) -> bytes | memoryview:
    """The first frame's codestream from the Offset Table item and the fragments (PS3.5 A.4).

    With an offset table, frame 0 is every fragment before the second offset; without one, a
    single frame is all fragments, and as many fragments as frames is one fragment per frame.
    Otherwise the frame ends at the first fragment that ends with a JPEG / JPEG 2000 EOI marker.
    """
    bot, fragments = items[0], items[1:]
    if not fragments:
        raise ValueError("encapsulated Pixel Data without fragments")
    if extended_offsets:
        offsets = list(np.frombuffer(extended_offsets, "<u8"))
    elif len(bot):
        offsets = list(np.frombuffer(bytes(bot), "<u4"))
    else:
        offsets = []
    if len(offsets) >= 2:
        end, taken, pos = int(offsets[1]), [], 0
        for frag in fragments:
            if pos >= end:
                break
            taken.append(frag)
            pos += len(frag) + 8  # offsets count each fragment's item header too
    elif n_frames == 1:
        taken = fragments
    elif len(fragments) == n_frames:
        taken = fragments[:1]
    else:
        taken = []
        for frag in fragments:
            taken.append(frag)
            tail = bytes(frag[-3:])
            if tail.endswith(b"\xff\xd9") or tail[:2] == b"\xff\xd9":  # (fragments are padded to even length)
                break
    return taken[0] if len(taken) == 1 else b"".join(bytes(f) for f in taken)


def _kind(tsuid: str) -> str:
    if tsuid in NATIVE_LITTLE or tsuid in NATIVE_BIG:
        return "native"
    if tsuid in RLE:
        return "rle"
    if tsuid in JPEG2000:
        return "jpeg2000"
    if tsuid in HTJ2K:
        return "htj2k"
    return "jpeg"


def parse_dicom(data: bytes, source: str = "<bytes>") -> EncapsulatedFrame:
    """Header and first-frame pixel data of a DICOM file, nothing decoded.

    Raises ``ImageReadError`` only when the header itself is unreadable; any other oddity returns
    ``kind == "cpu"`` so that the CPU reader decides (and reports) as it always has.
    """
    import pydicom

    fp = io.BytesIO(data)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 (pydicom raises many types on garbage)
        raise ImageReadError(source, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    pos = fp.tell()
    file_meta = getattr(ds, "file_meta", None)
    tsuid = str(file_meta.TransferSyntaxUID) if file_meta is not None and "TransferSyntaxUID" in file_meta else ""
    if not tsuid:
        return EncapsulatedFrame("cpu", None, None, "no transfer syntax", ds)
    info = pixel_info(ds, tsuid)
    reason = _cpu_reason(ds, info)
    if reason is not None:
        return EncapsulatedFrame("cpu", info, None, reason, ds)
    syntax = pydicom.uid.UID(tsuid)
    try:
        start, length = _element_value(data, pos, not syntax.is_implicit_VR, syntax.is_little_endian)
        view = memoryview(data)
        kind = _kind(tsuid)
        if kind == "native":
            if length < 0:
                raise ValueError("native Pixel Data of undefined length")
            frame_bytes = info.rows * info.columns * info.bits_allocated // 8
            if length < frame_bytes:
                raise ValueError(f"native Pixel Data holds {length} bytes, a frame needs {frame_bytes}")
            return EncapsulatedFrame("native", info, view[start : start + frame_bytes], None, ds)
        if length >= 0:
            raise ValueError("compressed Pixel Data must have undefined length")
        extended = ds.get("ExtendedOffsetTable")
        frame = first_frame(_items(view, start), info.number_of_frames, bytes(extended) if extended else None)
        return EncapsulatedFrame(kind, info, frame, None, ds)
    except (ValueError, struct.error) as exc:
        return EncapsulatedFrame("cpu", info, None, f"pixel data layout ({exc})", ds)


def stored_array(frame: EncapsulatedFrame) -> np.ndarray:
    """The stored samples of a ``native`` or ``rle`` frame as a 2-D little-endian array (no LUT,
    no masking: ``gpu_decode.finish_pixels`` does those, as for decoded codestreams)."""
    info = frame.info
    if info is None or frame.data is None:
        raise ValueError("no pixel data in this frame")
    shape = (info.rows, info.columns)
    if frame.kind == "native":
        arr = np.frombuffer(frame.data, dtype=info.native_dtype()).reshape(shape)
        return arr.astype(arr.dtype.newbyteorder("<")) if arr.dtype.byteorder == ">" else arr
    if frame.kind == "rle":
        from pydicom.pixels.decoders.rle import _rle_decode_frame

        raw = _rle_decode_frame(bytes(frame.data), info.rows, info.columns, info.samples_per_pixel, info.bits_allocated)
        dtype = np.dtype(f"{'i' if info.signed else 'u'}{info.bits_allocated // 8}")
        # RLE segments are most significant byte first; _rle_decode_frame reassembles them little-endian.
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    raise ValueError(f"{frame.kind} frames are codestreams: decode them")
