"""On a CUDA device with the ``gpu`` extra: nvImageCodec's pixels, hashes and scores against the CPU reader.

Marked ``gpu`` (skipped without CUDA); run by ``benchmarks/gpu_device_check.sh`` on the device machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from .test_score_gpu_path import _j2k, _results, archive, cpu_run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _extra():
    pytest.importorskip("nvidia.nvimgcodec", reason="the gpu extra (nvImageCodec) is not installed")


def test_nvimagecodec_gives_the_cpu_readers_pixels_for_lossless_jpeg2000():
    import torch

    from epi_spineage.imaging.dicom import read_dicom
    from epi_spineage.imaging.encapsulated import parse_dicom
    from epi_spineage.imaging.gpu_decode import NvImageCodecDecoder, carrier_to_numpy, finish_pixels, plan_pixels
    from epi_spineage.imaging.image import content_hash
    from epi_spineage.synth.dicom import dicom_bytes
    from epi_spineage.synth.phantom import render_phantom

    files = []
    for seed, photometric in [(0, "MONOCHROME2"), (1, "MONOCHROME1")]:
        px = np.minimum(render_phantom(60.0, style="radiograph", seed=seed, scale=0.3, bits_stored=12), 4095)
        files.append(dicom_bytes(px.astype(np.uint16), compression="jpeg2000", photometric=photometric, bits_stored=12))
    frames = [parse_dicom(b) for b in files]
    decoded = NvImageCodecDecoder().decode([f.data for f in frames], "cuda")
    for data, frame, stored in zip(files, frames, decoded):
        assert stored is not None, "nvImageCodec refused a lossless JPEG 2000 codestream"
        plan = plan_pixels(frame.info)
        _, carrier = finish_pixels(stored, plan)
        gpu = carrier_to_numpy(carrier.cpu(), plan)
        cpu = read_dicom(data, "x")[1]
        assert gpu.dtype == cpu.dtype and np.array_equal(gpu, cpu)
        assert content_hash(gpu) == content_hash(cpu)
    torch.cuda.synchronize()


@pytest.mark.parametrize("compile_model", [False, True])
def test_gpu_scores_agree_with_the_cpu_path_within_a_hundredth_of_a_year(
    archive,
    cpu_run,
    tiny_model,  # noqa: F811
    tmp_path,
    key_env,
    compile_model,
):
    from epi_spineage.score.pipeline import score_archives

    db = tmp_path / "gpu.duckdb"
    summary = score_archives(
        [archive],
        tiny_model,
        db,
        batch_size=4,
        workers=2,
        device="cuda",
        decode="gpu",
        compile_model=compile_model,
        progress=False,
    )
    images_c, scores_c, errors_c, _ = cpu_run[1]
    images_g, scores_g, errors_g, run = _results(db)
    assert images_g == images_c and errors_g == errors_c
    worst = max(abs(scores_g[k][1] - v[1]) for k, v in scores_c.items())
    print(f"largest |GPU - CPU| spine age: {worst:.5f} years over {len(scores_c)} images")
    assert worst < 0.01
    assert {scores_g[k][0] for k in scores_c} == {v[0] for v in scores_c.values()}
    assert scores_g["j2k_a.dcm"][3] == "gpu:nvimgcodec"
    assert run[0] == "gpu" and summary.n_gpu_decoded >= 8
