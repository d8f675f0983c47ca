"""Regenerate docs/img/report_1400.png and docs/img/report_420.png: the demo report on a wide screen and
on a phone (headless Chromium through Selenium). Rerun it whenever the demo report changes.

Run: .venv/bin/python docs/img/make_report_screenshots.py [--report reports/demo/index.html]
(without --report it builds the seeded demo into a temporary folder first; needs chromium and
chromedriver, `make system-deps`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: (file, viewport width, viewport height, element to scroll to: the section a reader looks at first)
SHOTS = (("report_1400.png", 1400, 1000, "#accelerated"), ("report_420.png", 420, 860, "#cox"))


def build_demo(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "epi_spineage.report", "--out", str(out), "--no-svg"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out / "index.html"


def driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", help="an index.html to photograph (default: build the demo first)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="epi-spineage-shots-")
    try:
        index = Path(args.report) if args.report else build_demo(Path(tmp) / "demo")
        d = driver(str(Path(tmp) / "profile"))
        try:
            for name, width, height, anchor in SHOTS:
                d.set_window_size(width, height)
                inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
                d.set_window_size(2 * width - inner[0], 2 * height - inner[1])  # the viewport, not the window
                d.get(index.resolve().as_uri())
                d.execute_script(f"document.querySelector('{anchor}').scrollIntoView();")
                time.sleep(0.3)
                d.save_screenshot(str(OUT / name))
                print(OUT / name)
        finally:
            d.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
