"""``Samples``: N transmissions as every source delivers them (synthetic, imported, read from shards).

One transmission is what up to S receivers (the dataset's station slots) heard of it:
per slot the extractor's spectrogram and scalars, the receiver's position, and whether
the slot holds a recording at all (``rx_mask``: an off or missing station is False; a
deaf one is True with ``present`` 0). A receiver known only by its received power (a
measurement without IQ, a row of a received-power table) has ``rx_iq`` False: its
spectrogram is the floor, and the scalars it lacks (noise, SNR, offset) are NaN. The
label is the transmitter position, NaN for unlabelled samples (prediction only), with
its own uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

FLOOR_DB = -120.0  # what an empty slot's spectrogram holds


@dataclass
class Samples:
    """N samples over S station slots."""

    spectrograms: NDArray[np.float32]  # [N, S, bands, frames] dBFS
    scalars: NDArray[np.float32]  # [N, S, len(features.SCALARS)]
    rx_latlon: NDArray[np.float64]  # [N, S, 2] degrees
    rx_mask: NDArray[np.bool_]  # [N, S]
    tx_latlon: NDArray[np.float64]  # [N, 2] degrees, NaN: unknown
    label_sigma_m: NDArray[np.float32]  # [N] the label's own uncertainty (0: exact)
    frequency_hz: NDArray[np.float64]  # [N]
    tx_power_dbm: NDArray[np.float32]  # [N], NaN: unknown
    rx_iq: NDArray[np.bool_] | None = None  # [N, S] the slot's features come from IQ; None: wherever recorded

    def __post_init__(self) -> None:
        if self.rx_iq is None:
            self.rx_iq = self.rx_mask.copy()

    def __len__(self) -> int:
        return len(self.tx_latlon)

    @staticmethod
    def fields() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Samples))

    @property
    def labelled(self) -> NDArray[np.bool_]:
        return np.isfinite(self.tx_latlon).all(axis=1)

    @classmethod
    def empty(cls, n: int, slots: int, bands: int, frames: int, n_scalars: int) -> Samples:
        return cls(
            np.full((n, slots, bands, frames), FLOOR_DB, np.float32),
            np.zeros((n, slots, n_scalars), np.float32),
            np.zeros((n, slots, 2), np.float64),
            np.zeros((n, slots), np.bool_),
            np.full((n, 2), np.nan, np.float64),
            np.zeros((n,), np.float32),
            np.zeros((n,), np.float64),
            np.full((n,), np.nan, np.float32),
            np.zeros((n, slots), np.bool_),
        )

    def take(self, index: NDArray[np.int64] | slice) -> Samples:
        return Samples(**{k: getattr(self, k)[index] for k in self.fields()})

    @classmethod
    def concat(cls, parts: list[Samples]) -> Samples:
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.fields()})
