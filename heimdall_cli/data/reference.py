"""Reference estimates for a split beside the model: centre, classical RSSI, kNN fingerprinting, known world.

On recorded data the classical estimator searches the area the data covers (the placed
receivers and the training labels, 10 % wider) on a grid fitted to its size, at the
data's carrier frequency; receivers with no known position are left out of it, and
without any placed receiver it (and the centre) is skipped: :func:`skipped` says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.baselines import centre_baseline, detection_threshold_db, rssi_multilateration
from heimdall_cli.data.features import SCALARS

if TYPE_CHECKING:
    from heimdall_cli.data.dataset import RFDataset
    from heimdall_cli.settings import FeatureSettings, WorldSettings


def reference_estimates(split: RFDataset, world: WorldSettings | None, features: dict[str, Any],
                        params: FeatureSettings, *, synthetic: bool = True, train: RFDataset | None = None,
                        val: RFDataset | None = None) -> dict[str, NDArray[np.float64]]:
    """name -> [N, 2] (lat, lon) of each reference estimator that applies to this data.

    ``world`` gives the classical estimator its path-loss model and search region (for
    recorded data the settings' world: what a deployment assumes); the known-world estimator needs the
    true world, so it runs only on ``synthetic`` samples of a fixed-network IQ world.
    kNN fingerprinting runs when ``train`` (its database) and ``val`` (to choose k) are given.
    """
    from heimdall_cli.settings import FeatureSettings as Features
    from heimdall_cli.settings import WorldSettings as World

    rx, mask, scalars = split.small("rx_latlon"), split.small("rx_mask"), split.small("scalars")
    out: dict[str, NDArray[np.float64]] = {}
    if train is not None and val is not None and len(train) and len(val):
        out["knn"] = knn_estimates(train, val, split)
    placed = mask & np.isfinite(rx).all(axis=-1)
    if not placed.any():
        return out
    rx = np.where(placed[..., None], rx, 0.0)
    out["centre"] = centre_baseline(rx, placed)
    extractor = Features.model_validate(features) if "kind" not in features else params
    model_world = world or World()
    grid_km = 5.0
    if not synthetic:
        model_world, grid_km = _recorded_world(model_world, split, train, rx, placed)
    power = scalars[..., SCALARS.index("power_db")]
    present = scalars[..., SCALARS.index("present")] > 0.5
    threshold = detection_threshold_db(scalars[..., SCALARS.index("noise_db")], extractor.present_snr_db,
                                       extractor.noise_edge_fraction)
    out["rssi"] = rssi_multilateration(power, present, threshold, rx, placed, model_world, grid_km=grid_km)
    if synthetic and world is not None and world.version == 2 and not world.random_placement:
        from heimdall_cli.data.known_world import known_world_multilateration

        out["known_world"] = known_world_multilateration(power, present, mask, world, extractor)
    return out


def skipped(split: RFDataset) -> list[str]:
    """Why a reference estimator does not run on this split (empty: all that apply run)."""
    rx, mask = split.small("rx_latlon"), split.small("rx_mask")
    if not (mask & np.isfinite(rx).all(axis=-1)).any():
        return ["centre and rssi: no receiver has a known position"]
    return []


def knn_estimates(train: RFDataset, val: RFDataset, split: RFDataset) -> NDArray[np.float64]:
    """kNN fingerprinting: the train split is the database, k is chosen on ``val``."""
    from heimdall_cli.data.fingerprint import KnnFingerprint

    knn = KnnFingerprint.fit(train.small("scalars"), train.small("rx_mask"), train.tx_latlon)
    knn.choose_k(val.small("scalars"), val.small("rx_mask"), val.tx_latlon)
    return knn.predict(split.small("scalars"), split.small("rx_mask"))


def _recorded_world(world: WorldSettings, split: RFDataset, train: RFDataset | None, rx: NDArray[np.float64],
                    placed: NDArray[np.bool_]) -> tuple[WorldSettings, float]:
    """The world the classical estimator assumes on recorded data: this data's area and carrier."""
    points = [rx[placed]]
    if train is not None and len(train):
        points.append(train.tx_latlon)
    pts = np.concatenate(points)
    (lat0, lon0), (lat1, lon1) = pts.min(0), pts.max(0)
    pad_lat, pad_lon = 0.1 * (lat1 - lat0) + 1e-3, 0.1 * (lon1 - lon0) + 1e-3
    update: dict[str, Any] = {"lat_range": (float(lat0 - pad_lat), float(lat1 + pad_lat)),
                              "lon_range": (float(lon0 - pad_lon), float(lon1 + pad_lon))}
    freq = split.small("frequency_hz")
    if np.isfinite(freq).any() and np.nanmedian(freq) > 0:
        update["frequency_mhz"] = float(np.nanmedian(freq)) / 1e6
    span_km = max((lat1 - lat0) * 111.2, (lon1 - lon0) * 111.2 * np.cos(np.radians(0.5 * (lat0 + lat1))))
    return world.model_copy(update=update), float(min(5.0, max(span_km / 40.0, 0.01)))
