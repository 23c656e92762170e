"""The model's one input tensor: every receiver slot's features packed into one row.

``receivers`` float32 [batch, slots, bands·frames + 9]; per slot: the spectrogram
(bands × frames, dBFS, row-major), the extractor's scalars (power_db, noise_db, snr_db,
offset_hz, present; NaN where unknown), the receiver's latitude and longitude (degrees),
whether the spectrogram comes from IQ (1) or the receiver gave its power alone (0), and
the slot mask (1 recorded, 0 absent; an absent slot's other values are ignored). One
tensor keeps the deployed model a plain one-input MLflow/ONNX model.

Models trained before the IQ column existed read rows of ``bands·frames + 8``
(:data:`LEGACY_TAIL`): :func:`for_tail` drops the column for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.samples import Samples

TAIL = len(SCALARS) + 4  # scalars, lat, lon, iq, mask
LEGACY_TAIL = len(SCALARS) + 3  # scalars, lat, lon, mask


@dataclass(frozen=True)
class Layout:
    """Where each part sits in a packed row."""

    bands: int
    frames: int

    @property
    def spec(self) -> slice:
        return slice(0, self.bands * self.frames)

    @property
    def scalars(self) -> slice:
        start = self.bands * self.frames
        return slice(start, start + len(SCALARS))

    @property
    def position(self) -> slice:
        start = self.bands * self.frames + len(SCALARS)
        return slice(start, start + 2)

    @property
    def iq(self) -> int:
        return self.bands * self.frames + len(SCALARS) + 2

    @property
    def mask(self) -> int:
        return self.bands * self.frames + len(SCALARS) + 3

    @property
    def width(self) -> int:
        return self.bands * self.frames + TAIL


def layout_of(samples: Samples) -> Layout:
    return Layout(samples.spectrograms.shape[2], samples.spectrograms.shape[3])


def pack(samples: Samples) -> NDArray[np.float32]:
    """[N, slots, width] packed rows of ``samples``."""
    n, s, b, t = samples.spectrograms.shape
    out = np.empty((n, s, b * t + TAIL), np.float32)
    out[..., : b * t] = samples.spectrograms.reshape(n, s, b * t)
    out[..., b * t : b * t + len(SCALARS)] = samples.scalars
    out[..., b * t + len(SCALARS) : b * t + len(SCALARS) + 2] = samples.rx_latlon
    out[..., -2] = samples.rx_iq
    out[..., -1] = samples.rx_mask
    return out


def for_tail(packed: NDArray[np.float32], tail: int) -> NDArray[np.float32]:
    """``packed`` rows for a model that reads ``tail`` values after the spectrogram (drops the IQ column for
    :data:`LEGACY_TAIL`)."""
    if tail == TAIL:
        return packed
    if tail == LEGACY_TAIL:
        return np.concatenate([packed[..., :-2], packed[..., -1:]], axis=-1)
    raise ValueError(f"no packing has {tail} values after the spectrogram")
