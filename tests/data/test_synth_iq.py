"""The IQ world (version 2): deterministic, what real networks have, and exactly what the extractor computes."""

import itertools

import numpy as np
import pytest

from heimdall_cli.data.features import SCALARS, extract
from heimdall_cli.data.samples import Samples
from heimdall_cli.data.synth_iq import BLOCK_SIZE, FULL_SCALE_DBM, generate, generate_iq
from heimdall_cli.data.world import mean_power_dbm, network, shadow_field
from heimdall_cli.settings import WorldSettings

POWER, NOISE, SNR, OFFSET, PRESENT = range(len(SCALARS))


def _same(a: Samples, b: Samples) -> bool:
    return all(getattr(a, k).tobytes() == getattr(b, k).tobytes() for k in Samples.fields())


def test_shapes_and_ranges(world, features):
    s = generate(40, 1, world, features)
    assert s.spectrograms.shape == (40, 7, features.bands, features.frames)
    assert s.scalars.shape == (40, 7, len(SCALARS)) and s.rx_mask.shape == (40, 7)
    assert np.isfinite(s.spectrograms).all() and np.isfinite(s.scalars).all()
    lat, lon = s.tx_latlon.T
    assert ((lat >= 44) & (lat <= 46) & (lon >= 7) & (lon <= 10)).all()
    assert (s.label_sigma_m == 0).all() and (np.abs(s.frequency_hz - 145e6) < 5e3).all()


def test_same_seed_same_bytes_and_slices_agree(world, features):
    whole = generate(BLOCK_SIZE + 40, 3, world, features)
    assert _same(whole, generate(BLOCK_SIZE + 40, 3, world, features))
    cuts = [0, 7, BLOCK_SIZE + 1, BLOCK_SIZE + 40]
    parts = Samples.concat([generate(b - a, 3, world, features, start=a) for a, b in itertools.pairwise(cuts)])
    assert _same(parts, whole)
    assert not np.array_equal(generate(5, 4, world, features).tx_latlon, whole.tx_latlon[:5])


def test_the_extractor_on_the_iq_gives_the_features(world, features):
    samples, iq = generate_iq(20, 2, world, features, start=250)  # across a block boundary
    assert _same(samples, generate(20, 2, world, features, start=250))
    assert iq.shape == (20, 7, features.frames * features.fft_size) and iq.dtype == np.complex64
    f = extract(iq, features, features.sample_rate_hz)
    m = samples.rx_mask
    np.testing.assert_allclose(f.spectrogram[m], samples.spectrograms[m], atol=2e-3)
    np.testing.assert_allclose(f.scalars[m][:, [POWER, NOISE, SNR]], samples.scalars[m][:, [POWER, NOISE, SNR]],
                               atol=1e-3)
    np.testing.assert_allclose(f.scalars[m][:, OFFSET], samples.scalars[m][:, OFFSET], atol=0.5)
    # With a Hann window the generator goes through the IQ itself: same as extracting it.
    hann = features.model_copy(update={"window": "hann"})
    h, h_iq = generate_iq(5, 2, world, hann)
    np.testing.assert_allclose(extract(h_iq, hann).spectrogram[h.rx_mask], h.spectrograms[h.rx_mask], atol=2e-3)


def test_the_network_has_gains_patterns_noise_floors_and_lo_errors(world, features):
    net = network(world, features.sample_rate_hz / features.fft_size)
    assert net.gain_db.std() > 0.5 and net.directional.any() and (net.lo_bins != 0).any()
    az = np.linspace(0, 360, 73)[:, None]
    pattern = net.pattern_db(az, world.pattern_depth_db)
    directional = np.flatnonzero(net.directional)
    assert np.allclose(pattern[:, ~net.directional], 0.0)
    assert pattern[:, directional].min() == pytest.approx(-world.pattern_depth_db, abs=0.1)
    # The stations' received powers carry their gains: residuals against the path-loss model differ by station.
    s = generate(512, 5, world.model_copy(update={"shadowing_db": 0.0, "dropout_rate": 0.0}), features)
    truth = mean_power_dbm(world, net, None, s.tx_latlon[:, 0], s.tx_latlon[:, 1], s.tx_power_dbm.astype(float))
    resid = s.scalars[..., POWER] - (truth - FULL_SCALE_DBM)
    assert np.abs(np.median(resid, axis=0)).max() < 2.0  # the power estimate is unbiased within fading
    # Each station's LO error shows in its measured offsets (the transmitter's own error is common to all).
    offsets = s.scalars[..., OFFSET] - np.median(s.scalars[..., OFFSET], axis=1, keepdims=True)
    lo_hz = (net.lo_bins - np.median(net.lo_bins)) * features.sample_rate_hz / features.fft_size
    assert np.abs(np.median(offsets, axis=0) - lo_hz).max() < 60.0


def test_the_terrain_is_fixed_and_correlated(world):
    field = shadow_field(world, 7)
    assert field.values.std() == pytest.approx(world.shadowing_db, rel=0.05)
    assert shadow_field(world, 7) is field  # one terrain per world (cached)
    again = shadow_field(world.model_copy(update={"field_seed": world.field_seed}), 7)
    assert np.array_equal(again.values, field.values)
    other = shadow_field(world.model_copy(update={"field_seed": 1}), 7)
    assert abs(np.corrcoef(other.values.ravel(), field.values.ravel())[0, 1]) < 0.05
    v = field.values[0]  # grid step = half the decorrelation distance: lag 2 is one decorrelation distance
    lag = lambda k: np.corrcoef(v[:, :-k].ravel(), v[:, k:].ravel())[0, 1]  # noqa: E731
    assert lag(2) == pytest.approx(np.exp(-1), abs=0.06) and lag(20) < 0.1


def test_stations_drop_out_and_deaf_ones_stay_recorded(world, features):
    s = generate(1024, 6, world, features)
    assert s.rx_mask.mean() == pytest.approx(1 - world.dropout_rate, abs=0.02)
    assert (s.spectrograms[~s.rx_mask] == -120.0).all() and (s.scalars[~s.rx_mask] == 0).all()
    far = generate(256, 6, world.model_copy(update={"tx_power_dbm": (0.0, 15.0)}), features)
    present = far.scalars[..., PRESENT][far.rx_mask]
    assert 0.05 < present.mean() < 0.95  # weak transmitters: some stations hear nothing, and say so


def test_random_placements(features):
    world = WorldSettings(random_placement=True, receivers=(3, 9))
    s = generate(300, 1, world, features)
    assert s.rx_mask.shape == (300, 9)
    counts = (s.rx_mask | (s.rx_latlon != 0).all(-1)).sum(1)
    assert counts.min() >= 3 and counts.max() <= 9
    assert np.ptp(s.rx_latlon[:, 0, 0]) > 1.0  # receivers move from sample to sample
