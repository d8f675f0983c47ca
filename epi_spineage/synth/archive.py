"""Many phantoms at once: DICOM or PNG into a folder, zip or tar, with the image manifest.

``write_phantom_archive`` is also importable from ``epi_spineage.synth.phantom`` (the contract's name).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from epi_spineage.errors import UserError
from epi_spineage.synth.phantom import DEFAULT_SCALE, FRACTURE_KINDS, _levels, render_phantom_with_truth

log = logging.getLogger(__name__)

# Each name carries "SYNTHETIC" (provenance.SYNTHETIC_MANUFACTURER_MARK): reports of scored phantoms say so.
_MANUFACTURERS = ("SYNTHETIC PHANTOM CO", "PHANTOMRAD (SYNTHETIC)", "ACME IMAGING (SYNTHETIC)")
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _archive_kind(out: str) -> str:
    low = out.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if low.endswith(".tar"):
        return "tar"
    if Path(out).suffix and not Path(out).is_dir():
        raise UserError(f"--out must be a folder or end in .zip, .tar, .tar.gz or .tgz: {out}")
    return "folder"


class _Sink:
    """Writes members into a folder, zip or tar (deterministic bytes: fixed dates, no owner names)."""

    def __init__(self, out: str, kind: str):
        self.out, self.kind = out, kind
        if kind == "folder":
            Path(out).mkdir(parents=True, exist_ok=True)
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        if kind == "zip":
            self._zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        elif kind in ("tar", "tar.gz"):
            # the writer keeps its files open across add() calls; close() closes them
            self._raw = open(out, "wb")  # noqa: SIM115
            if kind == "tar.gz":
                import gzip

                self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0, compresslevel=1, filename="")
                self._tf = tarfile.open(fileobj=self._gz, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
            else:
                self._tf = tarfile.open(fileobj=self._raw, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def name(self, member: str) -> str:
        return str(Path(self.out) / member) if self.kind == "folder" else f"{self.out}::{member}"

    def add(self, member: str, data: bytes) -> None:
        if self.kind == "folder":
            p = Path(self.out) / member
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        elif self.kind == "zip":
            zinfo = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            self._zf.writestr(zinfo, data, compresslevel=1)
        else:
            tinfo = tarfile.TarInfo(member)
            tinfo.size, tinfo.mtime, tinfo.mode = len(data), 1577836800, 0o644
            self._tf.addfile(tinfo, io.BytesIO(data))

    def close(self) -> None:
        if self.kind == "zip":
            self._zf.close()
        elif self.kind in ("tar", "tar.gz"):
            self._tf.close()
            if self.kind == "tar.gz":
                self._gz.close()
            self._raw.close()


def _encode_png(pixels: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", pixels)
    if not ok:  # pragma: no cover (cv2 encodes any uint16 2-D array)
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _safe_member(pid: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in pid)


def _check_participants(df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise UserError("participants must be a pandas DataFrame")
    missing = [c for c in ("participant_id", "age_years") if c not in df.columns]
    if missing:
        raise UserError(f"participants table lacks column(s): {', '.join(missing)}")
    if len(df) == 0:
        raise UserError("participants table is empty")
    if not df["participant_id"].is_unique:
        raise UserError("participants table has duplicate participant_id values")
    return df.reset_index(drop=True)


def _from_participants(df, ages, spine_ages, mods, split, modality, rng):
    n = len(df)
    pids = df["participant_id"].astype(str).to_numpy(dtype=object)
    ages = pd.to_numeric(df["age_years"], errors="coerce").to_numpy(float)
    if "spine_age_years" in df.columns:
        sp = pd.to_numeric(df["spine_age_years"], errors="coerce").to_numpy(float)
        spine_ages = np.where(np.isfinite(sp), sp, spine_ages[:n])
    spine_ages = np.where(np.isfinite(spine_ages), spine_ages, ages)
    if not np.isfinite(ages).all():
        raise UserError("participants table has missing or non-numeric age_years")
    if "modality" in df.columns and modality == "mixed":
        m = df["modality"].astype(object).where(df["modality"].isin(["radiograph", "vfa"]), None).to_numpy(object)
        mods = np.where(pd.isna(m), mods, m)
    if "split" in df.columns:  # the table's own split (empty stays empty, e.g. an external cohort)
        sp = df["split"].astype(object).to_numpy(object)
        split = np.where(pd.isna(sp), None, sp)
    given = []
    for row in df.itertuples(index=False):
        g = {}
        r = row._asdict()
        if r.get("sex") in ("F", "M"):
            g["sex"] = r["sex"]
        for k in ("prevalent_vf", "prosthesis", "tscore_lumbar"):
            v = r.get(k)
            if v is not None and not pd.isna(v):
                g[k] = float(v)
        given.append(g)
    return pids, ages, np.clip(spine_ages, 30.0, 105.0), mods, split, given


def _given_manufacturers(participants, offsets, n: int, seed: int) -> np.ndarray | None:
    """Each image's manufacturer when known before rendering: the participants' column, or (with image
    offsets only) a draw from its own stream, so that the images' own random numbers stay as they were."""
    man = None
    if participants is not None and "manufacturer" in participants.columns:
        man = participants["manufacturer"].astype(object).where(participants["manufacturer"].notna(), None)
        man = man.to_numpy(object)
    elif offsets:
        man = np.asarray(_MANUFACTURERS, dtype=object)[np.random.default_rng([seed, 4057]).integers(0, 3, n)]
    if offsets:
        known = {str(m) for m in (man if man is not None else ()) if m is not None}
        unknown = sorted(set(map(str, offsets)) - known - set(_MANUFACTURERS))
        if unknown:
            raise UserError(f"image_offsets_years: no image has manufacturer(s) {', '.join(unknown)}")
    return man


def _manufacturer(rng: np.random.Generator, given, i: int) -> str:
    drawn = _MANUFACTURERS[int(rng.integers(len(_MANUFACTURERS)))]  # drawn either way: later draws stay put
    return drawn if given is None or given[i] is None else str(given[i])


def _conditions_for(g: dict, style: str, rng: np.random.Generator) -> dict:
    """Phantom conditions from a participant's cohort row (fracture, prosthesis, BMD, sex)."""
    c = {}
    if "sex" in g:
        c["sex"] = g["sex"]
    if "prosthesis" in g:
        c["prosthesis"] = bool(g["prosthesis"])
    if "tscore_lumbar" in g:
        c["bmd_tscore"] = g["tscore_lumbar"]
    if "prevalent_vf" in g:
        if g["prevalent_vf"]:
            levels = _levels(style)
            lev = levels[int(rng.integers(len(levels) // 3, len(levels)))]
            c["fractures"] = [
                (lev, FRACTURE_KINDS[int(rng.integers(3))], int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])))
            ]
        else:
            c["fractures"] = []
    return c


def write_phantom_archive(
    out,
    n: int = 200,
    *,
    seed: int = 0,
    scale: float = DEFAULT_SCALE,
    modality: str = "mixed",
    image_format: str = "dicom",
    age_range: tuple[float, float] = (40.0, 90.0),
    spine_age_sd: float = 4.5,
    participants: pd.DataFrame | None = None,
    progress: bool | None = None,
    image_offsets_years: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Write ``n`` phantoms to a folder, ``.zip``, ``.tar`` or ``.tar.gz`` with a manifest; return the manifest.

    One image per synthetic participant (``P000001``...). Chronological ages are uniform on
    ``age_range``; each image is drawn from a spine age = age + N(0, ``spine_age_sd``^2), so the label
    (``age_years``) is a noisy target, as in real data. ``split`` is a participant-level 60/20/20 split.
    DICOM variety (deterministic per seed): about 30% MONOCHROME1, 15% RLE and 15% JPEG 2000 lossless,
    radiographs DX or CR (VFA: BMD, Secondary Capture), fake names and IDs.

    ``participants`` (e.g. ``simulate_study().derivation``) draws one image per row instead, for an
    end-to-end demo: ``participant_id``, ``age_years`` and ``sex`` are kept, ``spine_age_years`` (when
    present) drives the image, ``modality`` and ``split`` are used when present, ``prevalent_vf`` puts a
    fracture in the image, ``prosthesis`` a prosthesis, and ``tscore_lumbar`` sets the bone density;
    ``n`` is then ignored. A ``manufacturer`` column there names each image's DICOM Manufacturer.

    ``image_offsets_years`` (scanner domain shift, docs/methods.md#domain-shift; off by default):
    manufacturer -> years added to the spine age an image of that manufacturer is drawn with, so a model
    reads that scanner's images older (or younger); it comes on top of ``spine_age_years`` (which, from
    ``simulate_study(manufacturers=...)``, already holds the score offsets). Without a ``manufacturer``
    column the manufacturers are then drawn before rendering from their own random stream. The manifest gains
    ``true_manufacturer`` and ``true_image_offset_years``. Without offsets and without the column every
    byte is as before.

    The manifest (columns ``image, participant_id, age_years, modality, split`` and ``true_*``) is
    written as ``manifest.csv`` inside the archive and beside it as ``<out>.manifest.csv`` (for a
    folder: ``<out>/manifest.csv``). ``image`` is ``"<out>::<member>"`` for archives (``out`` as given)
    and the file path for a folder.
    """
    from epi_spineage.progress import Progress
    from epi_spineage.synth import dicom as dcm

    out = os.fspath(out)
    if participants is not None:
        participants = _check_participants(participants)
        n = len(participants)
    n = int(n)
    if n < 1:
        raise UserError(f"n must be at least 1, got {n}")
    if modality not in ("radiograph", "vfa", "mixed"):
        raise UserError(f"modality must be radiograph, vfa or mixed, got {modality!r}")
    if image_format not in ("dicom", "png"):
        raise UserError(f"image_format must be dicom or png, got {image_format!r}")
    if not 0.02 <= float(scale) <= 2.0:
        raise UserError(f"scale must lie in 0.02..2, got {scale}")
    kind = _archive_kind(out)
    top_rng = np.random.default_rng([int(seed), 7919])
    ages = top_rng.uniform(age_range[0], age_range[1], n)
    spine_ages = np.clip(ages + top_rng.normal(0, spine_age_sd, n), 30.0, 105.0)
    if modality == "mixed":
        mods = np.where(top_rng.random(n) < 0.5, "radiograph", "vfa")
    else:
        mods = np.full(n, modality)
    order = top_rng.permutation(n)
    split = np.empty(n, dtype=object)
    n_tr, n_va = int(round(0.6 * n)), int(round(0.2 * n))
    split[order[:n_tr]], split[order[n_tr : n_tr + n_va]], split[order[n_tr + n_va :]] = "train", "val", "test"
    pids = np.array([f"P{i + 1:06d}" for i in range(n)], dtype=object)
    given: list[dict] = [{} for _ in range(n)]
    if participants is not None:
        pids, ages, spine_ages, mods, split, given = _from_participants(
            participants, ages, spine_ages, mods, split, modality, top_rng
        )
    given_man = _given_manufacturers(participants, image_offsets_years, n, int(seed))
    offsets = {str(k): float(v) for k, v in (image_offsets_years or {}).items()}
    ext = "dcm" if image_format == "dicom" else "png"
    rows = []
    sink = _Sink(out, kind)
    t0 = time.perf_counter()
    # progress None: a bar only on a terminal; the summary is the "wrote ..." line below, so leave=False
    bar = Progress("phantoms", total=n, unit="img", show=progress, leave=False)
    try:
        for i in bar.iterate(range(n)):
            rng = np.random.default_rng([int(seed), i])
            pid = str(pids[i])
            mod = str(mods[i])
            shift = offsets.get(str(given_man[i]), 0.0) if given_man is not None else 0.0
            pixels, truth = render_phantom_with_truth(
                float(spine_ages[i]) + shift, style=mod, rng=rng, scale=scale, **_conditions_for(given[i], mod, rng)
            )
            member = f"images/{_safe_member(pid)}_{mod}.{ext}"
            photometric, compression, dmod = "MONOCHROME2", None, ("BMD" if mod == "vfa" else "DX")
            if image_format == "dicom":
                photometric = "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2"
                r = rng.random()
                compression = "rle" if r < 0.15 else "jpeg2000" if r < 0.30 else None
                if compression == "jpeg2000" and (min(pixels.shape) < 64 or not dcm.jpeg2000_available()):
                    compression = "rle"  # openjpeg needs >= 64 px for its default wavelet levels
                if mod == "radiograph" and rng.random() < 0.2:
                    dmod = "CR"
                # PatientID is the participant id, so scored images join the cohort table (both are keyed
                # hashes of it); the fake name and birth date still give privacy tests something to catch.
                name, _ = dcm.fake_identity(rng, truth["sex"])
                patient_id = pid
                year = int(rng.integers(2012, 2024))
                study_date = f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
                data = dcm.dicom_bytes(
                    pixels,
                    modality=mod,
                    photometric=photometric,
                    compression=compression,
                    patient_name=name,
                    patient_id=patient_id,
                    study_date=study_date,
                    manufacturer=_manufacturer(rng, given_man, i),
                    view_position="LL" if rng.random() < 0.8 else "RL",
                    body_part="LSPINE" if mod == "radiograph" else "SPINE",
                    bits_stored=truth["bits_stored"],
                    dicom_modality=dmod,
                    patient_sex=truth["sex"],
                    patient_birth_date=dcm.birth_date_for(ages[i], study_date),
                    pixel_spacing_mm=(0.18 if mod == "radiograph" else 0.5) / float(scale),
                    rng=rng,
                )
            else:
                data = _encode_png(pixels)
            sink.add(member, data)
            rows.append(
                {
                    "image": sink.name(member),
                    "participant_id": pid,
                    "age_years": float(ages[i]),
                    "modality": mod,
                    "split": split[i],
                    "true_spine_age_years": float(spine_ages[i]),
                    "true_sex": truth["sex"],
                    "true_bmd_tscore": truth["bmd_tscore"],
                    "true_bone_density": truth["bone_density"],
                    "true_disc_height": truth["disc_height"],
                    "true_n_osteophytes": truth["n_osteophytes"],
                    "true_aortic_plaques": truth["aortic_plaques"],
                    "true_n_fractures": truth["n_fractures"],
                    "true_fracture_grade_max": truth["fracture_grade_max"],
                    "true_prosthesis": int(truth["prosthesis"]),
                    "true_bits_stored": truth["bits_stored"],
                    "true_photometric": photometric,
                    "true_compression": compression or "none",
                    "true_dicom_modality": dmod if image_format == "dicom" else "",
                    "true_format": image_format,
                }
            )
            if image_offsets_years is not None:
                rows[-1]["true_manufacturer"] = str(given_man[i]) if given_man is not None else ""
                rows[-1]["true_image_offset_years"] = shift
        manifest = pd.DataFrame(rows)
        csv = manifest.to_csv(index=False).encode()
        sink.add("manifest.csv", csv)
    finally:
        bar.close()
        sink.close()
    if kind != "folder":
        Path(out + ".manifest.csv").write_bytes(csv)
    log.info("wrote %d phantoms to %s in %.1f s", n, out, time.perf_counter() - t0)
    return manifest
