"""The deployable model: packed receiver features in, latitude/longitude and uncertainty in metres out.

It wraps the trained network (which normalises its own inputs) with the inverse of the
local east/north projection, so a consumer needs nothing but MLflow:
``mlflow.pyfunc.load_model("models:/heimdall-localization@production").predict(x)``.

Its input and output are :mod:`heimdall_cli.export.interface` (``OUTPUT_COLUMNS``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from heimdall_cli.training.projection import from_local_m


class DeployedLocalizer(nn.Module):
    """Packed receiver features -> network -> (east, north) km -> (lat, lon) degrees; σ in metres."""

    def __init__(self, net: nn.Module, origin: tuple[float, float], label_scale_m: float) -> None:
        super().__init__()
        self.net = net
        self.phi0 = math.radians(origin[0])
        self.lam0 = math.radians(origin[1])
        self.scale = float(label_scale_m)

    def forward(self, receivers: torch.Tensor) -> torch.Tensor:
        mu, sigma = self.net(receivers)
        east = mu[:, 0].double() * self.scale
        north = mu[:, 1].double() * self.scale
        lat, lon = from_local_m(east, north, self.phi0, self.lam0)
        sigma_m = sigma.double() * self.scale
        return torch.stack([lat, lon, sigma_m[:, 0], sigma_m[:, 1]], dim=1).float()
