"""The local east/north frame in torch (the same formulas as :mod:`heimdall_cli.data.geo`), for the network.

Azimuthal-equidistant around ``origin`` on a sphere of radius ``EARTH_RADIUS_M``; float64
inside, because degrees near 45° N need it for metre accuracy.
"""

from __future__ import annotations

import math

import torch

from heimdall_cli.data.geo import EARTH_RADIUS_M


def to_local_m(lat_deg: torch.Tensor, lon_deg: torch.Tensor, phi0: float,
               lam0: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(east, north) metres of points in degrees; ``phi0``/``lam0`` the origin in radians."""
    phi, dl = torch.deg2rad(lat_deg.double()), torch.deg2rad(lon_deg.double()) - lam0
    cos_c = math.sin(phi0) * torch.sin(phi) + math.cos(phi0) * torch.cos(phi) * torch.cos(dl)
    c = torch.acos(torch.clamp(cos_c, -1.0, 1.0))
    k = 1.0 / torch.sinc(c / math.pi)  # c / sin(c), 1 at the origin
    east = EARTH_RADIUS_M * k * torch.cos(phi) * torch.sin(dl)
    north = EARTH_RADIUS_M * k * (math.cos(phi0) * torch.sin(phi) - math.sin(phi0) * torch.cos(phi) * torch.cos(dl))
    return east, north


def from_local_m(east: torch.Tensor, north: torch.Tensor, phi0: float,
                 lam0: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`to_local_m`: (lat, lon) degrees."""
    rho = torch.sqrt(east * east + north * north)
    c = rho / EARTH_RADIUS_M
    s = torch.sinc(c / math.pi) / EARTH_RADIUS_M  # sin(c)/rho, finite at the origin
    sin_phi = torch.cos(c) * math.sin(phi0) + north * s * math.cos(phi0)
    lat = torch.rad2deg(torch.asin(torch.clamp(sin_phi, -1.0, 1.0)))
    lon = torch.rad2deg(lam0 + torch.atan2(east * s, math.cos(phi0) * torch.cos(c) - math.sin(phi0) * north * s))
    return lat, lon
