"""The deployed model's interface, shared by the torch model, its ONNX export and their consumers.

Input ``receivers``: float32 [batch, slots, bands·frames + 9], every receiver slot's
features packed into one row (:mod:`heimdall_cli.data.packing`: spectrogram, scalars,
latitude, longitude, IQ flag, mask). Output ``prediction``: float32 [batch, 4] with the columns
:data:`OUTPUT_COLUMNS`. The batch axis is dynamic.

The ONNX export has a second output, always: ``uncertainty`` float32 [batch, 3] =
(sigma_x_m, sigma_y_m, theta_rad): the east and north standard deviations in metres and
the ellipse's rotation (0: axes east/north). A consumer that reads output 0 as
(lat, lon) in its first two columns and output 1 as (σx, σy, θ), as Heimdall's own
inference service does, gets both from one file.
"""

from __future__ import annotations

INPUT_NAME = "receivers"
OUTPUT_NAME = "prediction"
OUTPUT_COLUMNS = ("lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m")
UNCERTAINTY_NAME = "uncertainty"
UNCERTAINTY_COLUMNS = ("sigma_x_m", "sigma_y_m", "theta_rad")
INPUT_LAYOUT = ("packed receivers [batch, slots, bands*frames + 9]: spectrogram (dBFS), power_db, noise_db, "
                "snr_db, offset_hz, present (NaN: unknown), lat, lon, iq (1: the spectrogram is from IQ), mask")
DEFAULT_OPSET = 18  # the opset of PyTorch's dynamo exporter; it also sets the minimum
MIN_OPSET = 18
