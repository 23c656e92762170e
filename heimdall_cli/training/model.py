"""The localization model: a timm backbone over the receivers' spectrograms plus a Gaussian head.

Receivers are the image channels (``in_chans`` = number of receivers). The head
predicts the transmitter's position in the local east/north frame (km from the
network centre) and a per-axis σ (softplus, km); the loss is the Gaussian
negative log-likelihood. Validation and test report errors in metres
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

from heimdall_cli.training.backbone import create_backbone

# Radius (in σ) of the 68 % region of a 2-D Gaussian with independent axes: sqrt(-2 ln 0.32).
R68 = math.sqrt(-2.0 * math.log(1.0 - 0.68))
MIN_SIGMA_KM = 0.01


class LocalizationNet(nn.Module):
    """Backbone + head: spectrograms [B, R, M, T] -> (mu_km [B, 2], sigma_km [B, 2])."""

    def __init__(self, backbone: nn.Module, hidden: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        features = int(getattr(backbone, "num_features", 0) or backbone(torch.zeros(1, 7, 32, 32)).shape[-1])
        self.head = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 4)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.backbone(x))
        mu = out[:, :2] * 100.0  # km: targets span about ±150 km
        sigma = nn.functional.softplus(out[:, 2:]) * 50.0 + MIN_SIGMA_KM
        return mu, sigma


def gaussian_nll(mu: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``target`` under N(mu, diag(sigma²)), per axis, in km units."""
    z = (target - mu) / sigma
    return (0.5 * z.pow(2) + torch.log(sigma) + 0.5 * math.log(2 * math.pi)).mean()


class LocalizationLitModule(L.LightningModule):
    """Lightning module; the trainer factory builds it from settings.

    The defaults make a small model (resnet18, random init) so that the seed's
    ``LocalizationLitModule(learning_rate=1e-3)`` works anywhere; the CLI always
    passes the configured backbone.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        in_chans: int = 7,
        freeze_backbone: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        head_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        net = create_backbone(backbone, in_chans, pretrained=pretrained,
                              pretrained_path=Path(pretrained_path) if pretrained_path else None)
        self.net = LocalizationNet(net, head_hidden)
        if freeze_backbone:
            for p in self.net.backbone.parameters():
                p.requires_grad_(False)
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {"val": [], "test": []}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        mu, sigma = self(batch["x"])
        loss = gaussian_nll(mu, sigma, batch["y"])
        self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=len(mu))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, split: str, batch: dict[str, torch.Tensor]) -> None:
        mu, sigma = self(batch["x"])
        self._outputs[split].append(
            {"mu": mu.detach().float(), "sigma": sigma.detach().float(), "y": batch["y"].float(),
             "latlon": batch["tx_latlon"].double()}
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
        metrics = evaluation_metrics(cat["mu"], cat["sigma"], cat["y"], cat["latlon"])
        if self.trainer.sanity_checking:
            return
        # Values are identical on every rank (gathered), so no further reduction is needed.
        for key, value in metrics.items():
            self.log(f"{split}/{key}", value, sync_dist=False, rank_zero_only=True)

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
    mu_km: torch.Tensor, sigma_km: torch.Tensor, y_km: torch.Tensor, true_latlon: torch.Tensor
) -> dict[str, float]:
    """loss, error_m_{mean,p50,p68,p95} (haversine, metres) and coverage_68 for one split."""
    from heimdall_cli.data.baselines import errors_m, summary
    from heimdall_cli.data.geo import from_local_m

    loss = float(gaussian_nll(mu_km, sigma_km, y_km))
    mu = mu_km.cpu().double().numpy() * 1000.0
    lat, lon = from_local_m(mu[:, 0], mu[:, 1])
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
