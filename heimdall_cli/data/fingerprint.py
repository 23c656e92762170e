"""k-nearest-neighbour RSS fingerprinting: the field's standard peer on received-power data.

A fingerprint is a sample's received power per station slot (dB); a slot whose receiver
was off, absent or did not hear the transmission holds the floor (the lowest power heard
in the training fingerprints minus :data:`FLOOR_MARGIN_DB`), as the public RSS datasets
encode "not heard". The estimate is the mean position of the k training fingerprints
nearest in Euclidean distance. ``k`` is chosen on the validation split (the smallest
mean error over :data:`K_CHOICES`). Receiver positions are not needed.

The database is the training split, at most :data:`MAX_DATABASE` samples (a fixed
subsample beyond that); queries are scored in chunks, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.features import SCALARS

K_CHOICES = (1, 2, 3, 5, 8, 13, 21)
FLOOR_MARGIN_DB = 10.0
MAX_DATABASE = 50_000
_CHUNK = 512


def fingerprints(scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_], floor_db: float) -> NDArray[np.float32]:
    """[N, S] received power per slot, ``floor_db`` where nothing was heard."""
    power = scalars[..., SCALARS.index("power_db")].astype(np.float32)
    heard = rx_mask & (scalars[..., SCALARS.index("present")] > 0.5) & np.isfinite(power)
    return np.where(heard, power, np.float32(floor_db))


def floor_of(scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_]) -> float:
    """The not-heard value: the lowest heard power minus the margin."""
    power = scalars[..., SCALARS.index("power_db")]
    heard = rx_mask & (scalars[..., SCALARS.index("present")] > 0.5) & np.isfinite(power)
    return float(power[heard].min()) - FLOOR_MARGIN_DB if heard.any() else -120.0


@dataclass
class KnnFingerprint:
    """A fitted fingerprint database: predict positions for new fingerprints."""

    database: NDArray[np.float32]  # [M, S]
    latlon: NDArray[np.float64]  # [M, 2]
    floor_db: float
    k: int = 5

    @classmethod
    def fit(cls, scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_], latlon: NDArray[np.float64],
            seed: int = 0) -> KnnFingerprint:
        if len(latlon) > MAX_DATABASE:
            keep = np.sort(np.random.default_rng(seed).choice(len(latlon), MAX_DATABASE, replace=False))
            scalars, rx_mask, latlon = scalars[keep], rx_mask[keep], latlon[keep]
        floor = floor_of(scalars, rx_mask)
        return cls(fingerprints(scalars, rx_mask, floor), np.asarray(latlon, np.float64), floor)

    def neighbours(self, scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_], k: int) -> NDArray[np.int64]:
        """[N, k] database indices of each query's k nearest fingerprints (nearest first)."""
        query = fingerprints(scalars, rx_mask, self.floor_db)
        k = min(k, len(self.database))
        db_sq = (self.database.astype(np.float64) ** 2).sum(1)
        out = np.empty((len(query), k), np.int64)
        for s in range(0, len(query), _CHUNK):
            q = query[s : s + _CHUNK].astype(np.float64)
            d = db_sq[None, :] - 2.0 * q @ self.database.T.astype(np.float64) + (q * q).sum(1)[:, None]
            part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]),
                                                                                              (len(q), 1))
            order = np.take_along_axis(d, part, axis=1).argsort(axis=1, kind="stable")
            out[s : s + _CHUNK] = np.take_along_axis(part, order, axis=1)
        return out

    def predict(self, scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_], k: int | None = None,
                ) -> NDArray[np.float64]:
        """[N, 2] (lat, lon): the mean position of the k nearest fingerprints."""
        idx = self.neighbours(scalars, rx_mask, k or self.k)
        return self.latlon[idx].mean(axis=1)

    def choose_k(self, scalars: NDArray[np.float32], rx_mask: NDArray[np.bool_], latlon: NDArray[np.float64],
                 choices: tuple[int, ...] = K_CHOICES) -> int:
        """Set (and return) the k of smallest mean error on these (validation) samples."""
        from heimdall_cli.data.baselines import errors_m

        idx = self.neighbours(scalars, rx_mask, max(choices))
        best, best_err = choices[0], np.inf
        for k in choices:
            if k > idx.shape[1]:
                break
            err = float(errors_m(self.latlon[idx[:, :k]].mean(axis=1), latlon).mean())
            if err < best_err:
                best, best_err = k, err
        self.k = best
        return best
