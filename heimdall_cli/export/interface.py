"""The deployed model's interface, shared by the torch model, its ONNX export and their consumers.

Input ``spectrograms``: float32 [batch, receivers, n_mels, n_frames], log-mel dB as the
data layer produces them. Output ``prediction``: float32 [batch, 4] with the columns
:data:`OUTPUT_COLUMNS`. The batch axis is dynamic.
"""

from __future__ import annotations

INPUT_NAME = "spectrograms"
OUTPUT_NAME = "prediction"
OUTPUT_COLUMNS = ("lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m")
INPUT_LAYOUT = "log-mel dB [batch, receivers, n_mels, n_frames]"
