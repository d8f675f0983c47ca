"""Decode DICOM pixel data on the GPU (nvImageCodec) into the CPU reader's exact pixels.

The optional extra ``gpu`` (``pip install epi-spineage[gpu]``: ``nvidia-nvimgcodec-cu13`` and
``nvidia-nvjpeg2k-cu13``) is imported lazily and never required; torch is imported on first use,
so this module can be named (``cpu_decoder_name``, ``gpu_extra_available``) from torch-free code.

What the CPU reader (``imaging.dicom.read_dicom``) does to the decoded samples, ``finish_pixels``
does on the device with the same arithmetic: wrap to the stored sample type, mask the bits above
BitsStored (sign-extending signed data), apply RescaleSlope/Intercept (float64, rounded half to
even into the smallest integer type when both are integers, float32 otherwise), and invert
MONOCHROME1 within the range the stored bits can take. For lossless data the result is the CPU
reader's array bit for bit, dtype included, so the content hash (``imaging.image.content_hash``)
is the same whichever path decoded the image. Lossy codestreams may differ by a grey level between
decoder libraries: the score's provenance names the decoder (``scores.decoder``). See
docs/guides/score.md#gpu.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from epi_spineage.imaging.encapsulated import EncapsulatedFrame, PixelInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: ``scores.decoder`` values.
GPU_DECODER = "gpu:nvimgcodec"
CPU_DICOM_DECODER = "cpu:pydicom"
CPU_RASTER_DECODER = "cpu:opencv"
#: Raw (uncompressed or RLE) pixels sent to the device: no codec involved, but finished there.
GPU_RAW = "gpu:raw"


def cpu_decoder_name(fmt: str | None) -> str:
    """The ``scores.decoder`` value of the CPU reader for an image of format ``fmt``."""
    return CPU_DICOM_DECODER if (fmt or "dicom") == "dicom" else CPU_RASTER_DECODER


def gpu_extra_available() -> bool:
    """Whether the optional ``gpu`` extra (nvImageCodec) is installed; imports nothing."""
    try:
        return importlib.util.find_spec("nvidia.nvimgcodec") is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# The CPU reader's pixel arithmetic, planned on the host from the header.


def _smallest_int_dtype(lo: float, hi: float) -> np.dtype | None:
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return None


@dataclass(frozen=True)
class PixelPlan:
    """How stored samples become the hashed pixels (mirrors ``imaging.dicom``)."""

    sample_dtype: np.dtype  # what pydicom's pixel_array holds (BitsAllocated, PixelRepresentation)
    mask_bits: int | None  # BitsStored when below the sample width, else None
    signed: bool
    rescale: tuple[float, float] | None  # applied only when not (1, 0)
    out_dtype: np.dtype  # dtype of the hashed pixels
    value_range: tuple[float, float]
    invert: bool  # MONOCHROME1


def plan_pixels(info: PixelInfo) -> PixelPlan:
    """The ``PixelPlan`` for a header (the same decisions as ``imaging.dicom.apply_modality``)."""
    sample = np.dtype(f"{'i' if info.signed else 'u'}{max(1, info.bits_allocated // 8)}")
    bits = info.bits_stored or info.bits_allocated
    mask = bits if bits < sample.itemsize * 8 else None
    lo, hi = info.stored_range()
    rescale, out, value_range = None, sample, (float(lo), float(hi))
    if info.rescale is not None and info.rescale != (1.0, 0.0):
        slope, intercept = info.rescale
        ends = sorted((lo * slope + intercept, hi * slope + intercept))
        rescale, value_range, out = (slope, intercept), (ends[0], ends[1]), np.dtype(np.float32)
        if float(slope).is_integer() and float(intercept).is_integer():
            out = _smallest_int_dtype(*ends) or out
    return PixelPlan(sample, mask, info.signed, rescale, out, value_range, info.photometric == "MONOCHROME1")


#: torch dtype that carries each hashed dtype's bytes (uint16/uint32 travel as int16/int32 bit patterns).
_CARRIER = {"u1": "uint8", "i1": "int8", "u2": "int16", "i2": "int16", "u4": "int32", "i4": "int32", "f4": "float32"}


def _wrap(x: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """int64 values reduced modulo 2**bits into the unsigned or two's-complement range (a C cast)."""
    if signed:
        return (x << (64 - bits)) >> (64 - bits)
    return x & ((1 << bits) - 1)


def _as_int64(t: torch.Tensor) -> torch.Tensor:
    import torch

    if t.dtype == torch.uint16:  # partial support in torch: go through the int16 bits
        return t.view(torch.int16).to(torch.int64) & 0xFFFF
    if t.dtype == torch.uint32:
        return t.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return t.to(torch.int64)


def finish_pixels(stored: torch.Tensor, plan: PixelPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded samples (2-D, any integer dtype, any device) to ``(values, carrier)``.

    ``values``: the pixels for preprocessing (int64 or float32, true values); ``carrier``: the same
    pixels in a torch dtype with ``plan.out_dtype``'s bytes, to copy back and view as that dtype
    for the content hash (``carrier_to_numpy``).
    """
    import torch

    if stored.ndim == 3 and stored.shape[-1] == 1:
        stored = stored[..., 0]
    if stored.ndim == 3 and stored.shape[0] == 1:
        stored = stored[0]
    if stored.ndim != 2:
        raise ValueError(f"expected one grey plane, got shape {tuple(stored.shape)}")
    x = _wrap(_as_int64(stored), plan.sample_dtype.itemsize * 8, plan.signed)
    if plan.mask_bits is not None:
        x = _wrap(x, plan.mask_bits, plan.signed)
    lo, hi = plan.value_range
    if plan.rescale is not None:
        slope, intercept = plan.rescale
        y = x.to(torch.float64) * slope  # two roundings, as NumPy: arr.astype(float64) * slope; += intercept
        y = y + intercept
        if plan.out_dtype.kind in "iu":
            x = torch.round(y).to(torch.int64)  # round half to even, as np.rint
        else:
            values = y.to(torch.float32)
            if plan.invert:
                values = float(np.float32(lo + hi)) - values
            return values, values
    if plan.invert:
        x = _wrap((int(lo) + int(hi)) - x, plan.out_dtype.itemsize * 8, plan.out_dtype.kind == "i")
    carrier_bits = plan.out_dtype.itemsize * 8
    # The carrier holds the bytes of out_dtype: uint8 as itself, wider unsigned types as the signed
    # type of their width (torch's casts of out-of-range integers are not portable; this wrap is).
    unsigned_byte = plan.out_dtype == np.uint8
    carrier = _wrap(x, carrier_bits, signed=not unsigned_byte).to(getattr(torch, _CARRIER[plan.out_dtype.str[1:]]))
    return x, carrier


def carrier_to_numpy(carrier_host: torch.Tensor, plan: PixelPlan) -> np.ndarray:
    """The hashed pixels as NumPy, viewed in ``plan.out_dtype`` (no copy)."""
    return carrier_host.numpy().view(plan.out_dtype)


# --------------------------------------------------------------------------------------------
# Codestream decoders: nvImageCodec on the device, and a CPU stand-in with the same interface.


class CodestreamDecoder:
    """Decodes a batch of codestreams into 2-D tensors on ``device``; ``None`` for each one it refuses."""

    name = "none"

    def decode(self, streams: Sequence[bytes | memoryview], device: Any) -> list[torch.Tensor | None]:
        raise NotImplementedError


class NvImageCodecDecoder(CodestreamDecoder):
    """nvImageCodec's batched decoder (JPEG 2000, HTJ2K, JPEG), writing into device memory."""

    name = GPU_DECODER

    def __init__(self, device_id: int = 0, cuda_stream: Any = None):
        try:
            from nvidia import nvimgcodec
        except ImportError as exc:
            raise ImportError("nvImageCodec is not installed: pip install 'epi-spineage[gpu]'") from exc
        self._nv = nvimgcodec
        self._decoder = nvimgcodec.Decoder(device_id=device_id)
        # Samples as stored: no colour conversion, no scaling to 8 bits, no EXIF rotation.
        kwargs: dict[str, Any] = {
            "apply_exif_orientation": False,
            "allow_any_depth": True,
            "color_spec": nvimgcodec.ColorSpec.UNCHANGED,
        }
        unchanged = getattr(getattr(nvimgcodec, "SampleFormat", None), "I_UNCHANGED", None)
        if unchanged is not None:
            kwargs["sample_format"] = unchanged
        self._params = nvimgcodec.DecodeParams(**kwargs)
        self._stream = cuda_stream

    def decode(self, streams, device):
        import torch

        if not streams:
            return []
        nv = self._nv
        sources = [nv.CodeStream(np.frombuffer(s, dtype=np.uint8)) for s in streams]
        stream = self._stream if self._stream is not None else torch.cuda.current_stream(device)
        try:
            images = self._decoder.decode(sources, params=self._params, cuda_stream=stream.cuda_stream)
        except Exception as exc:  # noqa: BLE001 (a whole-batch refusal: the CPU reader takes every image)
            log.debug("nvImageCodec refused a batch of %d: %s", len(sources), exc)
            return [None] * len(sources)
        out: list[torch.Tensor | None] = []
        for img in images:
            if img is None:
                out.append(None)
                continue
            try:  # DLPack keeps the Image's buffer alive for as long as the tensor lives
                t = torch.from_dlpack(img)
            except (TypeError, RuntimeError, AttributeError):
                t = torch.as_tensor(img, device=device).clone()
            out.append(t)
        return out


class CpuCodestreamDecoder(CodestreamDecoder):
    """The same interface on the CPU (openjpeg / libjpeg): tests run the GPU scoring loop here with
    it, and it states what "refused" means (any decoder error gives ``None``)."""

    name = "stand-in:openjpeg"  # never a production decoder: tests only

    def __init__(self, refuse: Sequence[int] = ()):
        self.refuse = set(refuse)  # byte lengths to refuse, for the fallback tests
        self.calls = 0

    def decode(self, streams, device):
        import torch

        self.calls += 1
        out: list[torch.Tensor | None] = []
        for s in streams:
            if len(s) in self.refuse:
                out.append(None)
                continue
            try:
                head = bytes(s[:4])
                if head[:2] == b"\xff\xd8":
                    import libjpeg

                    arr = libjpeg.decode(bytes(s))
                else:
                    import openjpeg

                    arr = openjpeg.decode(bytes(s))
                arr = np.ascontiguousarray(arr)
                if arr.dtype == np.uint16:
                    out.append(torch.from_numpy(arr.view(np.int16)).to(device).to(torch.int32) & 0xFFFF)
                else:
                    out.append(torch.from_numpy(arr).to(device))
            except Exception:  # noqa: BLE001 (any decoder error is a refusal, as nvImageCodec's None)
                out.append(None)
        return out


def default_decoder(device: Any) -> CodestreamDecoder:
    """nvImageCodec on a CUDA device (ImportError without the extra); the CPU stand-in elsewhere."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return NvImageCodecDecoder(device_id=dev.index or 0)
    return CpuCodestreamDecoder()


def stored_tensor(frame: EncapsulatedFrame, device: Any, pin: bool = False) -> torch.Tensor:
    """A ``native``/``rle`` frame's stored samples on ``device`` (through pinned memory on CUDA)."""
    import torch

    from epi_spineage.imaging.encapsulated import stored_array

    arr = np.ascontiguousarray(stored_array(frame))
    view = arr.view(np.int16) if arr.dtype == np.uint16 else arr.view(np.int32) if arr.dtype == np.uint32 else arr
    with warnings.catch_warnings():
        # A view of the file's bytes is read-only; it is only ever read (copied to the device).
        warnings.simplefilter("ignore", UserWarning)
        host = torch.from_numpy(view)
    if pin and torch.device(device).type == "cuda":
        host = host.pin_memory()
    t = host.to(device, non_blocking=pin)
    if arr.dtype == np.uint16:
        return t.to(torch.int32) & 0xFFFF
    if arr.dtype == np.uint32:
        return t.to(torch.int64) & 0xFFFFFFFF
    return t
