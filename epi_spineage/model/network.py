"""The spine-age network: a timm backbone (``forward_features``) plus the age head
(docs/methods.md#network).

Head = Linear(features, 100) -> Linear(100, 100) -> Linear(100, C) with no activations, as the
authors' code (C = max_age - min_age + 1, class j is age min_age + j). The prediction is the
expected age under the softmax; its SD is the uncertainty. A temperature T divides the logits before
the softmax (fitted on validation by ``calibration.fit_temperature``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from epi_spineage.errors import UserError

log = logging.getLogger(__name__)


class SpineAgeNet(nn.Module):
    """Backbone features -> global pooling -> linear age head (logits over integer ages)."""

    # a timm model: its attributes (num_features, forward_head, ...) differ by architecture
    backbone: Any
    ages: torch.Tensor  # a registered buffer

    def __init__(
        self,
        backbone: str = "efficientnet_b4",
        min_age: int = 40,
        max_age: int = 100,
        in_chans: int = 1,
        pretrained: bool = False,
        head_hidden: int = 100,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        import timm

        if pretrained:
            raise UserError("pretrained=True would download weights; pass local weights with --init-weights FILE")
        if int(max_age) <= int(min_age):
            raise UserError(f"max_age ({max_age}) must exceed min_age ({min_age})")
        try:
            self.backbone = timm.create_model(
                backbone, pretrained=False, in_chans=in_chans, num_classes=0, drop_rate=drop_rate
            )
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise UserError(f"unknown timm backbone {backbone!r}: {exc}") from None
        self.backbone_name = backbone
        self.min_age = int(min_age)
        self.max_age = int(max_age)
        self.in_chans = int(in_chans)
        self.head_hidden = int(head_hidden)
        # pooled width after any post-pooling head conv (MobileNetV3), else the feature channels
        feat = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.head = nn.Sequential(
            nn.Linear(feat, head_hidden), nn.Linear(head_hidden, head_hidden), nn.Linear(head_hidden, self.num_classes)
        )
        self.register_buffer(
            "ages", torch.arange(self.min_age, self.max_age + 1, dtype=torch.float32), persistent=False
        )

    @property
    def num_classes(self) -> int:
        return self.max_age - self.min_age + 1

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, C, h, w): Grad-CAM's layer."""
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone.forward_head(features, pre_logits=True)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def expected_age(self, logits: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        return logits_to_age(logits, self.ages, temperature)


def logits_to_age(
    logits: torch.Tensor, ages: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected age under the model's softmax, and the SD of the tempered distribution around it.

    Class j holds the completed year a_j, i.e. ages in [a_j, a_j + 1), so the spine age in continuous
    years is m_i + 0.5 (the methods' m_i taken over the classes' midpoints): without the half year, PAD
    against a fractional chronological age would be biased by -0.5 y.

    The temperature calibrates the uncertainty only. Dividing the logits by T > 1 also pulls the
    expectation toward the middle of the age range, so the point estimate is always taken at T = 1;
    the SD is that of the tempered distribution, measured around the same mean.
    """
    z = logits.float()
    p = torch.softmax(z, dim=1)
    a = ages.to(device=p.device, dtype=p.dtype) + 0.5
    mean = (p * a).sum(dim=1)
    if float(temperature) != 1.0:
        p = torch.softmax(z / float(temperature), dim=1)
    var = (p * (a[None, :] - mean[:, None]) ** 2).sum(dim=1)
    return mean, var.clamp_min(0).sqrt()


def build_model(
    backbone: str = "efficientnet_b4",
    min_age: int = 40,
    max_age: int = 100,
    in_chans: int = 1,
    pretrained: bool = False,
    head_hidden: int = 100,
    **kwargs,
) -> SpineAgeNet:
    """A ``SpineAgeNet`` with a timm backbone made by name (never downloads weights)."""
    return SpineAgeNet(backbone, min_age, max_age, in_chans, pretrained, head_hidden, **kwargs)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"init weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))  # a dict, or whatever torch.load unpickles (checked below)
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise UserError(f"cannot read init weights {path}: {exc}") from None
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
                state = state[wrapper]
    if not isinstance(state, dict):
        raise UserError(f"init weights {path} hold no state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_init_weights(model: SpineAgeNet, path: str | Path) -> dict[str, list[str]]:
    """Load local weights (timm safetensors/pth) into the backbone with ``strict=False``.

    Keys may carry ``module.`` or ``backbone.`` prefixes. A 3-channel first convolution is adapted to a
    1-channel one by summing over input channels (what timm does for ``in_chans=1``). Tensors whose
    shapes do not fit (e.g. an ImageNet classifier) are skipped. Returns and logs
    ``{"missing": [...], "unexpected": [...], "skipped": [...]}``.
    """
    state = _read_state_dict(Path(path))
    own = model.backbone.state_dict()
    clean: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        k = key.removeprefix("module.").removeprefix("backbone.")
        if (
            k in own
            and value.ndim == 4
            and own[k].ndim == 4
            and value.shape[1] != own[k].shape[1]
            and own[k].shape[1] == 1
            and value.shape[0] == own[k].shape[0]
        ):
            value = value.sum(dim=1, keepdim=True)
        if k in own and own[k].shape != value.shape:
            skipped.append(k)
            continue
        clean[k] = value
    result = model.backbone.load_state_dict(clean, strict=False)
    report = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys), "skipped": skipped}
    log.info(
        "init weights %s: %d tensors loaded, %d missing, %d unexpected, %d skipped (shape)",
        Path(path).name,
        len(clean) - len(report["unexpected"]),
        len(report["missing"]),
        len(report["unexpected"]),
        len(skipped),
    )
    if report["missing"]:
        log.info("missing keys: %s", ", ".join(report["missing"][:20]))
    if report["unexpected"]:
        log.info("unexpected keys: %s", ", ".join(report["unexpected"][:20]))
    if len(clean) - len(report["unexpected"]) == 0:
        raise UserError(f"init weights {path} share no tensors with backbone {model.backbone_name!r}")
    return report
