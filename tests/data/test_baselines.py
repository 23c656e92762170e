import numpy as np
import pytest

from heimdall_cli.data.baselines import centre_baseline, errors_m, rssi_multilateration, summary
from heimdall_cli.data.receivers import NETWORK_CENTRE
from heimdall_cli.data.synth import generate
from heimdall_cli.settings import WorldSettings


def test_errors_and_summary():
    true = np.array([[45.0, 8.0], [45.0, 8.0], [46.0, 8.0]])
    pred = np.array([[45.0, 8.0], [46.0, 8.0], [46.0, 8.0]])
    e = errors_m(pred, true)
    assert e[0] == 0 and e[2] == 0 and 111_000 < e[1] < 111_400
    s = summary(e)
    assert set(s) == {"mean", "p50", "p68", "p95"} and s["p50"] == 0.0 and s["p95"] > s["p68"]


@pytest.fixture(scope="module")
def default_world_samples():
    world = WorldSettings(n_mels=4, n_frames=32)  # default propagation; fading still spans 32 frames
    return world, generate(500, 11, world)


def test_centre_and_rssi_baselines(default_world_samples):
    world, b = default_world_samples
    centre = centre_baseline(len(b))
    assert np.allclose(centre, NETWORK_CENTRE)
    c = summary(errors_m(centre, b.tx_latlon))
    r = summary(errors_m(rssi_multilateration(b.rx_power_dbm, world), b.tx_latlon))
    assert 70_000 < c["p50"] < 115_000  # DOMAIN.md: about 90 km
    assert 30_000 < r["p50"] < 0.7 * c["p50"]  # DOMAIN.md: about 47 km at σ 6 dB


def test_rssi_is_accurate_without_shadowing():
    world = WorldSettings(n_mels=4, n_frames=32, shadowing_db=0.0)
    b = generate(200, 12, world)
    r = summary(errors_m(rssi_multilateration(b.rx_power_dbm, world), b.tx_latlon))
    assert r["p50"] < 15_000  # only fading averaged over 32 frames remains


def test_rssi_handles_missing_receivers(default_world_samples):
    world, b = default_world_samples
    power = b.rx_power_dbm[:50].copy()
    power[:, 3:] = np.nan  # only three receivers heard
    power[0, :] = np.nan  # nobody heard: the centre
    pred = rssi_multilateration(power, world)
    assert np.isfinite(pred).all() and np.allclose(pred[0], NETWORK_CENTRE)
    lat, lon = pred[1:, 0], pred[1:, 1]
    assert ((lat >= 44) & (lat <= 46) & (lon >= 7) & (lon <= 10)).all()
