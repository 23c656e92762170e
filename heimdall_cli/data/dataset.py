"""Torch datasets and deterministic train/val/test splits over synthetic or sharded data.

Items are dicts of tensors:

- ``x``: float32 [R, n_mels, n_frames], log-mel dB normalised per receiver channel with
  mean/std from the *train* split only;
- ``y``: float32 [2], transmitter (east, north) in **km** from the network centre
  (azimuthal-equidistant frame, :mod:`heimdall_cli.data.geo`); ``Splits.to_latlon``
  maps predictions back;
- ``rx_power_dbm``: float32 [R], NaN where the receiver heard nothing; ``heard``: bool [R];
- ``tx_latlon``: float64 [2], the label in degrees, for metrics in metres.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from heimdall_cli.data.geo import from_local_m, to_local_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver, network_centre
from heimdall_cli.data.shards import ShardReader
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.synth import SYNTH_VERSION, SynthBatch, generate

if TYPE_CHECKING:
    from heimdall_cli.settings import DataSettings, StorageSettings, WorldSettings

LABEL_SCALE_M = 1000.0  # y is in km: O(100) targets train better than O(1e5) metres
_SPLIT_STREAM = 2**63  # spawn key of the split RNG; synthetic blocks never get this far
_STATS_CHUNK = 1024


@dataclass(frozen=True)
class NormStats:
    """Per-receiver-channel mean and std of the log-mel values (train split)."""

    mean: NDArray[np.float32]  # [R]
    std: NDArray[np.float32]  # [R]

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}


@dataclass(frozen=True)
class DatasetIdentity:
    """What MLflow's dataset input records. ``digest`` is the manifest content hash for
    shards, and a sha256 of the generator parameters for in-memory synthetic data."""

    name: str
    digest: str
    source: str
    kind: str  # "synthetic" | "shards"
    samples: int


class _Store:
    """All samples: in-memory arrays, or small arrays plus memory-mapped shard spectrograms."""

    def __init__(self, batch: SynthBatch | None = None, reader: ShardReader | None = None) -> None:
        self.batch, self.reader = batch, reader
        if batch is not None:
            self.small = {k: getattr(batch, k) for k in SynthBatch.fields() if k != "spectrograms"}
        else:
            assert reader is not None
            self.small = reader.small_arrays()
            self.offsets = reader.offsets

    def spec(self, idx: int) -> NDArray[np.float32]:
        if self.batch is not None:
            return self.batch.spectrograms[idx]
        assert self.reader is not None
        shard = int(np.searchsorted(self.offsets, idx, side="right")) - 1
        return self.reader.spectrograms(shard)[idx - self.offsets[shard]]

    def specs(self, sorted_idx: NDArray[np.int64]) -> NDArray[np.float32]:
        """Many spectrograms; ``sorted_idx`` ascending keeps memory-mapped reads sequential."""
        if self.batch is not None:
            return self.batch.spectrograms[sorted_idx]
        assert self.reader is not None
        shards = np.searchsorted(self.offsets, sorted_idx, side="right") - 1
        parts = [self.reader.spectrograms(int(s))[sorted_idx[shards == s] - self.offsets[s]] for s in np.unique(shards)]
        return np.concatenate(parts)


class RFDataset(Dataset):
    """One split: a subset of the samples, normalised with the train statistics."""

    def __init__(self, store: _Store, indices: NDArray[np.int64], norm: NormStats, origin: tuple[float, float]):
        self.store, self.indices = store, indices
        self._mean = norm.mean[:, None, None]
        self._inv_std = (1.0 / norm.std)[:, None, None]
        lat, lon = self.tx_latlon[:, 0], self.tx_latlon[:, 1]
        east, north = to_local_m(lat, lon, origin)
        self.y_km = (np.stack([east, north], axis=1) / LABEL_SCALE_M).astype(np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        idx = int(self.indices[i])
        x = (self.store.spec(idx) - self._mean) * self._inv_std
        return {
            "x": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            "y": torch.from_numpy(self.y_km[i]),
            "rx_power_dbm": torch.from_numpy(self.store.small["rx_power_dbm"][idx]),
            "heard": torch.from_numpy(self.store.small["heard"][idx]),
            "tx_latlon": torch.from_numpy(self.store.small["tx_latlon"][idx]),
        }

    @property
    def rx_power_dbm(self) -> NDArray[np.float32]:
        """[N, R] for this split (the RSSI baseline's input)."""
        return self.store.small["rx_power_dbm"][self.indices]

    @property
    def heard(self) -> NDArray[np.bool_]:
        return self.store.small["heard"][self.indices]

    @property
    def tx_latlon(self) -> NDArray[np.float64]:
        """[N, 2] labels in degrees."""
        return self.store.small["tx_latlon"][self.indices]


@dataclass
class Splits:
    """Everything training needs from the data layer."""

    train: RFDataset
    val: RFDataset
    test: RFDataset
    norm: NormStats
    identity: DatasetIdentity
    receivers: tuple[Receiver, ...]
    world: WorldSettings | None
    origin: tuple[float, float]
    label_scale_m: float = LABEL_SCALE_M

    def to_latlon(self, y: Any) -> NDArray[np.float64]:
        """Model outputs [N, 2] in label units (km east/north) -> [N, 2] (lat, lon)."""
        y = np.asarray(y, dtype=np.float64) * self.label_scale_m
        lat, lon = from_local_m(y[:, 0], y[:, 1], self.origin)
        return np.stack([lat, lon], axis=1)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[NDArray[np.int64], ...]:
    """Deterministic (train, val, test) index arrays, each sorted; val and test get >= 1."""
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        from heimdall_cli.errors import ConfigError

        raise ConfigError(f"{n} samples are too few for the val/test fractions.")
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,))).permutation(n)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def norm_stats(store: _Store, train_idx: NDArray[np.int64]) -> NormStats:
    """Per-receiver mean/std over the given samples, accumulated in float64 chunks."""
    total = s1 = s2 = 0.0
    for c in range(0, len(train_idx), _STATS_CHUNK):
        x = store.specs(train_idx[c : c + _STATS_CHUNK]).astype(np.float64)
        s1 = s1 + x.sum(axis=(0, 2, 3))
        s2 = s2 + (x * x).sum(axis=(0, 2, 3))
        total += x.shape[0] * x.shape[2] * x.shape[3]
    mean = np.asarray(s1) / total
    std = np.sqrt(np.maximum(np.asarray(s2) / total - mean**2, 1e-12))
    return NormStats(mean.astype(np.float32), std.astype(np.float32))


def synthetic_digest(samples: int, seed: int, world: WorldSettings) -> str:
    """sha256 of the generator parameters: equal digests mean equal synthetic data."""
    params = {
        "generator": "heimdall-synth",
        "version": SYNTH_VERSION,
        "samples": samples,
        "seed": seed,
        "world": world.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def build_splits(data: DataSettings, storage: StorageSettings | None = None, *, cache_dir: Any = None) -> Splits:
    """Load ``data.source`` ("synthetic", a dataset folder or s3://…) and split it."""
    if data.source == "synthetic":
        store = _Store(batch=generate(data.samples, data.seed, data.world))
        receivers: tuple[Receiver, ...] = RECEIVERS
        world: WorldSettings | None = data.world
        digest = synthetic_digest(data.samples, data.seed, data.world)
        identity = DatasetIdentity(f"synthetic-{digest[:12]}", digest, "synthetic", "synthetic", data.samples)
    else:
        reader = open_dataset(data.source, storage, cache_dir=cache_dir)
        store = _Store(reader=reader)
        receivers = reader.manifest.receivers
        world = reader.manifest.world if "world" in reader.manifest.generator else None
        m = reader.manifest
        identity = DatasetIdentity(reader.name, m.content_hash, data.source, "shards", m.samples)
    n = len(store.small["tx_latlon"])
    train_idx, val_idx, test_idx = split_indices(n, data.val_fraction, data.test_fraction, data.seed)
    norm = norm_stats(store, train_idx)
    origin = network_centre(receivers)
    return Splits(
        train=RFDataset(store, train_idx, norm, origin),
        val=RFDataset(store, val_idx, norm, origin),
        test=RFDataset(store, test_idx, norm, origin),
        norm=norm,
        identity=identity,
        receivers=receivers,
        world=world,
        origin=origin,
    )
