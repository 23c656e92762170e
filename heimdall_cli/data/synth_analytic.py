"""Synthetic world v1 (analytic band energies, no IQ): what the 7 WebSDR receivers hear of one NFM transmission.

Kept so that datasets made before IQ synthesis still train (``world.version: 1``);
:mod:`heimdall_cli.data.synth_iq` is the current world.

Per sample (one transmission):

- transmitter uniform in ``world.lat_range`` × ``world.lon_range`` (degrees), power
  uniform in ``world.tx_power_dbm``;
- per link, log-distance path loss :func:`path_loss_db` (free space up to 1 km, then
  exponent ``world.path_loss_exponent``), log-normal shadowing σ = ``world.shadowing_db``;
- small-scale fading over the ``n_frames`` frames: a line-of-sight link (probability
  ``exp(-d / 50 km)``) is Rician with K = 12 dB − 0.1 dB/km (floored at 0 dB), otherwise
  Rayleigh; the scattered part is an AR(1) complex Gaussian, correlation 0.8 frame to
  frame (slow movement). Mean fading power is 1, so shadowing and path loss set the mean;
- a receiver whose mean received power over the frames is below the noise floor hears
  nothing (squelch closed): its spectrogram is noise only and ``rx_power_dbm`` is NaN.

Spectrograms are an *analytic* model of log-mel band energy, not FFTs of simulated
IQ: the view is the 12 kHz complex baseband around the carrier folded to |offset|
0–6 kHz, split into ``n_mels`` mel-spaced rectangular bands. By Woodward's theorem
(quasi-static FM) the power spectrum of an FM signal follows the distribution of its
instantaneous frequency; a voice-driven deviation is modelled as a Gaussian with
std = 60 Hz + deviation × syllabic envelope (an AR(1) talk-spurt process). FM has a
constant envelope, so each frame's total signal energy is the received power of that
frame; noise is flat over the 12.5 kHz channel. Band energies get the fluctuation of
a periodogram (log of a Gamma with one degree of freedom per FFT bin in the band,
moment-matched by a Gaussian in dB). Values are dB relative to ``REF_DBM``.

Randomness: samples are made in fixed blocks of ``BLOCK_SIZE``; block ``b`` draws
from ``SeedSequence(seed, spawn_key=(b,))`` (= ``SeedSequence(seed).spawn(b + 1)[b]``)
in a fixed order and shape. Sample ``i`` is therefore identical whatever ``start``
and ``n`` it is requested with (asking for one sample computes its whole block).
Bytes are identical for the same seed, numpy version and platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.special import digamma, ndtr, polygamma

from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver
from heimdall_cli.data.samples import FLOOR_DB, Samples
from heimdall_cli.data.world import ar1, path_loss_db

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

SYNTH_VERSION = 1
BLOCK_SIZE = 256
REF_DBM = -120.0  # spectrogram dB reference, fixed across worlds
CHANNEL_HZ = 12_500.0
VIEW_HZ = 6_000.0  # 12 kHz complex baseband, folded to |offset|
BIN_HZ = 12_000.0 / 256  # resolution of the notional FFT behind the band statistics
CARRIER_WIDTH_HZ = 60.0
FADING_RHO = 0.8
VOICE_RHO = 0.7
LOS_SCALE_KM = 50.0
_DB = 10.0 / np.log(10.0)


@dataclass
class SynthBatch:
    """N samples. Receivers are in :data:`RECEIVERS` order.

    ``rx_power_dbm`` is the mean signal power over the frames (noise excluded), NaN
    where ``heard`` is False.
    """

    spectrograms: NDArray[np.float32]  # [N, R, n_mels, n_frames], dB re REF_DBM
    rx_power_dbm: NDArray[np.float32]  # [N, R]
    tx_latlon: NDArray[np.float64]  # [N, 2] degrees
    heard: NDArray[np.bool_]  # [N, R]
    tx_power_dbm: NDArray[np.float32]  # [N]

    def __len__(self) -> int:
        return len(self.tx_latlon)

    @staticmethod
    def fields() -> tuple[str, ...]:
        return ("spectrograms", "rx_power_dbm", "tx_latlon", "heard", "tx_power_dbm")

    @classmethod
    def empty(cls, n: int, n_receivers: int, n_mels: int, n_frames: int) -> SynthBatch:
        return cls(
            np.empty((n, n_receivers, n_mels, n_frames), np.float32),
            np.empty((n, n_receivers), np.float32),
            np.empty((n, 2), np.float64),
            np.empty((n, n_receivers), np.bool_),
            np.empty((n,), np.float32),
        )


def mel_edges_hz(n_mels: int) -> NDArray[np.float64]:
    """Edges of ``n_mels`` mel-spaced bands over 0–``VIEW_HZ``."""
    top = 2595.0 * np.log10(1.0 + VIEW_HZ / 700.0)
    return 700.0 * (10.0 ** (np.linspace(0.0, top, n_mels + 1) / 2595.0) - 1.0)


def generate(
    n: int, seed: int, world: WorldSettings, start: int = 0, receivers: tuple[Receiver, ...] = RECEIVERS
) -> SynthBatch:
    """Samples ``start`` … ``start + n - 1`` of the world ``world`` with seed ``seed``."""
    if n < 0 or start < 0:
        raise ValueError("n and start must be >= 0")
    out = SynthBatch.empty(n, len(receivers), world.n_mels, world.n_frames)
    pos = 0
    for block in range(start // BLOCK_SIZE, (start + n - 1) // BLOCK_SIZE + 1 if n else 0):
        b0 = block * BLOCK_SIZE
        lo, hi = max(start, b0) - b0, min(start + n, b0 + BLOCK_SIZE) - b0
        full = _block(seed, block, world, receivers)
        for name in SynthBatch.fields():
            getattr(out, name)[pos : pos + hi - lo] = getattr(full, name)[lo:hi]
        pos += hi - lo
    return out


def _block(seed: int, block: int, world: WorldSettings, receivers: tuple[Receiver, ...]) -> SynthBatch:
    """One full block; every draw has a fixed shape and order so samples never shift."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))
    b, r, m, f = BLOCK_SIZE, len(receivers), world.n_mels, world.n_frames

    lat = rng.uniform(*world.lat_range, size=b)
    lon = rng.uniform(*world.lon_range, size=b)
    ptx = rng.uniform(*world.tx_power_dbm, size=b)
    shadow = world.shadowing_db * rng.standard_normal((b, r))
    los_draw = rng.random((b, r))
    los_phase = np.exp(2j * np.pi * rng.random((b, r)))
    scatter = ar1(rng, (b, r, f), FADING_RHO, complex_=True)
    envelope = ar1(rng, (b, f), VOICE_RHO)
    loudness = rng.uniform(0.5, 1.0, size=(b, 1))
    z_band = rng.standard_normal((b, r, m, f), dtype=np.float32)  # the big draw: float32 halves its cost

    # Link budget.
    rx_lat = np.array([x.lat for x in receivers])
    rx_lon = np.array([x.lon for x in receivers])
    d_km = haversine_m(lat[:, None], lon[:, None], rx_lat, rx_lon) / 1000.0
    mean_dbm = ptx[:, None] - path_loss_db(d_km, world.frequency_mhz, world.path_loss_exponent) + shadow

    # Small-scale fading, unit mean power: Rician (LOS, K falls with distance) or Rayleigh.
    los = los_draw < np.exp(-d_km / LOS_SCALE_KM)
    k = np.where(los, 10.0 ** (np.maximum(12.0 - 0.1 * d_km, 0.0) / 10.0), 0.0)
    h = np.sqrt(k / (k + 1))[..., None] * los_phase[..., None] + np.sqrt(1 / (k + 1))[..., None] * scatter
    frame_mw = 10.0 ** (mean_dbm / 10.0)[..., None] * (h.real**2 + h.imag**2)  # [b, r, f]

    noise_mw = 10.0 ** (world.noise_floor_dbm / 10.0)
    power_mw = frame_mw.mean(axis=-1)
    heard = power_mw > noise_mw
    frame_mw *= heard[..., None]  # squelch closed: noise only

    # FM spectrum shape per frame (same for all receivers): folded Gaussian (Woodward).
    edges = mel_edges_hz(m)
    deviation_hz = CARRIER_WIDTH_HZ + 2000.0 * loudness / (1.0 + np.exp(-2.0 * envelope + 0.5))  # [b, f]
    cdf = ndtr(edges[None, :, None] / deviation_hz[:, None, :])  # [b, m+1, f]
    frac = 2.0 * np.diff(cdf, axis=1)  # [b, m, f]
    band_hz = np.diff(edges)
    noise_band_mw = noise_mw * 2.0 * band_hz / CHANNEL_HZ  # both sides of the carrier
    energy = frame_mw[:, :, None, :] * frac[:, None, :, :] + noise_band_mw[None, None, :, None]

    # Periodogram fluctuation: log Gamma(k, 1/k), k = FFT bins in the band, as a Gaussian in dB.
    dof = np.maximum(2.0 * band_hz / BIN_HZ, 1.0)
    mu_db = (_DB * (digamma(dof) - np.log(dof)) - REF_DBM).astype(np.float32)
    sd_db = (_DB * np.sqrt(polygamma(1, dof))).astype(np.float32)
    spec = np.log(energy.astype(np.float32))
    spec *= np.float32(_DB)
    spec += mu_db[:, None] + sd_db[:, None] * z_band

    rx_dbm = np.where(heard, _DB * np.log(np.where(heard, power_mw, 1.0)), np.nan)
    return SynthBatch(
        spectrograms=spec,
        rx_power_dbm=rx_dbm.astype(np.float32),
        tx_latlon=np.stack([lat, lon], axis=1),
        heard=heard,
        tx_power_dbm=ptx.astype(np.float32),
    )


def to_samples(batch: SynthBatch, world: WorldSettings,
                  receivers: tuple[Receiver, ...] = RECEIVERS) -> Samples:
    """A version-1 batch in the current layout: its powers become the scalars, every slot recorded."""
    n, r = batch.heard.shape
    power = np.where(batch.heard, batch.rx_power_dbm, FLOOR_DB).astype(np.float32)
    noise = np.full((n, r), world.noise_floor_dbm, np.float32)
    scalars = np.zeros((n, r, len(SCALARS)), np.float32)
    scalars[..., 0], scalars[..., 1] = power, noise
    scalars[..., 2] = np.where(batch.heard, power - noise, 0.0)
    scalars[..., 4] = batch.heard
    rx = np.broadcast_to(np.array([[x.lat, x.lon] for x in receivers]), (n, r, 2)).copy()
    return Samples(batch.spectrograms, scalars, rx, np.ones((n, r), np.bool_), batch.tx_latlon,
                   np.zeros(n, np.float32), np.full(n, world.frequency_mhz * 1e6), batch.tx_power_dbm)
