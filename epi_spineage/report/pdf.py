"""``report --pdf``: print ``index.html`` to ``report.pdf`` with headless Chromium.

The page's own print stylesheet (``templates/report.css.j2``, ``@media print``) does the layout: every
column kept, wide tables on landscape pages, header rows repeated, captions kept with their tables. This
module only finds a Chromium and runs it; without one the CLI prints one line (exit 2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from epi_spineage.errors import UserError

#: tried in order; EPI_SPINEAGE_CHROMIUM (a path) wins over all of them
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")


def find_chromium() -> str | None:
    """The Chromium executable to print with, or None when none is installed."""
    env = os.environ.get("EPI_SPINEAGE_CHROMIUM")
    if env:
        return env if (os.path.isfile(env) and os.access(env, os.X_OK)) else shutil.which(env)
    for name in CHROMIUM_NAMES:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def chromium_command(exe: str, index: Path, pdf: Path, profile: Path) -> list[str]:
    """The headless print call. ``--no-sandbox`` only as root, where Chromium refuses to start without it
    (the page is our own file, opened offline)."""
    cmd = [
        exe,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        # both spellings: older builds know only the second; unknown switches are ignored
        "--no-pdf-header-footer",
        "--print-to-pdf-no-header",
        f"--print-to-pdf={pdf}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")
    return cmd + [index.resolve().as_uri()]


def write_pdf(index: Path, pdf: Path | None = None, *, timeout_s: float = 180.0) -> Path:
    """Print ``index`` (the report's index.html) to ``pdf`` (default: ``report.pdf`` beside it).

    Raises ``UserError`` when no Chromium is installed or the print fails, with one line saying so.
    """
    index = Path(index)
    pdf = Path(pdf) if pdf is not None else index.with_name("report.pdf")
    exe = find_chromium()
    if exe is None:
        raise UserError(
            "--pdf needs Chromium (e.g. `apt-get install chromium`, or set EPI_SPINEAGE_CHROMIUM to "
            "its path); the HTML report was written, open it and print from the browser instead"
        )
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="epi-spineage-pdf-") as profile:
        try:
            proc = subprocess.run(
                chromium_command(exe, index, pdf.resolve(), Path(profile)),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise UserError(f"--pdf: Chromium did not finish printing within {timeout_s:.0f} s") from exc
    if not pdf.is_file() or pdf.stat().st_size == 0:
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise UserError(
            f"--pdf: Chromium ({exe}) wrote no PDF (exit {proc.returncode})" + (f": {last[-1][:200]}" if last else "")
        )
    return pdf


def remove_stale_pdf(index: Path) -> bool:
    """Remove a ``report.pdf`` beside ``index`` that is older than it (printed from an earlier report, so it
    would show other numbers); True when one was removed."""
    pdf = Path(index).with_name("report.pdf")
    try:
        if pdf.is_file() and pdf.stat().st_mtime < Path(index).stat().st_mtime:
            pdf.unlink()
            return True
    except OSError:
        pass
    return False
