"""The localization model: receivers in, the transmitter's position and a Gaussian uncertainty out.

Two networks read the same packed input (:mod:`heimdall_cli.data.packing`):
``architecture="set"`` (:class:`~heimdall_cli.training.set_net.SetLocalizationNet`) takes
the receivers as a set, each with its features and position; ``"slots"``
(:class:`LocalizationNet`) gives every station of the training data a fixed slot: the
slots are the image channels of the backbone, and their scalars, positions and masks
enter through a side network. The head predicts the
transmitter's position in the local east/north frame (km from the network centre) and a
per-axis σ (softplus, km); the loss is the Gaussian negative log-likelihood (with the
label's own uncertainty added to σ). Validation and test report errors in metres
(haversine on latitude/longitude) and the coverage of the predicted 68 % region.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.packing import LEGACY_TAIL, TAIL
from heimdall_cli.data.receivers import NETWORK_CENTRE
from heimdall_cli.training.backbone import create_backbone
from heimdall_cli.training.outputs import R68, GaussianOutput, MixtureOutput
from heimdall_cli.training.projection import to_local_m

N_SCALARS = len(SCALARS)
POSITION_SCALE_M = 100_000.0  # receiver positions enter the side network in units of 100 km


class LocalizationNet(nn.Module):
    """Packed receiver features [B, S, width] -> (mu_km [B, 2], sigma_km [B, 2]).

    The spectrograms (one image channel per receiver slot) go through the timm backbone;
    each slot's scalars, position (east/north from ``origin``) and mask through a small
    MLP over all slots; the head reads both. Inputs are normalised inside, with the
    train split's statistics, so the module takes the raw packed features.
    """

    def __init__(self, backbone: nn.Module | None, slots: int, bands: int, frames: int, origin: tuple[float, float],
                 stats: dict[str, list[float]] | None = None, hidden: int = 256, side: int = 128,
                 output: nn.Module | None = None) -> None:
        super().__init__()
        self.output = output or GaussianOutput(100.0)
        self.position_scale_m = self.output.extent_km * 1000.0
        self.backbone = backbone
        self.slots, self.bands, self.frames = slots, bands, frames
        self.phi0, self.lam0 = math.radians(origin[0]), math.radians(origin[1])
        stats = stats or {"spec_mean": [0.0] * slots, "spec_std": [1.0] * slots,
                          "scalar_mean": [0.0] * N_SCALARS, "scalar_std": [1.0] * N_SCALARS}
        self.register_buffer("spec_mean", torch.tensor(stats["spec_mean"], dtype=torch.float32).view(1, -1, 1, 1))
        spec_std = torch.tensor(stats["spec_std"], dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("spec_inv_std", 1.0 / spec_std)
        self.register_buffer("scalar_mean", torch.tensor(stats["scalar_mean"], dtype=torch.float32))
        self.register_buffer("scalar_inv_std", 1.0 / torch.tensor(stats["scalar_std"], dtype=torch.float32))
        features = 0 if backbone is None else int(getattr(backbone, "num_features", 0)
                                                  or backbone(torch.zeros(1, slots, bands, frames)).shape[-1])
        self.tail = TAIL
        self.side = nn.Sequential(nn.Linear(slots * (N_SCALARS + 4), side), nn.GELU(), nn.Linear(side, side), nn.GELU())
        components = getattr(self.output, "components", 1)
        self.head = nn.Sequential(
            nn.Linear(features + side, hidden), nn.GELU(), nn.Dropout(0.1),
            nn.Linear(hidden, self.output.width(components)),
        )

    def forward(self, receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self, "output", None) is None:  # pickled before the output modules: 100 km, one Gaussian
            out = self.raw(receivers)
            return out[:, :2] * 100.0, nn.functional.softplus(out[:, 2:]) * 50.0 + 0.01
        return self.output(self.raw(receivers))

    def raw(self, receivers: torch.Tensor) -> torch.Tensor:
        """The head's output, before :attr:`output` turns it into a position and σ."""
        cells = self.bands * self.frames
        legacy = getattr(self, "tail", LEGACY_TAIL) == LEGACY_TAIL  # pickled before the IQ column
        recorded = receivers[..., -1:] > 0  # [B, S, 1]; an absent slot's other values may be anything, NaN too
        receivers = torch.where(recorded, receivers, torch.zeros_like(receivers))
        mask = recorded.to(receivers.dtype)
        iq = mask if legacy else receivers[..., -2:-1] * mask
        # flatten/unflatten, not reshape with the batch size: the traced ONNX graph keeps the batch dynamic
        spec = receivers[..., :cells].unflatten(-1, (self.bands, self.frames))
        spec = (spec - self.spec_mean) * self.spec_inv_std * iq[..., None]
        raw = receivers[..., cells : cells + N_SCALARS]
        known = torch.isfinite(raw)
        scalars = torch.where(known, (raw - self.scalar_mean) * self.scalar_inv_std, torch.zeros_like(raw))
        lat, lon = receivers[..., cells + N_SCALARS], receivers[..., cells + N_SCALARS + 1]
        placed = torch.isfinite(lat) & torch.isfinite(lon)
        east, north = to_local_m(torch.where(placed, lat, torch.zeros_like(lat)),
                                 torch.where(placed, lon, torch.zeros_like(lon)), self.phi0, self.lam0)
        scale = getattr(self, "position_scale_m", POSITION_SCALE_M)
        position = torch.stack([east, north], dim=-1).to(receivers.dtype) / scale * placed[..., None]
        flags = [torch.ones_like(mask)] if legacy else [iq, torch.ones_like(mask)]
        side = torch.cat([scalars, position, *flags], dim=-1) * mask
        parts = [self.side(side.flatten(1))] if self.backbone is None else [self.backbone(spec),
                                                                            self.side(side.flatten(1))]
        return self.head(torch.cat(parts, dim=-1))


def gaussian_nll(mu: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor,
                 target_sigma: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of ``target`` under N(mu, diag(sigma² + target_sigma²)), per axis, in km.

    ``target_sigma`` is the label's own uncertainty (a known source's error margin).
    """
    if target_sigma is not None:
        sigma = torch.sqrt(sigma.square() + target_sigma.square())
    z = (target - mu) / sigma
    return (0.5 * z.pow(2) + torch.log(sigma) + 0.5 * math.log(2 * math.pi)).mean()


class LocalizationLitModule(L.LightningModule):
    """Lightning module; the trainer factory builds it from settings.

    The defaults make a small model (resnet18, random init) so that the documented
    ``LocalizationLitModule(learning_rate=1e-3)`` works anywhere; the CLI always
    passes the configured backbone.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        slots: int = 7,
        bands: int = 32,
        frames: int = 32,
        origin: tuple[float, float] = NETWORK_CENTRE,
        stats: dict[str, list[float]] | None = None,
        freeze_backbone: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        head_hidden: int = 256,
        architecture: str = "slots",
        extent_km: float = 100.0,
        anchors_km: list[list[float]] | None = None,
        receiver_dropout: float = 0.0,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        weights = Path(pretrained_path) if pretrained_path else None

        def member() -> nn.Module:
            output = MixtureOutput(np.asarray(anchors_km), extent_km) if anchors_km else GaussianOutput(extent_km)
            if architecture == "set":
                from heimdall_cli.training.set_net import SetLocalizationNet

                encoder = create_backbone(backbone, 1, pretrained=pretrained, pretrained_path=weights) \
                    if bands * frames > 0 else None
                return SetLocalizationNet(encoder, bands, frames, tuple(origin), stats, output, hidden=head_hidden)
            net = create_backbone(backbone, slots, pretrained=pretrained, pretrained_path=weights) \
                if bands * frames > 0 else None
            return LocalizationNet(net, slots, bands, frames, tuple(origin), stats, head_hidden,
                                   side=max(head_hidden // 2, 8), output=output)

        if ensemble > 1:
            from heimdall_cli.training.ensemble import EnsembleNet

            self.net: nn.Module = EnsembleNet([member() for _ in range(ensemble)])
            encoders = self.net.backbones
        else:
            self.net = member()
            encoders = [self.net.backbone] if self.net.backbone is not None else []
        self.origin = tuple(origin)
        if freeze_backbone:
            for encoder in encoders:
                for p in encoder.parameters():
                    p.requires_grad_(False)
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {"val": [], "test": []}

    def forward(self, receivers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(receivers)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        receivers = batch["receivers"]
        if self.hparams.receiver_dropout > 0:  # drop whole receivers: a model that copes with absent ones
            keep = (torch.rand(receivers.shape[:2], device=receivers.device) >= self.hparams.receiver_dropout)
            receivers = torch.cat([receivers[..., :-1], receivers[..., -1:] * keep.unsqueeze(-1)], dim=-1)
        return self.net.output.nll(self.net.raw(receivers), batch["y"], batch["y_sigma"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, split: str, batch: dict[str, torch.Tensor]) -> None:
        raw = self.net.raw(batch["receivers"])
        mu, sigma = self.net.output(raw)
        loss = self.net.output.nll(raw, batch["y"]) * len(raw)  # the training loss, summed over the batch
        self._outputs[split].append(
            {"mu": mu.detach().float(), "sigma": sigma.detach().float(), "y": batch["y"].float(),
             "latlon": batch["tx_latlon"].double(), "loss_sum": loss.detach().double().reshape(1)}
        )

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _epoch_end(self, split: str) -> None:
        outputs, self._outputs[split] = self._outputs[split], []
        if not outputs:
            return
        cat = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
        if self.trainer.world_size > 1:
            cat = {k: self.all_gather(v).reshape(-1, *v.shape[1:]) for k, v in cat.items()}
        metrics = evaluation_metrics(cat["mu"], cat["sigma"], cat["y"], cat["latlon"], self.origin,
                                     loss=float(cat["loss_sum"].sum() / len(cat["mu"])))
        if self.trainer.sanity_checking:
            return
        # Values are identical on every rank (gathered), so no further reduction is needed.
        for key, value in metrics.items():
            self.log(f"{split}/{key}", value, sync_dist=False, rank_zero_only=True)

    def on_train_start(self) -> None:
        """On a resume, the schedule follows this session's settings, not the checkpoint's.

        The peak is the current learning rate and the cosine spans the current number of
        steps, continued at the step reached: more epochs stretch the decay (never lr 0 in
        the added ones), a new learning rate rescales it. A fresh run is unchanged.
        """
        peak = float(self.hparams.learning_rate)
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            scheduler.base_lrs = [peak for _ in scheduler.base_lrs]
            for group, factor in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas, strict=True):
                group["initial_lr"] = peak
                group["lr"] = peak * factor(scheduler.last_epoch)

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * self.hparams.warmup_fraction)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}


def evaluation_metrics(
    mu_km: torch.Tensor, sigma_km: torch.Tensor, y_km: torch.Tensor, true_latlon: torch.Tensor,
    origin: tuple[float, float] = NETWORK_CENTRE, loss: float | None = None,
) -> dict[str, float]:
    """loss (the model's own, else the Gaussian NLL of mu/sigma), error_m_{mean,p50,p68,p95} (haversine, metres)
    and coverage_68 for one split."""
    from heimdall_cli.data.baselines import errors_m, summary
    from heimdall_cli.data.geo import from_local_m

    loss = float(gaussian_nll(mu_km, sigma_km, y_km)) if loss is None else loss
    mu = mu_km.cpu().double().numpy() * 1000.0
    lat, lon = from_local_m(mu[:, 0], mu[:, 1], origin)
    errors = errors_m(np.stack([lat, lon], axis=1), true_latlon.cpu().numpy())
    stats = summary(errors)
    z = ((y_km - mu_km) / sigma_km).pow(2).sum(dim=1).sqrt()
    coverage = float((z <= R68).double().mean())
    return {
        "loss": loss,
        "error_m_mean": stats["mean"],
        "error_m_p50": stats["p50"],
        "error_m_p68": stats["p68"],
        "error_m_p95": stats["p95"],
        "coverage_68": coverage,
    }
