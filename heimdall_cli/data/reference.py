"""Reference estimates for a split, side by side with the model: centre, classical RSSI, oracle."""

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
                        params: FeatureSettings, *, synthetic: bool = True) -> dict[str, NDArray[np.float64]]:
    """name -> [N, 2] (lat, lon) of each reference estimator that applies to this data.

    ``world`` gives the classical estimator its path-loss model and search region (for
    recorded data the settings' world: what a deployment assumes); the oracle needs the
    true world, so it runs only on ``synthetic`` samples of a fixed-network IQ world.
    """
    from heimdall_cli.settings import FeatureSettings as Features
    from heimdall_cli.settings import WorldSettings as World

    rx, mask, scalars = split.small("rx_latlon"), split.small("rx_mask"), split.small("scalars")
    out = {"centre": centre_baseline(rx, mask)}
    extractor = Features.model_validate(features) if "kind" not in features else params
    model_world = world or World()
    power = scalars[..., SCALARS.index("power_db")]
    present = scalars[..., SCALARS.index("present")] > 0.5
    threshold = detection_threshold_db(scalars[..., SCALARS.index("noise_db")], extractor.present_snr_db,
                                       extractor.noise_edge_fraction)
    out["rssi"] = rssi_multilateration(power, present, threshold, rx, mask, model_world)
    if synthetic and world is not None and world.version == 2 and not world.random_placement:
        from heimdall_cli.data.oracle import oracle_multilateration

        out["oracle"] = oracle_multilateration(power, present, mask, world, extractor)
    return out
