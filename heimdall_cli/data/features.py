"""The one feature extractor: complex baseband IQ -> what the model (and the classical estimator) reads.

Per receiver and recording:

- a **spectrogram** [bands, frames]: ``frames`` STFT frames of ``fft_size`` samples, spread
  evenly over the recording (a strided STFT: a 1-second chunk is sampled over its whole
  length without transforming every sample), each frame's power per FFT bin summed into
  ``bands`` mel-spaced bands over |offset from the carrier| (both sides), in dB relative
  to full scale (dBFS: |x| = 1 is 0 dB);
- **scalars** (:data:`SCALARS`), from the frame-averaged power spectrum as Heimdall's
  acquisition computes them: the noise is the mean power of the outer
  ``noise_edge_fraction`` of the bins, the SNR the in-band mean over that, the received
  power the total minus the noise, the frequency offset the spectral peak within ±fs/4
  (parabolic interpolation), and ``present`` whether the SNR clears ``present_snr_db``.

Recorded IQ goes through :func:`extract`; the synthetic generator builds each frame's
FFT directly and calls :func:`from_spectra`, the same code after the FFT (a test checks
that ``extract`` of the generator's IQ gives its features). Everything is vectorised
over leading axes (samples, receivers) with torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from heimdall_cli.settings import FeatureSettings

#: The per-receiver scalar features, in order.
SCALARS = ("power_db", "noise_db", "snr_db", "offset_hz", "present")
RATE_TOLERANCE = 0.05  # Heimdall stores 12500 for WebSDR IQ that is about 12 kHz
_TINY = 1e-12  # -120 dBFS: the floor of every log


class BadRecording(ValueError):
    """IQ the extractor cannot use (too short, NaN/Inf, wrong rate); the caller names the file."""


@dataclass
class Features:
    """What the extractor computes for ``[..., samples]`` IQ."""

    spectrogram: NDArray[np.float32]  # [..., bands, frames] dBFS
    scalars: NDArray[np.float32]  # [..., len(SCALARS)]


def params_dict(params: FeatureSettings) -> dict[str, Any]:
    """The parameters as they are stored in manifests, logged, and compared."""
    return params.model_dump(mode="json")


def check_rate(rate_hz: float, params: FeatureSettings) -> None:
    """BadRecording unless ``rate_hz`` is the extractor's rate within :data:`RATE_TOLERANCE`."""
    if not np.isfinite(rate_hz) or abs(rate_hz / params.sample_rate_hz - 1.0) > RATE_TOLERANCE:
        raise BadRecording(f"sample rate {rate_hz:g} Hz does not match the extractor's "
                           f"{params.sample_rate_hz:g} Hz (±{RATE_TOLERANCE:.0%})")


def frame_starts(n_samples: int, params: FeatureSettings) -> NDArray[np.int64]:
    """Start index of each STFT frame: ``frames`` windows spread evenly over the recording."""
    span = n_samples - params.fft_size
    if span < 0:
        raise BadRecording(f"{n_samples} samples are fewer than one frame ({params.fft_size})")
    return (np.arange(params.frames, dtype=np.int64) * span) // max(1, params.frames - 1)


def spectra(iq: torch.Tensor, params: FeatureSettings) -> torch.Tensor:
    """The STFT: complex [..., frames, fft_size] (windowed, not normalised) of IQ [..., samples]."""
    starts = torch.from_numpy(frame_starts(iq.shape[-1], params))
    idx = starts[:, None] + torch.arange(params.fft_size)
    frames = iq[..., idx]
    if params.window == "hann":
        frames = frames * _window(params.fft_size)
    return torch.fft.fft(frames, dim=-1)


def from_spectra(x: torch.Tensor, params: FeatureSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(spectrogram [..., bands, frames], scalars [..., 5]) from the STFT [..., frames, fft_size]."""
    f = params.fft_size
    xr = torch.view_as_real(x)
    power = xr[..., 0] * xr[..., 0]  # |X|², written out: twice as fast as square() on the strided views
    power.addcmul_(xr[..., 1], xr[..., 1]).mul_(1.0 / (f * f * _window_power(params)))
    bands, noise_bins, in_bins, peak_bins, bin_hz = _layout(params)
    spec = torch.log10((power @ bands).clamp_min_(_TINY)).mul_(10.0).transpose(-1, -2)
    psd = power.mean(dim=-2)  # [..., fft] power per bin, averaged over frames
    noise = psd[..., noise_bins].mean(-1)
    in_band = psd[..., in_bins].mean(-1)
    total = psd.sum(-1)
    power_db = 10.0 * torch.log10((total - noise * f).clamp_min(_TINY))
    noise_db = 10.0 * torch.log10((noise * f).clamp_min(_TINY))
    snr_db = 10.0 * torch.log10(in_band.clamp_min(_TINY) / noise.clamp_min(_TINY))
    offset = _peak_offset_hz(psd, peak_bins, bin_hz)
    present = (snr_db >= params.present_snr_db).to(spec.dtype)
    return spec.contiguous(), torch.stack([power_db, noise_db, snr_db, offset, present], dim=-1)


def extract(iq: NDArray[Any], params: FeatureSettings, sample_rate_hz: float | None = None) -> Features:
    """Features of IQ [..., samples] (any complex or float-pair array); BadRecording for unusable IQ."""
    if sample_rate_hz is not None:
        check_rate(sample_rate_hz, params)
    data = np.asarray(iq)
    if not np.iscomplexobj(data):
        raise BadRecording(f"IQ must be complex, not {data.dtype}")
    if not np.isfinite(data).all():
        raise BadRecording("IQ holds NaN or Inf samples")
    spec, scalars = from_spectra(spectra(torch.from_numpy(data.astype(np.complex64)), params), params)
    return Features(spec.numpy(), scalars.numpy())


def _window(n: int) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float32)


def _window_power(params: FeatureSettings) -> float:
    """Mean squared window value: keeps band powers in full-scale units for any window."""
    return 1.0 if params.window == "rect" else float(_window(params.fft_size).square().mean())


def _layout(params: FeatureSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    key = (params.sample_rate_hz, params.fft_size, params.bands, params.noise_edge_fraction)
    return _layout_cached(*key)


@lru_cache(maxsize=8)
def _layout_cached(rate: float, f: int, n_bands: int,
                   edge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Band matrix [fft, bands], noise bins, in-band bins, peak-search bins, bin width (Hz)."""
    bin_hz = rate / f
    hz = np.abs(np.fft.fftfreq(f, d=1.0 / rate))
    folded = np.rint(hz / bin_hz).astype(int)  # 0 … f/2
    top = f // 2
    mel_top = 2595.0 * np.log10(1.0 + (rate / 2) / 700.0)
    edges_hz = 700.0 * (10.0 ** (np.linspace(0.0, mel_top, n_bands + 1) / 2595.0) - 1.0)
    # Mel-spaced edges in |offset| bins, each band at least one bin wide (low mel bands are narrower than a bin).
    edges = [0]
    for i in range(1, n_bands + 1):
        wanted = int(np.ceil(edges_hz[i] / bin_hz - 1e-9))
        edges.append(min(max(wanted, edges[-1] + 1), top + 1 - (n_bands - i)))
    edges[-1] = top + 1
    matrix = np.zeros((f, n_bands), dtype=np.float32)
    for b in range(n_bands):
        matrix[(folded >= edges[b]) & (folded < edges[b + 1]), b] = 1.0
    order = np.argsort(-hz, kind="stable")
    n_noise = max(1, round(edge * f))
    noise = np.sort(order[:n_noise])
    in_band = np.sort(order[n_noise:])
    peak = np.flatnonzero(hz <= rate / 4)
    return (torch.from_numpy(matrix), torch.from_numpy(noise), torch.from_numpy(in_band), torch.from_numpy(peak),
            bin_hz)


def _peak_offset_hz(psd: torch.Tensor, peak_bins: torch.Tensor, bin_hz: float) -> torch.Tensor:
    """Frequency of the PSD peak within ±fs/4, refined by a parabola through the log powers around it."""
    f = psd.shape[-1]
    candidates = psd[..., peak_bins]
    k = peak_bins[candidates.argmax(dim=-1)]
    log = torch.log(psd.clamp_min(_TINY))
    left = log.gather(-1, ((k - 1) % f)[..., None])[..., 0]
    mid = log.gather(-1, k[..., None])[..., 0]
    right = log.gather(-1, ((k + 1) % f)[..., None])[..., 0]
    denom = left - 2 * mid + right
    delta = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    signed = torch.where(k > f // 2, k - f, k).to(psd.dtype)
    return (signed + delta) * bin_hz
