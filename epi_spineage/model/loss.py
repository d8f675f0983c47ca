"""Mean-variance loss (Pan et al. 2018), exactly as docs/methods.md#loss.

With ``p_ij = softmax_j(z_i)`` over ages ``a_j = min_age + j``, ``m_i = sum_j a_j p_ij`` and
``v_i = sum_j p_ij (a_j - m_i)^2``:

    L_s = -(1/N) sum_i log p_{i, y_i - min_age}      (cross-entropy, mean over the batch)
    L_m = (1/(2N)) sum_i (m_i - y_i)^2
    L_v = (1/N) sum_i v_i
    L   = L_s + lambda_mean * L_m + lambda_var * L_v

Targets ``y_i`` are completed years (``floor(age)``), and ages outside ``[min_age, max_age]`` are
**clipped** to the range (not excluded), both in the cross-entropy class and in ``L_m``, so a
105-year-old trains as 100 when ``max_age=100``. Excluding such rows is the caller's choice.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def age_targets(ages: torch.Tensor, min_age: int, max_age: int) -> torch.Tensor:
    """Completed years clipped to ``[min_age, max_age]`` as a long tensor."""
    return torch.clamp(torch.floor(ages.to(torch.float64)), min_age, max_age).long()


class MeanVarianceLoss(nn.Module):
    """``loss(logits, ages)`` -> scalar total; ``components(logits, ages)`` -> dict of the parts.

    After each call, ``last_components`` holds the parts as floats (for logging).
    """

    ages: torch.Tensor  # a registered buffer

    def __init__(self, min_age: int = 40, max_age: int = 100, lambda_mean: float = 0.2, lambda_var: float = 0.05):
        super().__init__()
        if int(max_age) <= int(min_age):
            raise ValueError(f"max_age ({max_age}) must exceed min_age ({min_age})")
        if lambda_mean < 0 or lambda_var < 0:
            raise ValueError("loss weights must be non-negative")
        self.min_age = int(min_age)
        self.max_age = int(max_age)
        self.lambda_mean = float(lambda_mean)
        self.lambda_var = float(lambda_var)
        self.register_buffer(
            "ages", torch.arange(self.min_age, self.max_age + 1, dtype=torch.float32), persistent=False
        )
        self.last_components: dict[str, float] = {}

    @property
    def num_classes(self) -> int:
        return self.max_age - self.min_age + 1

    def components(self, logits: torch.Tensor, ages: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"total", "softmax", "mean", "variance", "expected_age"}`` (the first four are scalars)."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (N, {self.num_classes}); got {tuple(logits.shape)}")
        logits = logits.float()
        target = age_targets(ages.to(logits.device), self.min_age, self.max_age)
        y = target.to(logits.dtype)
        a = self.ages.to(device=logits.device, dtype=logits.dtype)
        p = F.softmax(logits, dim=1)
        m = (p * a).sum(dim=1)
        v = (p * (a[None, :] - m[:, None]) ** 2).sum(dim=1)
        l_s = F.cross_entropy(logits, target - self.min_age)
        l_m = ((m - y) ** 2).mean() / 2.0
        l_v = v.mean()
        total = l_s + self.lambda_mean * l_m + self.lambda_var * l_v
        return {"total": total, "softmax": l_s, "mean": l_m, "variance": l_v, "expected_age": m}

    def forward(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        parts = self.components(logits, ages)
        self.last_components = {k: float(v.detach()) for k, v in parts.items() if k != "expected_age"}
        return parts["total"]
