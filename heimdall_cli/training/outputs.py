"""What the network's last layer means: one Gaussian, or a mixture of Gaussians anchored over the area.

Both turn the head's raw output into the position (east/north km from the origin) and a
per-axis σ (km), and give the training loss (negative log-likelihood, with the label's
own uncertainty added to σ). :class:`MixtureOutput` places K components at anchor points
spread over the training labels (k-means, :func:`anchors_of`); each component may move
a little and has its own σ. Its position is the mixture mean and its σ the mixture's
per-axis spread, so a transmission that the receivers cannot tell between two places
gets a wide σ. Sharp, many-peaked maps from received power to position are what it
learns better than one Gaussian.

``sigma_scale`` is a calibration factor fitted after training on the validation split
(:func:`calibrate`): the predicted 68 % region then holds 68 % of the validation labels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

# Radius (in σ) of the 68 % region of a 2-D Gaussian with independent axes: sqrt(-2 ln 0.32).
R68 = math.sqrt(-2.0 * math.log(1.0 - 0.68))
MIN_SIGMA_KM = 0.005


def _nll(z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * z.pow(2) + torch.log(sigma) + 0.5 * math.log(2 * math.pi)


class GaussianOutput(nn.Module):
    """Raw [B, 4] -> mu [B, 2] in ``extent_km`` units, σ by softplus."""

    def __init__(self, extent_km: float) -> None:
        super().__init__()
        self.extent_km = float(extent_km)
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    @staticmethod
    def width(components: int) -> int:
        return 4

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = raw[:, :2] * self.extent_km
        sigma = nn.functional.softplus(raw[:, 2:4]) * (self.extent_km / 2.0) + MIN_SIGMA_KM
        return mu, sigma * self.sigma_scale

    def nll(self, raw: torch.Tensor, target: torch.Tensor, target_sigma: torch.Tensor | None = None) -> torch.Tensor:
        mu, sigma = self(raw)
        if target_sigma is not None:
            sigma = torch.sqrt(sigma.square() + target_sigma.square())
        return _nll((target - mu) / sigma, sigma).mean()


class MixtureOutput(nn.Module):
    """Raw [B, K·5] -> K components (weight logit, offset from the anchor, per-axis σ) -> mixture mean and σ."""

    def __init__(self, anchors_km: NDArray[np.float64] | torch.Tensor, extent_km: float) -> None:
        super().__init__()
        anchors = torch.as_tensor(np.asarray(anchors_km, np.float32))
        self.register_buffer("anchors", anchors)  # [K, 2]
        self.components = int(anchors.shape[0])
        self.extent_km = float(extent_km)
        # components move by up to ~the spacing of the anchors; their σ starts about there too
        self.spacing_km = float(extent_km) / math.sqrt(max(self.components, 1))
        self.register_buffer("sigma_scale", torch.tensor(1.0))

    @staticmethod
    def width(components: int) -> int:
        return components * 5

    def parts(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log weights [B, K], means [B, K, 2], σ [B, K, 2]) in km."""
        out = raw.unflatten(-1, (self.components, 5))
        log_w = torch.log_softmax(out[..., 0], dim=-1)
        means = self.anchors + torch.tanh(out[..., 1:3]) * self.spacing_km
        sigma = nn.functional.softplus(out[..., 3:5] - 1.0) * self.spacing_km + MIN_SIGMA_KM
        return log_w, means, sigma

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_w, means, sigma = self.parts(raw)
        w = log_w.exp().unsqueeze(-1)
        mu = (w * means).sum(dim=1)
        var = (w * (sigma.square() + (means - mu.unsqueeze(1)).square())).sum(dim=1)
        return mu, var.sqrt() * self.sigma_scale

    def nll(self, raw: torch.Tensor, target: torch.Tensor, target_sigma: torch.Tensor | None = None) -> torch.Tensor:
        log_w, means, sigma = self.parts(raw)
        if target_sigma is not None:
            sigma = torch.sqrt(sigma.square() + target_sigma.unsqueeze(1).square())
        per = -_nll((target.unsqueeze(1) - means) / sigma, sigma).sum(-1)  # [B, K]
        return -(torch.logsumexp(log_w + per, dim=-1)).mean() / 2.0  # per axis, like the Gaussian's


def anchors_of(labels_km: NDArray[np.float64], components: int, seed: int = 0, iterations: int = 25,
               ) -> NDArray[np.float64]:
    """``components`` k-means centres of the training labels (fewer when there are fewer distinct labels)."""
    points = np.unique(np.asarray(labels_km, np.float64), axis=0)
    k = max(1, min(components, len(points)))
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), k, replace=False)]
    for _ in range(iterations):
        d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        nearest = d.argmin(1)
        for j in range(k):
            members = points[nearest == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def calibrate(mu_km: torch.Tensor, sigma_km: torch.Tensor, y_km: torch.Tensor) -> float:
    """The factor on σ that makes the 68 % region hold 68 % of these (validation) labels."""
    z = ((y_km - mu_km) / sigma_km).pow(2).sum(dim=1).sqrt()
    if len(z) < 10:
        return 1.0
    return float(torch.quantile(z.double(), 0.68) / R68)
