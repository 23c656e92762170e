"""Classical baselines and localization error metrics (metres, haversine).

- :func:`centre_baseline`: always the centre of the receivers.
- :func:`rssi_multilateration`: the classical estimator as a real deployment runs it. It
  reads the feature extractor's power and noise estimates (dB relative to full scale,
  so every receiver's gain is unknown to it), knows the log-distance path-loss model of
  the world but not the stations' gains, antenna patterns or the terrain, and fits
  (transmitter position, transmit power) by maximum likelihood with Gaussian dB errors.
  For a fixed position the ML transmit power is the mean of ``P_rx + L(d)`` over the
  receivers that heard, so the fit is a 2-D search of the residual variance: a grid
  over the world's region (~5 km), then three levels of finer local grids (5× each,
  to ~40 m), vectorised over samples. Recorded receivers that did not hear are
  censored observations: where the fitted model predicts them above their detection
  threshold (noise estimate plus ``present_snr_db``), the excess (dB) is a squared
  residual. With no receiver heard it returns the centre.

The estimator that also knows the gains, patterns and terrain is :mod:`heimdall_cli.data.known_world`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from heimdall_cli.data.geo import EARTH_RADIUS_M, haversine_m
from heimdall_cli.data.world import path_loss_db

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

_KM_PER_DEG = np.pi * EARTH_RADIUS_M / 180.0 / 1000.0


def centre_baseline(rx_latlon: NDArray[np.float64], rx_mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """[N, 2] (lat, lon): the mean position of each sample's recorded receivers."""
    w = rx_mask[..., None].astype(np.float64)
    return (rx_latlon * w).sum(1) / np.maximum(w.sum(1), 1.0)


def detection_threshold_db(noise_db: ArrayLike, present_snr_db: float, edge_fraction: float) -> NDArray[np.float64]:
    """The received power (dB) at which the extractor's in-band SNR reaches ``present_snr_db``."""
    excess = max(10.0 ** (present_snr_db / 10.0) - 1.0, 1e-6) * (1.0 - edge_fraction)
    return np.asarray(noise_db, dtype=np.float64) + 10.0 * np.log10(excess)


def rssi_multilateration(
    power_db: ArrayLike,
    present: ArrayLike,
    threshold_db: ArrayLike,
    rx_latlon: ArrayLike,
    rx_mask: ArrayLike,
    world: WorldSettings,
    *,
    censored: bool = True,
    grid_km: float = 5.0,
    chunk: int = 64,
) -> NDArray[np.float64]:
    """[N, 2] (lat, lon) from per-receiver power estimates [N, S] (see the module docstring)."""
    power = np.asarray(power_db, dtype=np.float64)
    mask = np.asarray(rx_mask, dtype=bool)
    thresholds = np.asarray(threshold_db, dtype=np.float64)
    heard = np.asarray(present, dtype=bool) & mask & np.isfinite(power)
    missed = mask & ~heard & np.isfinite(thresholds)  # no noise estimate (power-only receivers): not censored
    rx = np.asarray(rx_latlon, dtype=np.float64)
    power, thresholds = np.where(heard, power, 0.0), np.where(missed, thresholds, 0.0)  # no NaN into the sums
    (lat0, lat1), (lon0, lon1) = world.lat_range, world.lon_range
    mid_lat = 0.5 * (lat0 + lat1)
    n_lat = max(2, int(np.ceil((lat1 - lat0) * _KM_PER_DEG / grid_km)) + 1)
    n_lon = max(2, int(np.ceil((lon1 - lon0) * _KM_PER_DEG * np.cos(np.radians(mid_lat)) / grid_km)) + 1)
    glat, glon = np.meshgrid(np.linspace(lat0, lat1, n_lat), np.linspace(lon0, lon1, n_lon), indexing="ij")
    grid = np.stack([glat.ravel(), glon.ravel()], axis=1)  # [G, 2]

    out = np.empty((len(power), 2))
    for s in range(0, len(power), chunk):
        sl = slice(s, s + chunk)
        p, h, m, th, r = power[sl], heard[sl], missed[sl], thresholds[sl], rx[sl]
        cand = np.broadcast_to(grid, (len(p), *grid.shape))
        cost = _cost(p, h, m, th, _loss(cand, r, world), censored)
        best = grid[np.argmin(cost, axis=1)]  # [n, 2]
        step = grid_km
        for _ in range(3):
            # Local 11×11 grid spanning ± the previous spacing, 5× finer.
            offs = np.linspace(-step, step, 11)
            dn, de = np.meshgrid(offs, offs, indexing="ij")
            cand_lat = np.clip(best[:, None, 0] + dn.ravel() / _KM_PER_DEG, lat0, lat1)
            cos_lat = np.cos(np.radians(best[:, None, 0]))
            cand_lon = np.clip(best[:, None, 1] + de.ravel() / (_KM_PER_DEG * cos_lat), lon0, lon1)
            cand2 = np.stack([cand_lat, cand_lon], axis=-1)  # [n, C, 2]
            cost = _cost(p, h, m, th, _loss(cand2, r, world), censored)
            best = cand2[np.arange(len(p)), np.argmin(cost, axis=1)]
            step /= 5.0
        out[sl] = best
    none = ~heard.any(axis=1)
    out[none] = centre_baseline(rx[none], mask[none])
    return out


def _loss(points: NDArray[np.float64], rx: NDArray[np.float64], world: WorldSettings) -> NDArray[np.float64]:
    """Path loss [n, C, S] from candidate points [n, C, 2] to each sample's receivers [n, S, 2]."""
    d_km = haversine_m(points[..., None, 0], points[..., None, 1], rx[:, None, :, 0], rx[:, None, :, 1]) / 1000.0
    return path_loss_db(d_km, world.frequency_mhz, world.path_loss_exponent)


def _cost(power: NDArray[np.float64], heard: NDArray[np.bool_], missed: NDArray[np.bool_],
          threshold: NDArray[np.float64], loss: NDArray[np.float64], censored: bool) -> NDArray[np.float64]:
    """Sum of squared dB residuals [n, C] with the transmit power at its ML value."""
    w = heard[:, None, :].astype(np.float64)
    ptx_obs = np.where(heard[:, None, :], power[:, None, :] + loss, 0.0)  # implied tx power per link
    ptx = ptx_obs.sum(-1) / np.maximum(w.sum(-1), 1.0)  # [n, C]
    cost = (w * (ptx_obs - ptx[..., None]) ** 2).sum(-1)
    if censored:
        excess = np.maximum(ptx[..., None] - loss - threshold[:, None, :], 0.0)
        cost += (missed[:, None, :] * excess**2).sum(-1)
    return cost


def errors_m(pred_latlon: ArrayLike, true_latlon: ArrayLike) -> NDArray[np.float64]:
    """Great-circle error in metres per sample, for [N, 2] (lat, lon) arrays."""
    p, t = np.asarray(pred_latlon, dtype=np.float64), np.asarray(true_latlon, dtype=np.float64)
    return haversine_m(p[:, 0], p[:, 1], t[:, 0], t[:, 1])


def summary(errors: ArrayLike) -> dict[str, float]:
    """mean, p50, p68 and p95 of errors (same unit as given: metres from :func:`errors_m`)."""
    e = np.asarray(errors, dtype=np.float64)
    p50, p68, p95 = np.percentile(e, [50, 68, 95])
    return {"mean": float(e.mean()), "p50": float(p50), "p68": float(p68), "p95": float(p95)}
