"""Speed of the synthetic data generators (prints its figures; run: .venv/bin/python benchmarks/synth_speed.py).

- simulate_study at the default sizes (10,341 + 3,508), after the one-off calibration;
- 1,000 mixed phantoms at the default scale (0.25) written as DICOM into a zip;
- render only (no encoding), radiograph and VFA, images per second.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from epi_spineage.synth import simulate_study
from epi_spineage.synth.archive import write_phantom_archive
from epi_spineage.synth.phantom import render_phantom


def main() -> None:
    t = time.perf_counter()
    simulate_study(seed=1)
    first = time.perf_counter() - t
    t = time.perf_counter()
    simulate_study(seed=2)
    again = time.perf_counter() - t
    print(f"simulate_study default sizes: first call {first:.2f} s (includes calibration), then {again:.2f} s")
    for style in ("radiograph", "vfa"):
        t = time.perf_counter()
        for i in range(200):
            render_phantom(40 + i / 4, style=style, seed=i, scale=0.25)
        dt = time.perf_counter() - t
        print(f"render_phantom {style} scale 0.25: {200 / dt:.0f} images/s")
    t = time.perf_counter()
    render_phantom(60, style="radiograph", seed=0, scale=1.0)
    print(f"render_phantom radiograph full size (2400x1600): {time.perf_counter() - t:.2f} s")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_phantom_archive(Path(d) / "ph.zip", n=1000, seed=0, progress=False)
        dt = time.perf_counter() - t
        size = (Path(d) / "ph.zip").stat().st_size / 1e6
    print(f"write_phantom_archive 1,000 mixed DICOM, scale 0.25, zip: {dt:.1f} s ({size:.0f} MB)")


if __name__ == "__main__":
    main()
