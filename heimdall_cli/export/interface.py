"""The deployed model's interface, shared by the torch model, its ONNX export and their consumers.

Input ``receivers``: float32 [batch, slots, bands·frames + 9], every receiver slot's
features packed into one row (:mod:`heimdall_cli.data.packing`: spectrogram, scalars,
latitude, longitude, IQ flag, mask). Output ``prediction``: float32 [batch, 4] with the columns
:data:`OUTPUT_COLUMNS`. The batch axis is dynamic.
"""

from __future__ import annotations

INPUT_NAME = "receivers"
OUTPUT_NAME = "prediction"
OUTPUT_COLUMNS = ("lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m")
INPUT_LAYOUT = ("packed receivers [batch, slots, bands*frames + 9]: spectrogram (dBFS), power_db, noise_db, "
                "snr_db, offset_hz, present (NaN: unknown), lat, lon, iq (1: the spectrogram is from IQ), mask")
DEFAULT_OPSET = 18  # the opset of PyTorch's dynamo exporter; it also sets the minimum
MIN_OPSET = 18
