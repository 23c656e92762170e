import numpy as np
import pytest

from heimdall_cli.data.baselines import centre_baseline, detection_threshold_db, errors_m, rssi_multilateration, summary
from heimdall_cli.data.dataset import RFDataset
from heimdall_cli.data.features import params_dict
from heimdall_cli.data.receivers import NETWORK_CENTRE
from heimdall_cli.data.reference import reference_estimates
from heimdall_cli.data.synth import generate
from heimdall_cli.settings import FeatureSettings, WorldSettings


def test_errors_and_summary():
    true = np.array([[45.0, 8.0], [45.0, 8.0], [46.0, 8.0]])
    pred = np.array([[45.0, 8.0], [46.0, 8.0], [46.0, 8.0]])
    e = errors_m(pred, true)
    assert e[0] == 0 and e[2] == 0 and 111_000 < e[1] < 111_400
    s = summary(e)
    assert set(s) == {"mean", "p50", "p68", "p95"} and s["p50"] == 0.0 and s["p95"] > s["p68"]


def _classical(s, params: FeatureSettings, world: WorldSettings):
    threshold = detection_threshold_db(s.scalars[..., 1], params.present_snr_db, params.noise_edge_fraction)
    return rssi_multilateration(s.scalars[..., 0], s.scalars[..., 4] > 0.5, threshold, s.rx_latlon, s.rx_mask, world)


@pytest.fixture(scope="module")
def default_world():
    world, params = WorldSettings(), FeatureSettings()
    return world, params, generate(400, 11, world, params)


@pytest.mark.slow
def test_references_on_the_default_world(default_world):
    world, params, s = default_world
    refs = reference_estimates(RFDataset.of(s, NETWORK_CENTRE), world, params_dict(params), params)
    p50 = {k: summary(errors_m(v, s.tx_latlon))["p50"] for k, v in refs.items()}
    assert set(p50) == {"centre", "rssi", "known_world"}
    assert 70_000 < p50["centre"] < 115_000  # DOMAIN.md: about 90 km
    assert 30_000 < p50["rssi"] < 0.7 * p50["centre"]  # DOMAIN.md: about 47 km at σ 6 dB
    assert p50["known_world"] < p50["rssi"]  # knowing gains, patterns and terrain helps


def test_classical_is_accurate_in_a_world_of_only_its_own_model():
    world = WorldSettings(shadowing_db=0.0, gain_spread_db=0.0, directional_fraction=0.0, dropout_rate=0.0)
    params = FeatureSettings()
    s = generate(150, 12, world, params)
    assert summary(errors_m(_classical(s, params, world), s.tx_latlon))["p50"] < 15_000  # only fading is left


def test_classical_handles_missing_and_deaf_receivers(default_world):
    world, params, s = default_world
    s = s.take(slice(0, 40))
    s.rx_mask[:, 4:] = False  # three stations recorded
    s.scalars[0, :, 4] = 0.0  # nobody heard the first: the centre of the recorded receivers
    pred = _classical(s, params, world)
    assert np.isfinite(pred).all() and np.allclose(pred[0], centre_baseline(s.rx_latlon[:1], s.rx_mask[:1])[0])
    lat, lon = pred[1:, 0], pred[1:, 1]
    assert ((lat >= 44) & (lat <= 46) & (lon >= 7) & (lon <= 10)).all()


def test_centre_of_the_recorded_receivers():
    rx = np.array([[[45.0, 7.0], [46.0, 9.0], [0.0, 0.0]]])
    assert np.allclose(centre_baseline(rx, np.array([[True, True, False]])), [[45.5, 8.0]])
