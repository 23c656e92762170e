"""The feature extractor on IQ whose answers are known: tones, white noise, bad recordings."""

import numpy as np
import pytest

from heimdall_cli.data.features import SCALARS, BadRecording, extract, frame_starts
from heimdall_cli.settings import FeatureSettings

FS = 12_000.0
POWER, NOISE, SNR, OFFSET, PRESENT = range(len(SCALARS))


def tone(freq_hz: float, amplitude: float, n: int = 12_000) -> np.ndarray:
    t = np.arange(n) / FS
    return (amplitude * np.exp(2j * np.pi * freq_hz * t)).astype(np.complex64)


def noise(power: float, n: int = 12_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def test_frames_spread_over_the_recording(features):
    assert frame_starts(12_000, features).tolist()[:3] == [0, 385, 770]
    assert frame_starts(12_000, features)[-1] == 12_000 - features.fft_size
    assert frame_starts(features.fft_size * features.frames, features).tolist() == list(
        range(0, features.fft_size * features.frames, features.fft_size))
    with pytest.raises(BadRecording, match="fewer than one frame"):
        frame_starts(10, features)


def test_a_tone_on_a_bin_gives_its_power_and_offset(features):
    bin_hz = FS / features.fft_size
    x = tone(4 * bin_hz, 0.1) + noise(1e-7)
    f = extract(x, features, FS)
    assert f.spectrogram.shape == (features.bands, features.frames)
    assert f.scalars[POWER] == pytest.approx(-20.0, abs=0.05)  # |x| = 0.1: -20 dBFS
    assert f.scalars[OFFSET] == pytest.approx(4 * bin_hz, abs=1.0)
    assert f.scalars[SNR] > 30 and f.scalars[PRESENT] == 1.0
    below = extract(tone(-3.3 * bin_hz, 0.1), features, FS)  # between bins: the parabola finds it
    assert below.scalars[OFFSET] == pytest.approx(-3.3 * bin_hz, abs=0.2 * bin_hz)


def test_white_noise_is_noise(features):
    f = extract(noise(1e-4), features, FS)
    assert f.scalars[NOISE] == pytest.approx(-40.0, abs=1.0)  # the whole band's noise power
    assert abs(f.scalars[SNR]) < 1.5 and f.scalars[PRESENT] == 0.0
    # Every band holds its share of flat noise (averaged over frames in power, not in dB: log-bias).
    level = 10 * np.log10((10 ** (f.spectrogram / 10)).mean(axis=1))
    assert np.abs(level - 10 * np.log10(1e-4 * _band_bins(features) / features.fft_size)).max() < 1.5


def test_vectorised_over_receivers_and_both_windows(features):
    x = np.stack([tone(500.0, 0.5) + noise(1e-6), noise(1e-6, seed=1)])
    f = extract(x, features, FS)
    assert f.spectrogram.shape == (2, features.bands, features.frames) and f.scalars.shape == (2, len(SCALARS))
    assert f.scalars[0, PRESENT] == 1 and f.scalars[1, PRESENT] == 0
    hann = extract(x, features.model_copy(update={"window": "hann"}), FS)
    assert hann.scalars[0, POWER] == pytest.approx(f.scalars[0, POWER], abs=0.5)  # same units either window
    assert hann.scalars[0, SNR] > f.scalars[0, SNR]  # less leakage into the noise bins


@pytest.mark.parametrize(("iq", "rate", "message"), [
    (np.ones(12_000, np.float32), FS, "must be complex"),
    (np.full(12_000, np.nan, np.complex64), FS, "NaN or Inf"),
    (np.ones(12_000, np.complex64), 48_000.0, "does not match"),
    (np.ones(10, np.complex64), FS, "fewer than one frame"),
])
def test_bad_recordings_are_refused(features, iq, rate, message):
    with pytest.raises(BadRecording, match=message):
        extract(iq, features, rate)


def test_heimdall_s_12500_label_is_accepted(features):
    extract(tone(0.0, 0.1), features, 12_500.0)  # the acquisition stores 12500 for ~12 kHz IQ


def test_band_layout_has_no_empty_band():
    for fft, bands in ((64, 32), (64, 16), (256, 40), (32, 16)):
        params = FeatureSettings(fft_size=fft, bands=bands)
        assert (_band_bins(params) >= 1).all()
    with pytest.raises(ValueError, match="at most fft_size / 2"):
        FeatureSettings(fft_size=32, bands=20)


def _band_bins(params: FeatureSettings) -> np.ndarray:
    from heimdall_cli.data.features import _layout

    return _layout(params)[0].sum(0).numpy()
