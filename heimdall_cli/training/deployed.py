"""The deployable model: raw spectrograms in, latitude/longitude and uncertainty in metres out.

It wraps the trained network with the train-split normalisation and the inverse of
the local east/north projection, so a consumer needs nothing but MLflow:
``mlflow.pyfunc.load_model("models:/heimdall-localization@production").predict(x)``.

Its input and output are :mod:`heimdall_cli.export.interface` (``OUTPUT_COLUMNS``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from heimdall_cli.data.geo import EARTH_RADIUS_M


class DeployedLocalizer(nn.Module):
    """Normalise -> network -> (east, north) km -> (lat, lon) degrees; σ in metres."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray, origin: tuple[float, float],
                 label_scale_m: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.phi0 = math.radians(origin[0])
        self.lam0 = math.radians(origin[1])
        self.scale = float(label_scale_m)

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        x = (spectrograms - self.mean) * self.inv_std
        mu, sigma = self.net(x)
        east = mu[:, 0].double() * self.scale
        north = mu[:, 1].double() * self.scale
        lat, lon = _from_local(east, north, self.phi0, self.lam0)
        sigma_m = sigma.double() * self.scale
        return torch.stack([lat, lon, sigma_m[:, 0], sigma_m[:, 1]], dim=1).float()


def _from_local(east: torch.Tensor, north: torch.Tensor, phi0: float, lam0: float) -> tuple[torch.Tensor, ...]:
    """Inverse azimuthal-equidistant projection (same formulas as data.geo.from_local_m)."""
    rho = torch.sqrt(east * east + north * north)
    c = rho / EARTH_RADIUS_M
    s = torch.sinc(c / math.pi) / EARTH_RADIUS_M  # sin(c)/rho, finite at the origin
    sin_phi = torch.cos(c) * math.sin(phi0) + north * s * math.cos(phi0)
    lat = torch.rad2deg(torch.asin(torch.clamp(sin_phi, -1.0, 1.0)))
    lon = torch.rad2deg(lam0 + torch.atan2(east * s, math.cos(phi0) * torch.cos(c) - math.sin(phi0) * north * s))
    return lat, lon
