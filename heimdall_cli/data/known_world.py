"""The known-world estimator: an RSSI estimator that knows the synthetic world's fixed parts.

It is not a bound on what can be reached (a trained model beats it on the quickstart):
its prior over positions is uniform over a grid, it ignores the prior on transmit power,
and the fading and estimation errors it models as one Gaussian are not. It shows how far
knowing the gains, patterns and terrain takes a classical estimator.

It knows everything fixed about the world (every station's gain and antenna pattern,
the terrain's shadowing field) and the spread of what is left (fading, noise,
estimation error: the residual σ, measured once on samples simulated from the world
itself). It does not know the transmit power. For each sample it forms the posterior
over the shadowing field's grid (every second node, uniform prior over the region),
with the transmit power at its ML value per node, and returns the posterior mean. The
MAP position would be worse: a rough field has many places that match 7 noisy powers
about as well as the true one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.world import bearing_deg, mean_power_dbm, network, path_loss_db, shadow_field

if TYPE_CHECKING:
    from heimdall_cli.settings import FeatureSettings, WorldSettings

_CALIBRATION_SEED = 987_654_321
_CALIBRATION_SAMPLES = 512


def known_world_multilateration(power_db: NDArray[np.float64], present: NDArray[np.bool_], rx_mask: NDArray[np.bool_],
                           world: WorldSettings, params: FeatureSettings, chunk: int = 16) -> NDArray[np.float64]:
    """[N, 2] (lat, lon) for a fixed-network synthetic world (``world.random_placement`` False)."""
    if world.random_placement or world.version != 2:
        raise ValueError("the oracle needs the fixed network of a version-2 world")
    net = network(world, params.sample_rate_hz / params.fft_size)
    field = shadow_field(world, len(net.receivers))
    _, n_lat, n_lon = field.values.shape
    glat, glon = field.grid()
    keep = ((np.arange(n_lat)[:, None] % 2 == 0) & (np.arange(n_lon)[None, :] % 2 == 0)).ravel()
    glat, glon = glat[keep], glon[keep]
    rx = net.latlon
    d_km = haversine_m(glat[:, None], glon[:, None], rx[:, 0], rx[:, 1]) / 1000.0
    az = bearing_deg(rx[:, 0], rx[:, 1], glat[:, None], glon[:, None])
    e = (-path_loss_db(d_km, world.frequency_mhz, world.path_loss_exponent) + net.gain_db
         + net.pattern_db(az, world.pattern_depth_db) + field.values.reshape(len(rx), -1).T[keep]).astype(np.float32)
    e2 = e * e
    sigma2 = _residual_variance(world.model_dump_json(), params.model_dump_json())
    heard = np.asarray(present, dtype=bool) & np.asarray(rx_mask, dtype=bool)
    power = np.asarray(power_db, dtype=np.float64)
    out = np.empty((len(power), 2))
    for s in range(0, len(power), chunk):
        sl = slice(s, s + chunk)
        w = heard[sl].astype(np.float32)
        p = np.where(heard[sl], power[sl], 0.0).astype(np.float32)
        n_heard = np.maximum(w.sum(1), 1.0)
        # Σw(p - e - o)² at the ML offset o = mean(p - e) over the heard receivers, every node at once.
        sum_p, sum_p2 = (w * p).sum(1), (w * p * p).sum(1)
        cost = sum_p2[:, None] - 2 * ((p * w) @ e.T) + w @ e2.T - (sum_p[:, None] - w @ e.T) ** 2 / n_heard[:, None]
        logw = -(cost - cost.min(axis=1, keepdims=True)) / (2.0 * sigma2)
        weight = np.exp(logw.astype(np.float64))
        weight /= weight.sum(axis=1, keepdims=True)
        out[sl] = np.stack([weight @ glat, weight @ glon], axis=1)
    none = ~heard.any(axis=1)
    out[none] = rx.mean(0)
    return out


@lru_cache(maxsize=4)
def _residual_variance(world_json: str, params_json: str) -> float:
    """σ² of the power residual per heard link at the true position, from samples simulated from the world."""
    from heimdall_cli.data.features import SCALARS
    from heimdall_cli.data.synth_iq import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    world, params = WorldSettings.model_validate_json(world_json), FeatureSettings.model_validate_json(params_json)
    samples = generate(_CALIBRATION_SAMPLES, _CALIBRATION_SEED, world, params)
    net = network(world, params.sample_rate_hz / params.fft_size)
    field = shadow_field(world, len(net.receivers))
    lat, lon = samples.tx_latlon[:, 0], samples.tx_latlon[:, 1]
    expected = mean_power_dbm(world, net, field, lat, lon, np.zeros(len(lat)))
    heard = (samples.scalars[..., SCALARS.index("present")] > 0.5) & samples.rx_mask
    power = samples.scalars[..., SCALARS.index("power_db")].astype(np.float64)
    w = heard.astype(np.float64)
    offset = ((power - expected) * w).sum(1) / np.maximum(w.sum(1), 1.0)
    resid = (power - expected - offset[:, None]) * w
    dof = np.maximum(w.sum(1) - 1.0, 0.0).sum()
    return float((resid**2).sum() / max(dof, 1.0))
