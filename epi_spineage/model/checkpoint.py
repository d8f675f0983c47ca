"""Checkpoint = ``model.safetensors`` + ``meta.json``; ``load_checkpoint`` -> ``LoadedModel``.

``meta.json`` carries everything scoring needs besides the weights: backbone, age range, the
preprocessing config and its hash, image size, manifest hash, metrics, package version, temperature,
bias-correction parameters, model id and the SHA-256 of the weights file. Scoring reads the
preprocessing from here, never from a second copy of the numbers, and loading refuses a
preprocessing mismatch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from epi_spineage import __version__
from epi_spineage.errors import UserError
from epi_spineage.imaging.preprocess import make_preprocess_config, preprocess, preprocess_hash
from epi_spineage.model.bias import BiasCorrection
from epi_spineage.model.network import SpineAgeNet, build_model, logits_to_age

WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
FORMAT = "epi_spineage.model/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` then rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(obj: Any) -> Any:
    """NaN/inf become null so that meta.json is strict JSON (DuckDB and browsers reject NaN)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _unwrap(model: torch.nn.Module) -> SpineAgeNet:
    # DistributedDataParallel wraps the network
    return cast(SpineAgeNet, getattr(model, "module", model))


def save_checkpoint(model: torch.nn.Module, out_dir: str | Path, meta: dict | None = None) -> dict:
    """Write ``out_dir/model.safetensors`` and ``out_dir/meta.json`` (atomically); return the meta.

    ``meta`` may hold ``preprocess`` (a ``PreprocessConfig`` or its dict; default config when absent),
    ``temperature``, ``bias_correction`` (a ``BiasCorrection`` or its dict), ``metrics``,
    ``manifest_hash``, ``model_id`` and anything else JSON-serialisable. The network's own fields
    (backbone, age range, head) are filled in from ``model``.
    """
    from safetensors.torch import save as st_save

    net = _unwrap(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    cfg = make_preprocess_config(meta.get("preprocess"))
    bias = meta.get("bias_correction")
    if isinstance(bias, BiasCorrection):
        bias = bias.to_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    blob = st_save(state, metadata={"format": FORMAT, "backbone": net.backbone_name})
    atomic_write_bytes(out / WEIGHTS_FILE, blob)
    weights_hash = hashlib.sha256(blob).hexdigest()
    meta.update(
        {
            "format": FORMAT,
            "backbone": net.backbone_name,
            "min_age": net.min_age,
            "max_age": net.max_age,
            "in_chans": net.in_chans,
            "head_hidden": net.head_hidden,
            "preprocess": cfg.to_dict(),
            "preprocess_hash": cfg.config_hash(),
            "image_size": [int(cfg.height), int(cfg.width)],
            "temperature": float(meta.get("temperature", 1.0)),
            "bias_correction": bias,
            "weights_sha256": weights_hash,
            "package_version": __version__,
            "torch_version": torch.__version__,
        }
    )
    meta.setdefault("created_utc", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    meta.setdefault("model_id", f"{net.backbone_name}-{weights_hash[:12]}")
    atomic_write_json(out / META_FILE, meta)
    return meta


@dataclass
class LoadedModel:
    """A checkpoint ready to score: network in eval mode plus its metadata."""

    network: SpineAgeNet
    meta: dict
    preprocess_config: Any
    weights_hash: str
    bias_correction: BiasCorrection | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def model_id(self) -> str:
        return str(self.meta["model_id"])

    @property
    def temperature(self) -> float:
        return float(self.meta.get("temperature", 1.0))

    @property
    def min_age(self) -> int:
        return int(self.meta["min_age"])

    @property
    def max_age(self) -> int:
        return int(self.meta["max_age"])

    @property
    def bias_correction_by_modality(self) -> dict[str, BiasCorrection]:
        """Per-modality corrections (``--bias-by-modality``); empty when only the pooled one exists."""
        return {m: BiasCorrection.from_dict(d) for m, d in (self.meta.get("bias_correction_by_modality") or {}).items()}

    @property
    def preprocess_hash(self) -> str:
        return str(self.meta["preprocess_hash"])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).float()
        cuda = self.device.type == "cuda"
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            return self.network(x).float()

    def predict(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Spine age (expected age, years) and its SD for a preprocessed batch (B, 1, H, W)."""
        if batch.ndim != 4 or batch.shape[1] != self.network.in_chans:
            raise UserError(f"expected a batch (B, {self.network.in_chans}, H, W); got {tuple(batch.shape)}")
        mean, sd = logits_to_age(self.logits(batch), self.network.ages, self.temperature)
        return mean.double().cpu().numpy(), sd.double().cpu().numpy()

    def predict_pixels(self, images: list, modalities: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess raw pixel arrays with the checkpoint's own config, then ``predict``."""
        arrays = [
            preprocess(px, modality=m or "radiograph", config=self.preprocess_config)
            for px, m in zip(images, modalities)
        ]
        return self.predict(torch.from_numpy(np.stack(arrays)))

    def to(self, device: str | torch.device) -> LoadedModel:
        self.device = torch.device(device)
        self.network.to(self.device)
        if self.device.type == "cuda":
            self.network.to(memory_format=torch.channels_last)
        return self


def _meta_path(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        return p / META_FILE, p / WEIGHTS_FILE
    if p.name == META_FILE or p.suffix == ".safetensors":
        return p.parent / META_FILE, p.parent / WEIGHTS_FILE
    raise UserError(f"not a model directory (expected {META_FILE} and {WEIGHTS_FILE}): {p}")


def read_meta(path: str | Path) -> dict:
    meta_path, _ = _meta_path(path)
    if not meta_path.is_file():
        raise UserError(f"no {META_FILE} in {meta_path.parent}: not a model directory")
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})") from None


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", expect_preprocess: Any = None, verify_hash: bool = True
) -> LoadedModel:
    """Load a checkpoint directory (or its ``meta.json`` / ``model.safetensors``).

    ``expect_preprocess`` (a ``PreprocessConfig``, its dict, or its hash) makes loading refuse a model
    trained with other preprocessing, with a message naming the differing fields.
    """
    from safetensors.torch import load_file

    meta_path, weights_path = _meta_path(path)
    meta = read_meta(meta_path)
    if not weights_path.is_file():
        raise UserError(f"no {WEIGHTS_FILE} in {weights_path.parent}")
    for key in ("backbone", "min_age", "max_age", "preprocess", "preprocess_hash"):
        if key not in meta:
            raise UserError(f"{meta_path}: missing {key!r}; not an epi_spineage checkpoint")
    cfg = make_preprocess_config(meta["preprocess"])
    if cfg.config_hash() != meta["preprocess_hash"]:
        raise UserError(f"{meta_path}: preprocessing config does not match its stored hash (edited by hand?)")
    if expect_preprocess is not None:
        want = preprocess_hash(expect_preprocess)
        if want != meta["preprocess_hash"]:
            detail = ""
            if not isinstance(expect_preprocess, str):
                other = make_preprocess_config(expect_preprocess).to_dict()
                diffs = [
                    f"{k}: model {meta['preprocess'].get(k)!r} vs expected {other.get(k)!r}"
                    for k in sorted(set(other) | set(meta["preprocess"]))
                    if other.get(k) != meta["preprocess"].get(k)
                ]
                detail = " (" + "; ".join(diffs) + ")" if diffs else ""
            raise UserError(
                f"model {meta.get('model_id', '?')} was trained with other preprocessing{detail}: "
                f"hash {meta['preprocess_hash'][:12]} vs expected {want[:12]}; score with the model's own config"
            )
    weights_hash = sha256_file(weights_path)
    if verify_hash and meta.get("weights_sha256") and meta["weights_sha256"] != weights_hash:
        raise UserError(
            f"{weights_path}: weights do not match meta.json (sha256 differs); the checkpoint is corrupt or mixed"
        )
    net = build_model(
        meta["backbone"],
        int(meta["min_age"]),
        int(meta["max_age"]),
        int(meta.get("in_chans", 1)),
        head_hidden=int(meta.get("head_hidden", 100)),
    )
    state = load_file(str(weights_path), device="cpu")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{weights_path}: weights do not fit backbone {meta['backbone']!r}: {str(exc)[:300]}") from None
    net.eval()
    bias = meta.get("bias_correction")
    loaded = LoadedModel(
        network=net,
        meta=meta,
        preprocess_config=cfg,
        weights_hash=weights_hash,
        bias_correction=BiasCorrection.from_dict(bias) if bias else None,
    )
    return loaded.to(map_location)
