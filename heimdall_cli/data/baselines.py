"""Classical baselines and localization error metrics (metres, haversine).

- :func:`centre_baseline`: always the network centre.
- :func:`rssi_multilateration`: maximum-likelihood fit of (transmitter position, transmit
  power) to the received powers under the generator's own path-loss model, with
  Gaussian (log-normal) errors. For a fixed position the ML transmit power is the
  mean of ``P_rx + L(d)`` over the receivers that heard, so the fit is a 2-D search
  of the residual variance: a grid over the world's region (~5 km), then three levels
  of finer local grids (5× each, to ~40 m), all vectorised over samples. Receivers
  that heard nothing are used as censored observations: where the fitted model
  predicts them above the noise floor, the excess (dB) is added as a squared
  residual. The search is limited to the region transmitters are drawn from (ML
  under the uniform position prior). With no receiver heard it returns the centre.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from heimdall_cli.data.geo import EARTH_RADIUS_M, haversine_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver, network_centre
from heimdall_cli.data.synth import path_loss_db

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

_KM_PER_DEG = np.pi * EARTH_RADIUS_M / 180.0 / 1000.0


def centre_baseline(n: int, receivers: tuple[Receiver, ...] = RECEIVERS) -> NDArray[np.float64]:
    """[n, 2] (lat, lon): the network centre for every sample."""
    return np.tile(np.array(network_centre(receivers), dtype=np.float64), (n, 1))


def rssi_multilateration(
    rx_power_dbm: ArrayLike,
    world: WorldSettings,
    receivers: tuple[Receiver, ...] = RECEIVERS,
    *,
    censored: bool = True,
    grid_km: float = 5.0,
    chunk: int = 128,
) -> NDArray[np.float64]:
    """[N, 2] predicted (lat, lon) from ``rx_power_dbm`` [N, R] (NaN = heard nothing)."""
    power = np.asarray(rx_power_dbm, dtype=np.float64)
    heard = np.isfinite(power)
    rx = np.array([[r.lat, r.lon] for r in receivers])
    (lat0, lat1), (lon0, lon1) = world.lat_range, world.lon_range
    mid_lat = 0.5 * (lat0 + lat1)

    # Coarse grid over the region.
    n_lat = max(2, int(np.ceil((lat1 - lat0) * _KM_PER_DEG / grid_km)) + 1)
    n_lon = max(2, int(np.ceil((lon1 - lon0) * _KM_PER_DEG * np.cos(np.radians(mid_lat)) / grid_km)) + 1)
    glat, glon = np.meshgrid(np.linspace(lat0, lat1, n_lat), np.linspace(lon0, lon1, n_lon), indexing="ij")
    grid = np.stack([glat.ravel(), glon.ravel()], axis=1)  # [G, 2]
    grid_loss = _loss(grid[None], rx, world)[0]  # [G, R]

    out = np.empty((len(power), 2))
    for s in range(0, len(power), chunk):
        p, h = power[s : s + chunk], heard[s : s + chunk]
        cost = _cost(p, h, np.broadcast_to(grid_loss, (len(p), *grid_loss.shape)), world, censored)
        best = grid[np.argmin(cost, axis=1)]  # [n, 2]
        step = grid_km
        for _ in range(3):
            # Local 11×11 grid spanning ± the previous spacing, 5× finer.
            offs = np.linspace(-step, step, 11)
            dn, de = np.meshgrid(offs, offs, indexing="ij")
            cand_lat = np.clip(best[:, None, 0] + dn.ravel() / _KM_PER_DEG, lat0, lat1)
            cos_lat = np.cos(np.radians(best[:, None, 0]))
            cand_lon = np.clip(best[:, None, 1] + de.ravel() / (_KM_PER_DEG * cos_lat), lon0, lon1)
            cand = np.stack([cand_lat, cand_lon], axis=-1)  # [n, C, 2]
            cost = _cost(p, h, _loss(cand, rx, world), world, censored)
            best = cand[np.arange(len(p)), np.argmin(cost, axis=1)]
            step /= 5.0
        out[s : s + chunk] = best
    out[~heard.any(axis=1)] = network_centre(receivers)
    return out


def _loss(points: NDArray[np.float64], rx: NDArray[np.float64], world: WorldSettings) -> NDArray[np.float64]:
    """Path loss [n, C, R] from candidate points [n, C, 2] to receivers [R, 2]."""
    d_km = haversine_m(points[..., None, 0], points[..., None, 1], rx[:, 0], rx[:, 1]) / 1000.0
    return path_loss_db(d_km, world.frequency_mhz, world.path_loss_exponent)


def _cost(
    power: NDArray[np.float64],
    heard: NDArray[np.bool_],
    loss: NDArray[np.float64],
    world: WorldSettings,
    censored: bool,
) -> NDArray[np.float64]:
    """Sum of squared dB residuals [n, C] with the transmit power at its ML value."""
    w = heard[:, None, :].astype(np.float64)
    ptx_obs = np.where(heard[:, None, :], power[:, None, :] + loss, 0.0)  # implied tx power per link
    ptx = ptx_obs.sum(-1) / np.maximum(w.sum(-1), 1.0)  # [n, C]
    cost = (w * (ptx_obs - ptx[..., None]) ** 2).sum(-1)
    if censored:
        excess = np.maximum(ptx[..., None] - loss - world.noise_floor_dbm, 0.0)
        cost += ((1.0 - w) * excess**2).sum(-1)
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
