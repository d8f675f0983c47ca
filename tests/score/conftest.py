"""Fixtures for the scoring tests: a tiny untrained checkpoint and small phantom DICOM archives."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_KEY = "test-key-0123456789abcdef"


@dataclass(frozen=True)
class Phantom:
    member: str
    patient_name: str
    patient_id: str
    sop_instance_uid: str
    data: bytes


def phantom_dicoms(
    n: int, *, seed: int = 0, view_position: str = "LL", body_part: str = "LSPINE", start: int = 0
) -> list[Phantom]:
    """``n`` small phantom DICOMs (about 190 x 130 px) with fake names and hospital-style IDs."""
    from epi_spineage.synth.dicom import dicom_bytes, make_uid
    from epi_spineage.synth.phantom import render_phantom

    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        age = float(rng.uniform(45, 90))
        modality = "vfa" if i % 4 == 3 else "radiograph"
        scale = 0.2 if modality == "vfa" else 0.08
        pixels = render_phantom(age, style=modality, seed=seed * 1000 + i, scale=scale, bits_stored=12)
        pixels = np.minimum(pixels, 4095).astype(np.uint16)
        name = f"PHANTOMNAME{seed}X{i:03d}^GIVEN{i:03d}"
        pid = f"HOSP{seed:02d}{i:06d}"
        uid = make_uid(rng)
        data = dicom_bytes(
            pixels,
            modality=modality,
            patient_name=name,
            patient_id=pid,
            study_date=f"2024{1 + i % 12:02d}15",
            manufacturer=("ACME", "GLOBEX")[i % 2],
            view_position=view_position if modality == "radiograph" else "",
            body_part=body_part,
            bits_stored=12,
            sop_instance_uid=uid,
            rng=rng,
        )
        out.append(Phantom(f"img{i:04d}.dcm", name, pid, uid, data))
    return out


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_checkpoint(out: Path, *, alpha: float = -0.3, beta: float = 18.0) -> Path:
    """A tiny untrained checkpoint (timm test_efficientnet at 64 x 32) with a Beheshti correction."""
    import torch

    from epi_spineage.imaging.preprocess import PreprocessConfig
    from epi_spineage.model.checkpoint import save_checkpoint
    from epi_spineage.model.network import build_model

    torch.manual_seed(0)
    net = build_model("test_efficientnet", min_age=40, max_age=100, in_chans=1, head_hidden=16)
    save_checkpoint(
        net,
        out,
        {
            "preprocess": PreprocessConfig(height=64, width=32),
            "bias_correction": {"method": "beheshti", "alpha": alpha, "beta": beta, "n": 100, "source": "test"},
            "temperature": 1.0,
        },
    )
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return make_checkpoint(tmp_path_factory.mktemp("model") / "ckpt")


@pytest.fixture
def key_env(monkeypatch) -> dict:
    """The pseudonym key in this process's environment; returns an env for subprocesses."""
    monkeypatch.setenv("EPI_SPINEAGE_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.delenv("EPI_SPINEAGE_PSEUDONYM_KEY_FILE", raising=False)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(args: list[str], env: dict, *, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw
    )


def stored(reference: str | Path) -> str:
    """The stored (hashed) form of a path or ``ARCHIVE::MEMBER`` reference under the test key."""
    from epi_spineage.db.paths import hash_path

    return hash_path(str(reference), TEST_KEY.encode())


def member_names(archive: Path, members) -> dict[str, str]:
    """stored path -> member name, for reading hashed ``source_path`` columns back in tests."""
    return {stored(f"{Path(archive).resolve()}::{m}"): m.rsplit("/", 1)[-1] for m in members}


def live_processes() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process, from /proc (Linux)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                if fields[0] not in (b"Z", b"X"):
                    out[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                pass
    return out


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren...)."""
    tree, found, todo = live_processes(), set(), [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in tree.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found
