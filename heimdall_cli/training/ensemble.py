"""A deep ensemble in one module: several independently initialised networks, one prediction.

Each member is a whole localization network (slots or set) with its own output layer.
They see the same batches but are trained each by its own loss (the sum of the members'
negative log-likelihoods), so they stay independent rather than splitting the work. The
prediction is the mean of the members' positions; σ is the spread of the members' mixture
(their own σ² averaged plus the variance of their means, per axis), so disagreement
between members widens the predicted region. ``sigma_scale`` calibrates the combined σ.

One module keeps everything downstream unchanged: a checkpoint, the logged MLflow model
and its ONNX export each hold the whole ensemble and take the same packed input.
"""

from __future__ import annotations

import torch
from torch import nn


class EnsembleOutput(nn.Module):
    """Raw [B, Σ widths] (the members' raw outputs side by side) -> mean position and combined σ (km)."""

    def __init__(self, outputs: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(outputs)
        self.widths = [int(o.width(getattr(o, "components", 1))) for o in outputs]
        self.extent_km = float(outputs[0].extent_km)
        self.components = sum(getattr(o, "components", 1) for o in outputs)
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    def width(self, components: int) -> int:
        return sum(self.widths)

    def split(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(raw, self.widths, dim=-1)

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mus, sigmas = zip(*(out(part) for out, part in zip(self.members, self.split(raw), strict=True)), strict=True)
        mu_k, sigma_k = torch.stack(mus), torch.stack(sigmas)  # [M, B, 2]
        mu = mu_k.mean(dim=0)
        var = (sigma_k.square() + (mu_k - mu).square()).mean(dim=0)
        return mu, var.sqrt() * self.sigma_scale

    def nll(self, raw: torch.Tensor, target: torch.Tensor, target_sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The members' losses summed: each member learns as if alone."""
        return sum(out.nll(part, target, target_sigma)
                   for out, part in zip(self.members, self.split(raw), strict=True))  # type: ignore[return-value]


class EnsembleNet(nn.Module):
    """Several localization networks over the same packed input; the interface of one."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.output = EnsembleOutput([m.output for m in members])
        first = members[0]
        for name in ("slots", "bands", "frames", "tail"):
            if hasattr(first, name):
                setattr(self, name, getattr(first, name))

    @property
    def backbones(self) -> list[nn.Module]:
        """The members' spectrogram encoders (none for received-power data)."""
        return [m.backbone for m in self.members if getattr(m, "backbone", None) is not None]

    def raw(self, receivers: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.raw(receivers) for m in self.members], dim=-1)

    def forward(self, receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.output(self.raw(receivers))
