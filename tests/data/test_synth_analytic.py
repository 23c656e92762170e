"""The version-1 world (analytic band energies): kept so datasets made with it still train."""

import itertools

import numpy as np
import pytest

from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.receivers import RECEIVERS
from heimdall_cli.data.synth_analytic import (
    BLOCK_SIZE,
    CHANNEL_HZ,
    REF_DBM,
    SynthBatch,
    generate,
    mel_edges_hz,
)
from heimdall_cli.data.world import path_loss_db
from heimdall_cli.settings import WorldSettings


def _equal(a: SynthBatch, b: SynthBatch) -> bool:
    return all(
        getattr(a, k).tobytes() == getattr(b, k).tobytes() and getattr(a, k).dtype == getattr(b, k).dtype
        for k in SynthBatch.fields()
    )


def test_shapes_and_dtypes(small_world):
    b = generate(10, 1, small_world)
    assert b.spectrograms.shape == (10, 7, 8, 8) and b.spectrograms.dtype == np.float32
    assert b.rx_power_dbm.shape == (10, 7) and b.rx_power_dbm.dtype == np.float32
    assert b.tx_latlon.shape == (10, 2) and b.heard.dtype == np.bool_ and len(b) == 10
    assert np.isfinite(b.spectrograms).all()
    assert (np.isfinite(b.rx_power_dbm) == b.heard).all()
    lat, lon = b.tx_latlon.T
    assert ((lat >= 44) & (lat <= 46) & (lon >= 7) & (lon <= 10)).all()
    assert ((b.tx_power_dbm >= 30) & (b.tx_power_dbm <= 40)).all()


def test_same_seed_same_bytes_other_seed_differs(small_world):
    assert _equal(generate(300, 7, small_world), generate(300, 7, small_world))
    assert not np.array_equal(generate(20, 8, small_world).tx_latlon, generate(20, 7, small_world).tx_latlon)


def test_chunk_independence(small_world):
    whole = generate(2 * BLOCK_SIZE + 50, 3, small_world)
    cuts = [0, 1, 100, BLOCK_SIZE + 3, 2 * BLOCK_SIZE + 50]
    parts = [generate(b - a, 3, small_world, start=a) for a, b in itertools.pairwise(cuts)]
    for k in SynthBatch.fields():
        assert np.concatenate([getattr(p, k) for p in parts]).tobytes() == getattr(whole, k).tobytes()
    for i in (0, BLOCK_SIZE - 1, BLOCK_SIZE, 2 * BLOCK_SIZE + 49):
        one = generate(1, 3, small_world, start=i)
        assert one.spectrograms[0].tobytes() == whole.spectrograms[i].tobytes()
    assert len(generate(0, 3, small_world)) == 0
    with pytest.raises(ValueError):
        generate(-1, 3, small_world)


def test_path_loss_model():
    d = np.array([0.5, 1.0, 10.0, 100.0])
    pl = path_loss_db(d, 145.0, 2.5)
    assert np.isclose(pl[1], 20 * np.log10(145) + 32.44)
    assert np.isclose(pl[2] - pl[1], 25.0) and np.isclose(pl[3] - pl[2], 25.0)
    assert np.isclose(pl[1] - pl[0], 20 * np.log10(2))  # free space inside 1 km


def test_received_power_follows_link_budget():
    world = WorldSettings(version=1, n_mels=8, n_frames=16, shadowing_db=0.0)
    b = generate(400, 2, world)
    d_km = haversine_m(b.tx_latlon[:, :1], b.tx_latlon[:, 1:], [r.lat for r in RECEIVERS], [r.lon for r in RECEIVERS])
    expected = b.tx_power_dbm[:, None] - path_loss_db(d_km / 1000, 145.0, 2.5)
    resid = (b.rx_power_dbm - expected)[b.heard]
    # Without shadowing only the fading average remains: unbiased-ish and a few dB wide.
    assert abs(np.median(resid)) < 1.0 and np.std(resid) < 3.0
    # The spectrogram level follows received power.
    level = b.spectrograms.max(axis=(2, 3))
    assert np.corrcoef(level[b.heard], b.rx_power_dbm[b.heard])[0, 1] > 0.9


def test_below_noise_hears_nothing():
    world = WorldSettings(version=1, n_mels=8, n_frames=8, noise_floor_dbm=-90.0)
    b = generate(200, 4, world)
    assert 0.1 < b.heard.mean() < 0.9
    assert np.isnan(b.rx_power_dbm[~b.heard]).all()
    assert (b.rx_power_dbm[b.heard] > -90.0).all()
    # Unheard receivers show noise only: about the noise level in every band.
    noise_only = b.spectrograms[~b.heard]
    heard = b.spectrograms[b.heard]
    assert noise_only.max(axis=(1, 2)).mean() < heard.max(axis=(1, 2)).mean() - 3
    # Each band holds its share of the flat channel noise (periodogram log-bias is at most ~2.5 dB).
    expected = -90.0 + 10 * np.log10(2 * np.diff(mel_edges_hz(8)) / CHANNEL_HZ) - REF_DBM
    assert np.abs(noise_only.mean(axis=(0, 2)) - expected).max() < 3.0
