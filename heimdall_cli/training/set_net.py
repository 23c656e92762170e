"""The set model: every receiver of a sample is one token (its features and its position), in any number and order.

Each recorded receiver becomes a token from its normalised scalars (power, noise, SNR,
offset, present; an unknown value is 0 with a flag saying so), its position east/north of
the network's origin (in units of ``extent_km``; a receiver with no known position gets a
flag instead), whether it has IQ, and, where it has IQ, the timm backbone's embedding of
its spectrogram (one image channel: the same encoder for every receiver). Two rounds of
context mixing (each token sees the masked mean of all tokens) are followed by two
attention poolings over the tokens: one weights the receivers' positions (a learnt
weighted centroid of the receivers, where a single-Gaussian output starts from), the
other summarises the set for the head (:mod:`heimdall_cli.training.outputs`).

Nothing depends on a receiver's slot: the same weights serve 7 WebSDRs or 70 gateways,
receivers that are absent, that move from sample to sample, or that were never seen in
training. The packed input is the same as the slot model's
(:mod:`heimdall_cli.data.packing`), so both deploy the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from heimdall_cli.data.features import SCALARS
from heimdall_cli.training.outputs import GaussianOutput
from heimdall_cli.training.projection import to_local_m

N_SCALARS = len(SCALARS)
_PRESENT = SCALARS.index("present")


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the receivers (dim 1) of ``scores`` [B, S, H], with ``mask`` [B, S, 1] 0 for absent ones."""
    scores = scores.masked_fill(mask <= 0, -1e9)
    return torch.softmax(scores, dim=1) * (mask > 0)


class SetLocalizationNet(nn.Module):
    """Packed receiver features [B, S, width] -> (mu_km [B, 2], sigma_km [B, 2]); S may be any number."""

    def __init__(self, backbone: nn.Module | None, bands: int, frames: int, origin: tuple[float, float],
                 stats: dict[str, list[float]] | None = None, output: nn.Module | None = None, width: int = 128,
                 hidden: int = 256) -> None:
        super().__init__()
        self.output = output or GaussianOutput(100.0)
        self.backbone = backbone if bands * frames > 0 else None
        self.bands, self.frames = bands, frames
        self.phi0, self.lam0 = math.radians(origin[0]), math.radians(origin[1])
        self.origin = (float(origin[0]), float(origin[1]))
        self.extent_km = float(self.output.extent_km)
        stats = stats or {"spec_mean": [0.0], "spec_std": [1.0], "scalar_mean": [0.0] * N_SCALARS,
                          "scalar_std": [1.0] * N_SCALARS}
        # one encoder for every receiver: the statistics of all slots together
        self.register_buffer("spec_mean", torch.tensor(float(sum(stats["spec_mean"]) / len(stats["spec_mean"]))))
        self.register_buffer("spec_inv_std", torch.tensor(1.0 / (sum(stats["spec_std"]) / len(stats["spec_std"]))))
        self.register_buffer("scalar_mean", torch.tensor(stats["scalar_mean"], dtype=torch.float32))
        self.register_buffer("scalar_inv_std", 1.0 / torch.tensor(stats["scalar_std"], dtype=torch.float32))
        embed = 0
        if self.backbone is not None:
            embed = int(getattr(self.backbone, "num_features", 0)
                        or self.backbone(torch.zeros(1, 1, bands, frames)).shape[-1])
        # scalars, their known flags, east/north, position known, iq
        token_in = 2 * N_SCALARS + 2 + 1 + 1 + embed
        self.embed = nn.Sequential(nn.Linear(token_in, width), nn.GELU(), nn.Linear(width, width))
        self.mix = nn.ModuleList([nn.Sequential(nn.LayerNorm(2 * width), nn.Linear(2 * width, width), nn.GELU(),
                                                nn.Linear(width, width)) for _ in range(2)])
        self.where_score = nn.Linear(width, 1)
        self.pool_score = nn.Linear(width, 4)
        components = getattr(self.output, "components", 1)
        self.head = nn.Sequential(nn.LayerNorm(6 * width + 2), nn.Linear(6 * width + 2, hidden), nn.GELU(),
                                  nn.Dropout(0.1), nn.Linear(hidden, self.output.width(components)))

    def forward(self, receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.output(self.raw(receivers))

    def raw(self, receivers: torch.Tensor) -> torch.Tensor:
        """The head's output, before :attr:`output` turns it into a position and σ."""
        cells = self.bands * self.frames
        recorded = receivers[..., -1:] > 0  # [B, S, 1]; an absent slot's other values may be anything, NaN too
        receivers = torch.where(recorded, receivers, torch.zeros_like(receivers))
        mask = recorded.to(receivers.dtype)
        iq = receivers[..., -2:-1] * mask
        raw = receivers[..., cells : cells + N_SCALARS]
        known = torch.isfinite(raw)
        scalars = torch.where(known, (raw - self.scalar_mean) * self.scalar_inv_std, torch.zeros_like(raw))
        lat, lon = receivers[..., cells + N_SCALARS], receivers[..., cells + N_SCALARS + 1]
        placed = (torch.isfinite(lat) & torch.isfinite(lon)).unsqueeze(-1)  # [B, S, 1]
        lat = torch.where(placed[..., 0], lat, torch.full_like(lat, self.origin[0]))
        lon = torch.where(placed[..., 0], lon, torch.full_like(lon, self.origin[1]))
        east, north = to_local_m(lat, lon, self.phi0, self.lam0)
        position_km = (torch.stack([east, north], dim=-1) / 1000.0).to(receivers.dtype)  # [B, S, 2]
        parts = [scalars, known.to(receivers.dtype), position_km / self.extent_km * placed, placed.to(receivers.dtype),
                 iq]
        if self.backbone is not None:
            spec = receivers[..., :cells].unflatten(-1, (self.bands, self.frames))  # [B, S, bands, frames]
            spec = ((spec - self.spec_mean) * self.spec_inv_std * iq[..., None]).flatten(0, 1).unsqueeze(1)
            parts.append(self.backbone(spec).unflatten(0, (receivers.shape[0], receivers.shape[1])) * iq)
        tokens = self.embed(torch.cat(parts, dim=-1)) * mask
        count = mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        for block in self.mix:
            context = (tokens.sum(dim=1, keepdim=True) / count).expand_as(tokens)
            tokens = (tokens + block(torch.cat([tokens, context], dim=-1))) * mask
        # where the receivers point: a weighted centroid of the placed ones
        weights = _masked_softmax(self.where_score(tokens), mask * placed)  # [B, S, 1]
        centroid = (weights * position_km).sum(dim=1)  # [B, 2]; 0 (the origin) when none is placed
        pooled = _masked_softmax(self.pool_score(tokens), mask)  # [B, S, 4]
        summary = torch.einsum("bsh,bsw->bhw", pooled, tokens).flatten(1)  # [B, 4·width]
        mean = tokens.sum(dim=1) / count[:, 0]
        heard = (receivers[..., cells + _PRESENT : cells + _PRESENT + 1] > 0.5) & (mask > 0)
        loud = tokens.masked_fill(~heard, -1e4).amax(dim=1) * heard.any(dim=1)  # the max over heard receivers
        out = self.head(torch.cat([summary, mean, loud, centroid / self.extent_km], dim=-1))
        if isinstance(self.output, GaussianOutput):  # the position starts from the centroid
            out = torch.cat([out[:, :2] + centroid / self.extent_km, out[:, 2:]], dim=-1)
        return out
