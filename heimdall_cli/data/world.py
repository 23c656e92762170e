"""The synthetic world's fixed parts: propagation, the stations' properties, and the terrain.

- :func:`path_loss_db`: log-distance path loss, free space up to 1 km.
- :class:`Network` (from ``world.seed``): per station a system gain, an antenna pattern
  (omni, or a directional antenna with a cardioid-like pattern of ``pattern_depth_db``
  front-to-back ratio toward a random boresight), a noise floor and an LO error in FFT bins.
- :class:`ShadowField` (from ``world.field_seed``): per station a fixed Gaussian random
  field over the transmitter's position with an exponential correlation
  (σ ``shadowing_db``, decorrelation distance ``shadowing_correlation_m``; Gudmundson
  1991), made by circulant embedding on a grid of half the decorrelation distance and
  read with bilinear interpolation: the same place shadows the same way in every sample.

Everything is deterministic in the world settings and cached per process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.geo import EARTH_RADIUS_M, haversine_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

MIN_DISTANCE_KM = 0.01
_M_PER_DEG = np.pi * EARTH_RADIUS_M / 180.0
_NETWORK_STREAM = 1  # SeedSequence spawn keys of the world's fixed parts (blocks of samples use others)
_FIELD_STREAM = 2


def fspl_1km_db(frequency_mhz: float) -> float:
    """Free-space path loss at 1 km (dB)."""
    return 20.0 * float(np.log10(frequency_mhz)) + 32.44


def path_loss_db(d_km: NDArray[np.float64], frequency_mhz: float, exponent: float) -> NDArray[np.float64]:
    """Log-distance path loss: FSPL(1 km) + 10·n·log10(d_km) beyond 1 km, free space inside."""
    logd = np.log10(np.maximum(d_km, MIN_DISTANCE_KM))
    return fspl_1km_db(frequency_mhz) + np.where(logd > 0, 10.0 * exponent, 20.0) * logd


def bearing_deg(lat1: NDArray[np.float64], lon1: NDArray[np.float64], lat2: NDArray[np.float64],
                lon2: NDArray[np.float64]) -> NDArray[np.float64]:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north (broadcasts)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(y, x)) % 360.0


@dataclass(frozen=True)
class Network:
    """The stations and their fixed properties (one value per station)."""

    receivers: tuple[Receiver, ...]
    gain_db: NDArray[np.float64]
    directional: NDArray[np.bool_]
    boresight_deg: NDArray[np.float64]
    noise_dbm: NDArray[np.float64]  # noise floor in a 12.5 kHz channel
    lo_bins: NDArray[np.int64]  # LO error, in FFT bins of the extractor

    @property
    def latlon(self) -> NDArray[np.float64]:
        return np.array([[r.lat, r.lon] for r in self.receivers])

    def pattern_db(self, azimuth_deg: NDArray[np.float64], depth_db: float) -> NDArray[np.float64]:
        """Antenna gain toward ``azimuth_deg`` [..., S] relative to boresight: 0 for omnis, down to -depth."""
        front = 10.0 ** (-depth_db / 20.0)  # back-lobe amplitude
        c = np.cos(np.radians(azimuth_deg - self.boresight_deg))
        amp = 0.5 * (1 + front) + 0.5 * (1 - front) * c
        return np.where(self.directional, 20.0 * np.log10(np.maximum(amp, 1e-6)), 0.0)


def network(world: WorldSettings, bin_hz: float, receivers: tuple[Receiver, ...] = RECEIVERS) -> Network:
    """The fixed network of ``world`` (its stations' gains, patterns, noise floors and LO errors)."""
    return _network(_key(world), bin_hz, receivers)


@lru_cache(maxsize=8)
def _network(world_json: str, bin_hz: float, receivers: tuple[Receiver, ...]) -> Network:
    w = _world(world_json)
    rng = np.random.default_rng(np.random.SeedSequence(w.seed, spawn_key=(_NETWORK_STREAM,)))
    s = len(receivers)
    gain = w.gain_spread_db * rng.standard_normal(s)
    directional = rng.random(s) < w.directional_fraction
    boresight = rng.uniform(0.0, 360.0, s)
    noise = w.noise_floor_dbm + w.noise_figure_spread_db * rng.standard_normal(s)
    lo_hz = w.lo_error_ppm * 1e-6 * w.frequency_mhz * 1e6 * rng.standard_normal(s)
    return Network(receivers, gain, directional, boresight, noise, np.rint(lo_hz / bin_hz).astype(np.int64))


@dataclass(frozen=True)
class ShadowField:
    """Per station a fixed shadowing field (dB) on a regular lat/lon grid."""

    lat0: float
    lon0: float
    dlat: float
    dlon: float
    values: NDArray[np.float32]  # [S, n_lat, n_lon]

    def at(self, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
        """[N, S] shadowing at the points, bilinear between grid nodes (clamped to the grid)."""
        _, n_lat, n_lon = self.values.shape
        y = np.clip((np.asarray(lat) - self.lat0) / self.dlat, 0, n_lat - 1.000001)
        x = np.clip((np.asarray(lon) - self.lon0) / self.dlon, 0, n_lon - 1.000001)
        i, j = y.astype(np.int64), x.astype(np.int64)
        fy, fx = (y - i)[None], (x - j)[None]
        v = self.values
        top = v[:, i, j] * (1 - fx) + v[:, i, j + 1] * fx
        bottom = v[:, i + 1, j] * (1 - fx) + v[:, i + 1, j + 1] * fx
        return (top * (1 - fy) + bottom * fy).T.astype(np.float64)

    def grid(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Latitudes and longitudes of every grid node, flattened (row-major)."""
        _, n_lat, n_lon = self.values.shape
        lat, lon = np.meshgrid(self.lat0 + self.dlat * np.arange(n_lat), self.lon0 + self.dlon * np.arange(n_lon),
                               indexing="ij")
        return lat.ravel(), lon.ravel()


def shadow_field(world: WorldSettings, n_stations: int) -> ShadowField:
    """The terrain of ``world`` (``field_seed``) for ``n_stations`` stations."""
    return _field(_key(world), n_stations)


@lru_cache(maxsize=4)
def _field(world_json: str, n_stations: int) -> ShadowField:
    w = _world(world_json)
    (lat0, lat1), (lon0, lon1) = w.lat_range, w.lon_range
    step_m = w.shadowing_correlation_m / 2.0
    dlat = step_m / _M_PER_DEG
    dlon = step_m / (_M_PER_DEG * np.cos(np.radians(0.5 * (lat0 + lat1))))
    n_lat, n_lon = int(np.ceil((lat1 - lat0) / dlat)) + 2, int(np.ceil((lon1 - lon0) / dlon)) + 2
    # Circulant embedding of the exponential covariance on a grid padded by 16 decorrelation distances.
    pad = 32
    ny, nx = _fft_size(n_lat + pad), _fft_size(n_lon + pad)
    dy = np.minimum(np.arange(ny), ny - np.arange(ny)) * step_m
    dx = np.minimum(np.arange(nx), nx - np.arange(nx)) * step_m
    cov = np.exp(-np.hypot(dy[:, None], dx[None, :]) / w.shadowing_correlation_m)
    amplitude = np.sqrt(np.maximum(np.fft.rfft2(cov).real, 0.0))
    rng = np.random.default_rng(np.random.SeedSequence(w.field_seed, spawn_key=(_FIELD_STREAM,)))
    values = np.empty((n_stations, n_lat, n_lon), dtype=np.float32)
    for s in range(n_stations):
        white = rng.standard_normal((ny, nx))
        field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(ny, nx))[:n_lat, :n_lon]
        values[s] = (w.shadowing_db * (field - field.mean()) / max(field.std(), 1e-12)).astype(np.float32)
    return ShadowField(lat0, lon0, dlat, dlon, values)


def mean_power_dbm(world: WorldSettings, net: Network, field: ShadowField | None, tx_lat: NDArray[np.float64],
                   tx_lon: NDArray[np.float64], tx_power_dbm: NDArray[np.float64],
                   rx_latlon: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """[N, S] mean received power: transmit power - path loss + station gain + pattern + shadowing field."""
    rx = net.latlon if rx_latlon is None else rx_latlon
    d_km = haversine_m(tx_lat[:, None], tx_lon[:, None], rx[..., 0], rx[..., 1]) / 1000.0
    az = bearing_deg(rx[..., 0], rx[..., 1], tx_lat[:, None], tx_lon[:, None])
    power = tx_power_dbm[:, None] - path_loss_db(d_km, world.frequency_mhz, world.path_loss_exponent)
    power = power + net.gain_db + net.pattern_db(az, world.pattern_depth_db)
    if field is not None:
        power = power + field.at(tx_lat, tx_lon)
    return power


def ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float, complex_: bool = False) -> NDArray:
    """Stationary unit-variance AR(1) along the last axis."""
    w = rng.standard_normal((*shape, 2) if complex_ else shape)
    if complex_:
        w = (w[..., 0] + 1j * w[..., 1]) / np.sqrt(2.0)
    x = np.empty_like(w)
    x[..., 0] = w[..., 0]
    innov = np.sqrt(1.0 - rho * rho)
    for t in range(1, shape[-1]):
        x[..., t] = rho * x[..., t - 1] + innov * w[..., t]
    return x


def _key(world: WorldSettings) -> str:
    return json.dumps(world.model_dump(mode="json"), sort_keys=True)


def _world(world_json: str) -> WorldSettings:
    from heimdall_cli.settings import WorldSettings

    return WorldSettings.model_validate(json.loads(world_json))


def _fft_size(n: int) -> int:
    """The next size with only factors 2, 3 and 5 (fast FFTs)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
