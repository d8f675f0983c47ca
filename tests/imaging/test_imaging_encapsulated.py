"""DICOM encapsulation parsing and the device-side pixel arithmetic, checked on the CPU.

``finish_pixels`` runs on CPU tensors here with the same code the GPU runs: for every file the GPU
path accepts, the pixels and the content hash must equal the CPU reader's exactly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.imaging.conftest import bundled, make_dataset, ramp, to_bytes

pytest.importorskip("pydicom")
torch = pytest.importorskip("torch")

from epi_spineage.imaging.dicom import read_dicom
from epi_spineage.imaging.encapsulated import first_frame, parse_dicom, stored_array
from epi_spineage.imaging.gpu_decode import (
    CpuCodestreamDecoder,
    carrier_to_numpy,
    finish_pixels,
    plan_pixels,
    stored_tensor,
)
from epi_spineage.imaging.image import content_hash


def _cpu(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_dicom(data, "t")[1]


def _device_path(data: bytes) -> tuple[np.ndarray, torch.Tensor]:
    """What the GPU path computes, run on the CPU: (hashed pixels, values for preprocessing)."""
    frame = parse_dicom(data)
    assert frame.kind != "cpu", frame.reason
    if frame.codestream:
        (stored,) = CpuCodestreamDecoder().decode([frame.data], "cpu")
        assert stored is not None
    else:
        stored = stored_tensor(frame, "cpu")
    plan = plan_pixels(frame.info)
    values, carrier = finish_pixels(stored, plan)
    return carrier_to_numpy(carrier, plan), values


def _same(data: bytes) -> None:
    cpu = _cpu(data)
    gpu, values = _device_path(data)
    # (content_hash normalises byte order: a big-endian file's pixels hash as little-endian ones)
    assert gpu.dtype == cpu.dtype.newbyteorder("=") and gpu.shape == cpu.shape
    assert np.array_equal(gpu, cpu)
    assert content_hash(gpu) == content_hash(cpu)
    assert np.array_equal(values.numpy(), cpu.astype(values.numpy().dtype))


@pytest.mark.parametrize("compression", [None, "rle", "jpeg2000"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_the_package_phantoms_give_the_cpu_pixels_and_hash(compression, photometric):
    from epi_spineage.synth.dicom import dicom_bytes, jpeg2000_available

    if compression == "jpeg2000" and not jpeg2000_available():
        pytest.skip("no JPEG 2000 encoder")
    data = dicom_bytes(ramp((50, 34)), compression=compression, photometric=photometric, bits_stored=12)
    frame = parse_dicom(data)
    assert frame.kind == {None: "native", "rle": "rle", "jpeg2000": "jpeg2000"}[compression]
    assert frame.info.bits_stored == 12 and frame.info.photometric == photometric
    assert frame.info.lossless
    _same(data)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
    ],
)
def test_pydicom_test_files_give_the_cpu_pixels_or_go_to_the_cpu(name):
    with open(bundled(name), "rb") as fh:
        data = fh.read()
    frame = parse_dicom(data)
    if name.startswith("SC_rgb"):
        assert frame.kind == "cpu" and "colour" in frame.reason
        return
    _same(data)


@pytest.mark.parametrize(
    "case",
    [
        {"pixels": ramp(top=4095).astype(np.int16) - 2048, "bits_stored": 12},  # signed
        {"pixels": ramp(top=4095), "slope": 2.0, "intercept": -1024.0},  # integer rescale -> int16
        {"pixels": ramp(top=4095), "slope": 0.5, "intercept": 3.25},  # fractional rescale -> float32
        {"pixels": ramp(top=4095), "slope": 0.5, "intercept": 3.25, "photometric": "MONOCHROME1"},
        {"pixels": ramp(top=4095), "slope": 1.0, "intercept": 0.0, "photometric": "MONOCHROME1"},
        {"pixels": ramp(top=255, dtype=np.uint8), "bits_stored": 8, "photometric": "MONOCHROME1"},
        {
            "pixels": ramp(top=4095).astype(np.int16) - 2048,
            "bits_stored": 12,
            "slope": 3,
            "intercept": 5,
            "photometric": "MONOCHROME1",
        },
    ],
)
def test_rescale_inversion_and_signed_data_match_the_cpu_reader(case):
    kw = dict(case)
    pixels = kw.pop("pixels")
    _same(to_bytes(make_dataset(pixels, **kw)))


def test_bits_above_bits_stored_are_masked_as_the_cpu_reader_does():
    px = ramp(top=4095)
    garbage = px | np.uint16(0xA000)  # junk in the 4 unused high bits
    data = to_bytes(make_dataset(garbage, bits_stored=12))
    # The masking itself (not only pydicom's): feed the unmasked samples to finish_pixels.
    frame = parse_dicom(data)
    assert int(stored_array(frame).max()) > 4095
    _same(data)
    gpu, _ = _device_path(data)
    assert np.array_equal(gpu, px)


def test_first_frame_follows_the_offset_table_and_fragments():
    from pydicom.encaps import encapsulate

    # Odd lengths: fragments are padded to even length, and the padding must not end the frame early.
    frames = [b"\xff\x4f" + bytes([i + 1]) * (37 + i) + b"\xff\xd9" for i in range(3)]
    # Two fragments per frame, with a Basic Offset Table.
    encoded = encapsulate(frames, fragments_per_frame=2, has_bot=True)
    from epi_spineage.imaging.encapsulated import _items

    items = _items(memoryview(encoded), 0)
    assert len(items) == 1 + 6
    assert bytes(first_frame(items, 3)).rstrip(b"\x00") == frames[0]
    # Without the offset table: split at the end-of-codestream marker.
    encoded = encapsulate(frames, fragments_per_frame=2, has_bot=False)
    assert bytes(first_frame(_items(memoryview(encoded), 0), 3)).rstrip(b"\x00") == frames[0]
    # One fragment per frame and no table: the first fragment.
    encoded = encapsulate(frames, fragments_per_frame=1, has_bot=False)
    assert bytes(first_frame(_items(memoryview(encoded), 0), 3)).rstrip(b"\x00") == frames[0]


def test_what_the_gpu_path_cannot_reproduce_goes_to_the_cpu_reader():
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    lut = make_dataset(ramp())
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = np.arange(4096, dtype="<u2").tobytes()
    item.ModalityLUTType = "US"
    lut.ModalityLUTSequence = [item]
    assert parse_dicom(to_bytes(lut)).kind == "cpu"
    deflated = make_dataset(ramp())
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    frame = parse_dicom(to_bytes(deflated))
    assert frame.kind == "cpu" and "transfer syntax" in frame.reason
    truncated = to_bytes(make_dataset(ramp()))[:-100]
    frame = parse_dicom(truncated)
    assert frame.kind == "cpu" and "layout" in frame.reason


def test_multi_frame_uses_the_first_frame_like_the_cpu_reader():
    stack = np.stack([ramp(seed=s) for s in range(3)])
    data = to_bytes(make_dataset(stack, frames=3))
    frame = parse_dicom(data)
    assert frame.info.number_of_frames == 3
    _same(data)
