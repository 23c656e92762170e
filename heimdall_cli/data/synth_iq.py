"""Synthetic world v2: complex baseband IQ of NFM transmissions, through the one feature extractor.

Per sample (one transmission), over ``frames × fft_size`` samples at the extractor's rate:

- the transmitter: uniform in the world's region, power uniform in ``tx_power_dbm``, a
  frequency error (σ ``tx_error_ppm``), voice-like FM (band-limited 300-3000 Hz noise with
  a syllabic envelope, ``peak_deviation_hz``) plus a CTCSS tone (``ctcss_deviation_hz``,
  one of the 33 EIA tones);
- per receiver: the mean power of :func:`~heimdall_cli.data.world.mean_power_dbm` (path
  loss, the station's gain and antenna pattern, the terrain's shadowing field), fading
  over the frames (Rician with line of sight, probability ``exp(-d / 50 km)`` and
  K = 12 dB - 0.1 dB/km, else Rayleigh; AR(1) with correlation 0.8 frame to frame), the
  station's LO error (whole FFT bins), its noise floor, and ``dropout_rate`` of stations off.

The IQ of receiver r in frame t is ``a·h[t]·s[t]·exp(j2π k_r m / F) + n[t]`` (s the
transmitted frame, F = fft_size). The STFT is linear, the fading constant over a frame
and k_r an integer, so the generator builds each frame's FFT as
``a·h[t]·roll(FFT(s[t]), k_r) + FFT(n[t])`` (white noise has a white FFT) and hands it
to :func:`~heimdall_cli.data.features.from_spectra`: one FFT per transmission instead of
one per receiver, and exactly what :func:`~heimdall_cli.data.features.extract` computes
from the IQ that :func:`generate_iq` returns (the inverse FFT of the same frames).

Randomness: fixed blocks of :data:`BLOCK_SIZE` samples; block b draws from
``SeedSequence(seed, spawn_key=(b,))`` in a fixed order, so sample i is the same whatever
slice it is asked for in. The world's fixed parts come from ``world.seed`` and
``world.field_seed`` (:mod:`heimdall_cli.data.world`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

from heimdall_cli.data.features import SCALARS, from_spectra, spectra
from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver
from heimdall_cli.data.samples import FLOOR_DB, Samples
from heimdall_cli.data.world import Network, ar1, mean_power_dbm, network, shadow_field

if TYPE_CHECKING:
    from heimdall_cli.settings import FeatureSettings, WorldSettings

VERSION = 2
BLOCK_SIZE = 256
FULL_SCALE_DBM = -50.0  # receiver digital scaling: 0 dBFS; the mean noise floor sits near -70 dBFS
CHANNEL_HZ = 12_500.0
FADING_RHO = 0.8
LOS_SCALE_KM = 50.0
VOICE_BAND_HZ = (300.0, 3000.0)
#: EIA/TIA-603 CTCSS tones (Hz).
CTCSS_TONES = (67.0, 71.9, 74.4, 77.0, 79.7, 82.5, 85.4, 88.5, 91.5, 94.8, 97.4, 100.0, 103.5, 107.2, 110.9,
               114.8, 118.8, 123.0, 127.3, 131.8, 136.5, 141.3, 146.2, 151.4, 156.7, 162.2, 167.9, 173.8,
               179.9, 186.2, 192.8, 203.5, 210.7)


def generate(n: int, seed: int, world: WorldSettings, params: FeatureSettings, start: int = 0,
             receivers: tuple[Receiver, ...] = RECEIVERS) -> Samples:
    """Samples ``start`` … ``start + n - 1`` of ``world`` with transmission seed ``seed``."""
    return _blocks(n, seed, world, params, start, receivers, keep_iq=False)[0]


def generate_iq(n: int, seed: int, world: WorldSettings, params: FeatureSettings, start: int = 0,
                receivers: tuple[Receiver, ...] = RECEIVERS) -> tuple[Samples, NDArray[np.complex64]]:
    """The same samples and the IQ [n, S, frames × fft_size] behind them (complex64, full scale 1)."""
    samples, iq = _blocks(n, seed, world, params, start, receivers, keep_iq=True)
    assert iq is not None
    return samples, iq


def slots(world: WorldSettings, receivers: tuple[Receiver, ...] = RECEIVERS) -> int:
    """Station slots per sample: the network's stations, or the most a random placement draws."""
    return world.receivers[1] if world.random_placement else len(receivers)


def _blocks(n: int, seed: int, world: WorldSettings, params: FeatureSettings, start: int,
            receivers: tuple[Receiver, ...], keep_iq: bool) -> tuple[Samples, NDArray[np.complex64] | None]:
    if n < 0 or start < 0:
        raise ValueError("n and start must be >= 0")
    parts, iqs = [], []
    for block in range(start // BLOCK_SIZE, (start + n - 1) // BLOCK_SIZE + 1 if n else 0):
        b0 = block * BLOCK_SIZE
        lo, hi = max(start, b0) - b0, min(start + n, b0 + BLOCK_SIZE) - b0
        samples, iq = _block(seed, block, world, params, receivers, keep_iq)
        parts.append(samples.take(slice(lo, hi)))
        if iq is not None:
            iqs.append(iq[lo:hi])
    if not parts:
        return Samples.empty(0, slots(world, receivers), params.bands, params.frames, len(SCALARS)), (
            np.zeros((0, slots(world, receivers), params.frames * params.fft_size), np.complex64) if keep_iq else None)
    return Samples.concat(parts), (np.concatenate(iqs) if keep_iq else None)


def _block(seed: int, block: int, world: WorldSettings, params: FeatureSettings, receivers: tuple[Receiver, ...],
           keep_iq: bool) -> tuple[Samples, NDArray[np.complex64] | None]:
    """One full block; every draw has a fixed shape and order so samples never shift."""
    sequence = np.random.SeedSequence(seed, spawn_key=(block,))
    rng = np.random.default_rng(sequence)
    gen = torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0] % (2**63)))
    b, s, t_frames, f = BLOCK_SIZE, slots(world, receivers), params.frames, params.fft_size
    fs = params.sample_rate_hz
    bin_hz = fs / f

    # The transmission.
    tx_lat = rng.uniform(*world.lat_range, size=b)
    tx_lon = rng.uniform(*world.lon_range, size=b)
    tx_power = rng.uniform(*world.tx_power_dbm, size=b)
    carrier_hz = world.frequency_mhz * 1e6
    tx_offset = world.tx_error_ppm * 1e-6 * carrier_hz * rng.standard_normal(b)
    tone = np.asarray(CTCSS_TONES)[rng.integers(0, len(CTCSS_TONES), size=b)]
    tone_phase = rng.uniform(0, 2 * np.pi, size=b)
    loudness = rng.uniform(0.5, 1.0, size=b)
    syllables = ar1(rng, (b, t_frames), 0.7)

    # The receivers: the fixed network, or a random placement per sample.
    net, rx_latlon, mask, field = _receivers(rng, world, bin_hz, receivers, b)
    off = rng.random((b, s)) < world.dropout_rate
    mask &= ~off
    mean_dbm = mean_power_dbm(world, net, field, tx_lat, tx_lon, tx_power, rx_latlon=rx_latlon)
    if field is None:  # random placement: no terrain to remember, shadowing drawn per link
        mean_dbm = mean_dbm + world.shadowing_db * rng.standard_normal((b, s))
    d_km = haversine_m(tx_lat[:, None], tx_lon[:, None], rx_latlon[..., 0], rx_latlon[..., 1]) / 1000.0
    los = rng.random((b, s)) < np.exp(-d_km / LOS_SCALE_KM)
    los_phase = rng.uniform(0, 2 * np.pi, size=(b, s))
    scatter = ar1(rng, (b, s, t_frames), FADING_RHO, complex_=True)
    k = np.where(los, 10.0 ** (np.maximum(12.0 - 0.1 * d_km, 0.0) / 10.0), 0.0)
    fading = (np.sqrt(k / (k + 1))[..., None] * np.exp(1j * los_phase)[..., None]
              + np.sqrt(1 / (k + 1))[..., None] * scatter)  # [b, s, t], mean power 1
    noise_dbm = net.noise_dbm + 10 * np.log10(fs / CHANNEL_HZ)  # over the whole band the extractor sees

    # The transmitted frames, then every receiver's FFT frames.
    z = _transmitted_frames(gen, b, t_frames, f, fs, tx_offset, tone, tone_phase, loudness, syllables,
                            world.peak_deviation_hz, world.ctcss_deviation_hz)  # [b, t, f] complex
    amp = torch.from_numpy((10.0 ** ((mean_dbm - FULL_SCALE_DBM) / 20.0))[..., None] * fading).to(torch.complex64)
    sigma = torch.from_numpy(np.broadcast_to(np.sqrt(f * 10.0 ** ((noise_dbm - FULL_SCALE_DBM) / 10.0) / 2.0),
                                             (b, s)).astype(np.float32))
    noise = torch.empty((b, s, t_frames, f, 2)).normal_(generator=gen).mul_(sigma[..., None, None, None])
    x = torch.view_as_complex(noise)
    lo = np.broadcast_to(net.lo_bins, (b, s))
    for k in np.unique(lo):  # the LO error shifts the spectrum by whole bins: a roll of the shared FFT
        shifted = torch.roll(z, int(k), dims=-1) if k else z
        hit = lo == k
        for col in np.flatnonzero(hit.any(axis=0)):
            if hit[:, col].all():  # a fixed network: the whole station column
                x[:, col].addcmul_(shifted, amp[:, col, :, None])
            else:
                rows = torch.from_numpy(np.flatnonzero(hit[:, col]))
                x[rows, col] += shifted[rows] * amp[rows, col, :, None]
    iq = torch.fft.ifft(x, dim=-1).reshape(b, s, t_frames * f) if keep_iq or params.window != "rect" else None
    spec, scalars = from_spectra(x if params.window == "rect" else spectra(iq, params), params)

    out = Samples(spec.numpy(), scalars.numpy(), rx_latlon, mask, np.stack([tx_lat, tx_lon], axis=1),
                  np.zeros(b, np.float32), carrier_hz + tx_offset, tx_power.astype(np.float32))
    out.spectrograms[~mask] = FLOOR_DB
    out.scalars[~mask] = 0.0
    return out, (iq.numpy() if iq is not None and keep_iq else None)


def _receivers(rng: np.random.Generator, world: WorldSettings, bin_hz: float, receivers: tuple[Receiver, ...],
               b: int) -> tuple[Network, NDArray[np.float64], NDArray[np.bool_], object]:
    """(network properties [.., S], positions [b, S, 2], slots in use [b, S], terrain or None)."""
    if not world.random_placement:
        net = network(world, bin_hz, receivers)
        latlon = np.broadcast_to(net.latlon, (b, len(receivers), 2)).copy()
        return net, latlon, np.ones((b, len(receivers)), np.bool_), shadow_field(world, len(receivers))
    s = world.receivers[1]
    count = rng.integers(world.receivers[0], world.receivers[1] + 1, size=b)
    latlon = np.stack([rng.uniform(*world.lat_range, size=(b, s)), rng.uniform(*world.lon_range, size=(b, s))], -1)
    carrier = world.frequency_mhz * 1e6
    net = Network(
        receivers=tuple(Receiver(f"slot-{i}", 0.0, 0.0, 0.0) for i in range(s)),
        gain_db=world.gain_spread_db * rng.standard_normal((b, s)),
        directional=rng.random((b, s)) < world.directional_fraction,
        boresight_deg=rng.uniform(0.0, 360.0, (b, s)),
        noise_dbm=world.noise_floor_dbm + world.noise_figure_spread_db * rng.standard_normal((b, s)),
        lo_bins=np.rint(world.lo_error_ppm * 1e-6 * carrier * rng.standard_normal((b, s)) / bin_hz).astype(np.int64),
    )
    return net, latlon, np.arange(s)[None, :] < count[:, None], None


def _transmitted_frames(gen: torch.Generator, b: int, t_frames: int, f: int, fs: float, offset_hz: NDArray,
                        tone_hz: NDArray, tone_phase: NDArray, loudness: NDArray, syllables: NDArray,
                        peak_dev: float, ctcss_dev: float) -> torch.Tensor:
    """FFT [b, frames, f] of the transmitted NFM frames (unit power)."""
    n = t_frames * f
    audio = torch.randn((b, n), generator=gen)
    spectrum = torch.fft.rfft(audio, dim=-1)
    hz = torch.fft.rfftfreq(n, d=1.0 / fs)
    spectrum *= ((hz >= VOICE_BAND_HZ[0]) & (hz <= VOICE_BAND_HZ[1])).to(spectrum.dtype)
    voice = torch.fft.irfft(spectrum, n=n, dim=-1)
    voice = (voice / voice.std(dim=-1, keepdim=True).clamp_min(1e-12)).clamp_(-3.0, 3.0)
    envelope = torch.from_numpy((loudness[:, None] / (1.0 + np.exp(-2.0 * syllables + 0.5))).astype(np.float32))
    t = torch.arange(n, dtype=torch.float32) / fs
    tone = torch.sin(2 * math.pi * torch.from_numpy(tone_hz.astype(np.float32))[:, None] * t
                     + torch.from_numpy(tone_phase.astype(np.float32))[:, None])
    inst_hz = voice.mul_(envelope.repeat_interleave(f, dim=1)).mul_(peak_dev / 3.0)
    inst_hz.add_(tone, alpha=ctcss_dev).add_(torch.from_numpy(offset_hz.astype(np.float32))[:, None])
    phase = torch.cumsum(inst_hz, dim=1).mul_(2 * math.pi / fs)
    signal = torch.polar(torch.ones((), dtype=torch.float32), phase)
    return torch.fft.fft(signal.view(b, t_frames, f), dim=-1)
