import numpy as np

from heimdall_cli.data.geo import EARTH_RADIUS_M, from_local_m, haversine_m, to_local_m
from heimdall_cli.data.receivers import NETWORK_CENTRE, RECEIVERS, network_centre


def test_receivers_table():
    assert len(RECEIVERS) == 7
    assert RECEIVERS[0].name == "Aquila di Giaveno" and RECEIVERS[0].alt_m == 600.0
    lat, lon = NETWORK_CENTRE
    assert 44.3 < lat < 45.5 and 7.2 < lon < 9.2
    assert network_centre() == NETWORK_CENTRE


def test_haversine_known_values():
    one_degree = np.pi * EARTH_RADIUS_M / 180
    assert np.isclose(haversine_m(45.0, 8.0, 46.0, 8.0), one_degree)
    assert np.isclose(haversine_m(0.0, 0.0, 0.0, 1.0), one_degree)
    assert haversine_m(45.0, 8.0, 45.0, 8.0) == 0.0
    d = haversine_m([45.0, 44.0], [7.0, 8.0], [45.0, 45.0], [7.0, 8.0])
    assert d.shape == (2,) and d[0] == 0.0


def test_local_frame_round_trip_and_axes():
    lat, lon = np.meshgrid(np.linspace(43.5, 46.5, 61), np.linspace(6.5, 10.5, 81), indexing="ij")
    east, north = to_local_m(lat, lon)
    back_lat, back_lon = from_local_m(east, north)
    assert haversine_m(lat, lon, back_lat, back_lon).max() < 1e-3
    # Azimuthal equidistant: distance from the origin is exact.
    d = haversine_m(NETWORK_CENTRE[0], NETWORK_CENTRE[1], lat, lon)
    assert np.abs(np.hypot(east, north) - d).max() < 1e-3
    e0, n0 = to_local_m(*NETWORK_CENTRE)
    assert abs(e0) < 1e-9 and abs(n0) < 1e-9
    e1, n1 = to_local_m(NETWORK_CENTRE[0] + 1, NETWORK_CENTRE[1])
    assert abs(e1) < 1e-6 and 111_000 < n1 < 111_400
    e2, _ = to_local_m(NETWORK_CENTRE[0], NETWORK_CENTRE[1] + 1)
    assert 78_000 < e2 < 79_500  # cos(45°) shrinks a degree of longitude


def test_local_frame_custom_origin():
    east, north = to_local_m(45.5, 8.5, origin=(45.0, 8.0))
    lat, lon = from_local_m(east, north, origin=(45.0, 8.0))
    assert np.isclose(lat, 45.5) and np.isclose(lon, 8.5)
