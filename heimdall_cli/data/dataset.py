"""Torch datasets and deterministic train/val/test splits over synthetic or sharded data.

Items are dicts of tensors:

- ``receivers``: float32 [slots, width], the packed raw features the model reads
  (:mod:`heimdall_cli.data.packing`); the network normalises them itself, with
  :class:`FeatureStats` from the *train* split;
- ``y``: float32 [2], transmitter (east, north) in **km** from the network centre
  (azimuthal-equidistant frame, :mod:`heimdall_cli.data.geo`); ``y_sigma``: float32 [1],
  the label's own uncertainty in km; ``Splits.to_latlon`` maps predictions back;
- ``tx_latlon``: float64 [2], the label in degrees, for metrics in metres.

Only labelled samples are split; unlabelled ones (recordings of unknown sources) are
for ``heimdall predict``.
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

from heimdall_cli.data.batch import Batch
from heimdall_cli.data.features import SCALARS, params_dict
from heimdall_cli.data.geo import from_local_m, to_local_m
from heimdall_cli.data.packing import Layout
from heimdall_cli.data.receivers import RECEIVERS, Receiver, network_centre
from heimdall_cli.data.samples import Samples
from heimdall_cli.data.shards import ShardReader
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.synth import default_workers, features_of, generate, generator_info
from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.settings import DataSettings, FeatureSettings, StorageSettings, WorldSettings

LABEL_SCALE_M = 1000.0  # y is in km: O(100) targets train better than O(1e5) metres
_SPLIT_STREAM = 2**63  # spawn key of the split RNG; synthetic blocks never get this far
_STATS_CHUNK = 1024


@dataclass(frozen=True)
class FeatureStats:
    """Train-split statistics the network normalises with: per slot for spectrograms, per scalar."""

    spec_mean: NDArray[np.float32]  # [slots]
    spec_std: NDArray[np.float32]  # [slots]
    scalar_mean: NDArray[np.float32]  # [len(SCALARS)]
    scalar_std: NDArray[np.float32]

    def to_json(self) -> dict[str, list[float]]:
        return {k: [float(v) for v in getattr(self, k)] for k in ("spec_mean", "spec_std", "scalar_mean",
                                                                  "scalar_std")}


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
    """All samples: in memory, or small arrays plus memory-mapped shard spectrograms."""

    def __init__(self, samples: Samples | None = None, reader: ShardReader | None = None) -> None:
        self.samples, self.reader = samples, reader
        if samples is not None:
            self.small = {k: getattr(samples, k) for k in Samples.fields() if k != "spectrograms"}
            self.layout = Layout(samples.spectrograms.shape[2], samples.spectrograms.shape[3])
        else:
            assert reader is not None
            self.small = reader.small_arrays()
            self.offsets = reader.offsets
            shape = reader.manifest.shape
            self.layout = Layout(shape["bands"], shape["frames"])

    def spec(self, idx: int) -> NDArray[np.float32]:
        if self.samples is not None:
            return self.samples.spectrograms[idx]
        assert self.reader is not None
        shard = int(np.searchsorted(self.offsets, idx, side="right")) - 1
        return self.reader.spectrograms(shard)[idx - self.offsets[shard]]

    def specs(self, sorted_idx: NDArray[np.int64]) -> NDArray[np.float32]:
        """Many spectrograms; ``sorted_idx`` ascending keeps memory-mapped reads sequential."""
        if self.samples is not None:
            return self.samples.spectrograms[sorted_idx]
        assert self.reader is not None
        shards = np.searchsorted(self.offsets, sorted_idx, side="right") - 1
        parts = [self.reader.spectrograms(int(s))[sorted_idx[shards == s] - self.offsets[s]] for s in np.unique(shards)]
        return np.concatenate(parts)

    def packed_many(self, idx: NDArray[np.int64], out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """[len(idx), slots, width] packed rows of the samples ``idx`` (any order), the same values as
        :meth:`packed` row by row: one read per shard, in ascending order inside it (sequential pages)."""
        n, slots, cells = len(idx), self.small["rx_mask"].shape[1], self.layout.bands * self.layout.frames
        if out is None:
            out = np.empty((n, slots, self.layout.width), np.float32)
        spec = out[..., :cells]
        if self.samples is not None:
            spec[...] = self.samples.spectrograms[idx].reshape(n, slots, cells)
        elif n:
            assert self.reader is not None
            shards = np.searchsorted(self.offsets, idx, side="right") - 1
            for shard in np.unique(shards):
                pos = np.flatnonzero(shards == shard)
                local = idx[pos] - self.offsets[shard]
                order = np.argsort(local, kind="stable")
                rows = self.reader.spectrograms(int(shard))[local[order]]
                spec[pos[order]] = rows.reshape(len(pos), slots, cells)
        out[..., self.layout.scalars] = self.small["scalars"][idx]
        out[..., self.layout.position] = self.small["rx_latlon"][idx]
        out[..., self.layout.iq] = self.small["rx_iq"][idx]
        out[..., self.layout.mask] = self.small["rx_mask"][idx]
        return out

    def packed(self, idx: int) -> NDArray[np.float32]:
        """The packed row block [slots, width] of sample ``idx``."""
        spec = self.spec(idx)
        s = spec.shape[0]
        out = np.empty((s, self.layout.width), np.float32)
        out[:, self.layout.spec] = spec.reshape(s, -1)
        out[:, self.layout.scalars] = self.small["scalars"][idx]
        out[:, self.layout.position] = self.small["rx_latlon"][idx]
        out[:, self.layout.iq] = self.small["rx_iq"][idx]
        out[:, self.layout.mask] = self.small["rx_mask"][idx]
        return out


class RFDataset(Dataset):
    """One split: a subset of the (labelled) samples."""

    def __init__(self, store: _Store, indices: NDArray[np.int64], origin: tuple[float, float]):
        self.store, self.indices = store, indices
        lat, lon = self.tx_latlon[:, 0], self.tx_latlon[:, 1]
        east, north = to_local_m(lat, lon, origin)
        self.y_km = (np.stack([east, north], axis=1) / LABEL_SCALE_M).astype(np.float32)
        self.y_sigma_km = (self.small("label_sigma_m")[:, None] / LABEL_SCALE_M).astype(np.float32)

    @classmethod
    def of(cls, samples: Samples, origin: tuple[float, float]) -> RFDataset:
        """All of ``samples`` (labelled) as one split."""
        return cls(_Store(samples=samples), np.arange(len(samples)), origin)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        idx = int(self.indices[i])
        return {
            "receivers": torch.from_numpy(self.store.packed(idx)),
            "y": torch.from_numpy(self.y_km[i]),
            "y_sigma": torch.from_numpy(self.y_sigma_km[i]),
            "tx_latlon": torch.from_numpy(self.store.small["tx_latlon"][idx]),
        }

    def __getitems__(self, items: list[int]) -> Batch:
        """Many items at once (the DataLoader's batched fetch): what ``[self[i] for i in items]`` gives, read in
        one pass; :func:`collate` takes the ready batch, any other collate function the items."""
        pos = np.asarray(items, dtype=np.int64)
        idx = self.indices[pos]
        return Batch({
            "receivers": torch.from_numpy(self.store.packed_many(idx)),
            "y": torch.from_numpy(self.y_km[pos]),
            "y_sigma": torch.from_numpy(self.y_sigma_km[pos]),
            "tx_latlon": torch.from_numpy(self.store.small["tx_latlon"][idx]),
        })

    def small(self, name: str) -> NDArray[Any]:
        """A non-spectrogram field (``scalars``, ``rx_latlon``, ``rx_mask``, …) for this split."""
        return self.store.small[name][self.indices]

    @property
    def tx_latlon(self) -> NDArray[np.float64]:
        """[N, 2] labels in degrees."""
        return self.small("tx_latlon")

    def packed(self, limit: int | None = None) -> NDArray[np.float32]:
        """[N, slots, width] packed inputs of (the first ``limit``) samples of this split."""
        return self.store.packed_many(self.indices[:limit])


@dataclass
class Splits:
    """Everything training needs from the data layer."""

    train: RFDataset
    val: RFDataset
    test: RFDataset
    stats: FeatureStats
    identity: DatasetIdentity
    receivers: tuple[Receiver, ...]
    world: WorldSettings | None
    origin: tuple[float, float]
    features: dict[str, Any]
    layout: Layout
    unlabelled: int = 0
    label_scale_m: float = LABEL_SCALE_M

    def to_latlon(self, y: Any) -> NDArray[np.float64]:
        """Model outputs [N, 2] in label units (km east/north) -> [N, 2] (lat, lon)."""
        y = np.asarray(y, dtype=np.float64) * self.label_scale_m
        lat, lon = from_local_m(y[:, 0], y[:, 1], self.origin)
        return np.stack([lat, lon], axis=1)

    @property
    def slots(self) -> int:
        return len(self.receivers)

    @property
    def extent_km(self) -> float:
        """The scale of the area (km): the RMS distance of the train labels from the origin, at least 100 m."""
        y = self.train.y_km * self.label_scale_m / 1000.0
        return max(0.1, float(np.sqrt(np.mean(np.sum(y * y, axis=1))))) if len(y) else 100.0


def spatial_split_indices(latlon: NDArray[np.float64], val_fraction: float, test_fraction: float, seed: int,
                          cell_m: float) -> tuple[NDArray[np.int64], ...]:
    """Deterministic (train, val, test) index arrays of whole cells: square cells of side ``cell_m`` (east/north of
    the labels' centre) are drawn at random until validation, then test, hold their share of samples."""
    centre = (float(np.mean(latlon[:, 0])), float(np.mean(latlon[:, 1])))
    east, north = to_local_m(latlon[:, 0], latlon[:, 1], centre)
    cells = np.stack([np.floor(east / cell_m), np.floor(north / cell_m)], axis=1).astype(np.int64)
    keys, cell_of = np.unique(cells, axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)
    if len(keys) < 3:
        raise ConfigError(f"A spatial split needs at least 3 cells; the labels fill {len(keys)} of "
                          f"{cell_m:g} m.", "Lower data.split_cell_m.")
    counts = np.bincount(cell_of, minlength=len(keys))
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,))).permutation(len(keys))
    role = np.zeros(len(keys), np.int64)  # 0 train, 1 val, 2 test
    goals = {2: test_fraction * len(latlon), 1: val_fraction * len(latlon)}
    filled = {1: 0, 2: 0}
    for cell in order:
        for r in (2, 1):
            if filled[r] < goals[r]:
                role[cell], filled[r] = r, filled[r] + counts[cell]
                break
    sample_role = role[cell_of]
    train, val, test = (np.flatnonzero(sample_role == r) for r in (0, 1, 2))
    if not len(train) or not len(val) or not len(test):
        raise ConfigError(f"The spatial split of {len(latlon)} samples left a split empty.", "Lower data.split_cell_m.")
    return train, val, test


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[NDArray[np.int64], ...]:
    """Deterministic (train, val, test) index arrays, each sorted; val and test get >= 1."""
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise ConfigError(f"{n} labelled samples are too few for the val/test fractions.")
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM,))).permutation(n)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


def feature_stats(store: _Store, train_idx: NDArray[np.int64]) -> FeatureStats:
    """Means and stds over the recorded slots of the given samples, accumulated in float64 chunks.

    Spectrogram statistics count the slots with IQ; each scalar's, the recorded slots where it is known.
    """
    slots = store.small["rx_mask"].shape[1]
    count, s1, s2 = np.zeros(slots), np.zeros(slots), np.zeros(slots)
    for c in range(0, len(train_idx), _STATS_CHUNK):
        chunk = train_idx[c : c + _STATS_CHUNK]
        x = store.specs(chunk).astype(np.float64)
        m = store.small["rx_iq"][chunk][..., None, None]
        cells = x.shape[2] * x.shape[3]
        count += m[..., 0, 0].sum(0) * cells
        s1 += (x * m).sum(axis=(0, 2, 3))
        s2 += (x * x * m).sum(axis=(0, 2, 3))
    spec_mean = s1 / np.maximum(count, 1)
    spec_std = np.where(count > 0, np.sqrt(np.maximum(s2 / np.maximum(count, 1) - spec_mean**2, 1e-6)), 1.0)
    mask = store.small["rx_mask"][train_idx]
    scalars = store.small["scalars"][train_idx][mask].astype(np.float64)  # [recorded slots, K]
    if len(scalars) == 0:
        raise ConfigError("The train split holds no recorded receiver.")
    known = np.isfinite(scalars)
    count_k = np.maximum(known.sum(0), 1)
    scalar_mean = np.where(known, scalars, 0.0).sum(0) / count_k
    scalar_var = np.where(known, (scalars - scalar_mean) ** 2, 0.0).sum(0) / count_k
    scalar_std = np.maximum(np.sqrt(scalar_var), 1e-3)
    present = SCALARS.index("present")
    scalar_mean[present], scalar_std[present] = 0.0, 1.0  # a flag stays a flag
    return FeatureStats(spec_mean.astype(np.float32), spec_std.astype(np.float32), scalar_mean.astype(np.float32),
                        scalar_std.astype(np.float32))


def synthetic_digest(samples: int, seed: int, world: WorldSettings, params: FeatureSettings) -> str:
    """sha256 of the generator parameters: equal digests mean equal synthetic data."""
    info = {**generator_info(world, seed), "samples": samples, "features": features_of(world, params)}
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()


def check_features(dataset: dict[str, Any], wanted: FeatureSettings, where: str,
                   hint: str = "Use the dataset's parameters (drop the data.features settings) or import it again.",
                   ) -> None:
    """ConfigError when a dataset's features were made with other extractor parameters than ``wanted``."""
    expected = params_dict(wanted)
    if dataset != expected:
        differ = sorted(k for k in set(dataset) | set(expected) if dataset.get(k) != expected.get(k))
        shown = ", ".join(f"{k} {dataset.get(k)!r} (asked: {expected.get(k)!r})" for k in differ)
        raise ConfigError(f"{where} was made with other feature parameters: {shown}.", hint)


def build_splits(data: DataSettings, storage: StorageSettings | None = None, *, cache_dir: Any = None,
                 features_explicit: bool = False) -> Splits:
    """Load ``data.source`` ("synthetic", a dataset folder or s3://…) and split its labelled samples.

    ``features_explicit``: the settings name ``data.features`` values; a dataset made with
    others is then refused instead of read with its own.
    """
    if data.source == "synthetic":
        samples = generate(data.samples, data.seed, data.world, data.features,
                           workers=data.synth_workers or default_workers())
        store = _Store(samples=samples)
        receivers: tuple[Receiver, ...] = RECEIVERS if not data.world.random_placement else tuple(
            Receiver(f"slot-{i}", 0.0, 0.0, 0.0) for i in range(samples.rx_mask.shape[1]))
        world: WorldSettings | None = data.world
        features = features_of(data.world, data.features)
        digest = synthetic_digest(data.samples, data.seed, data.world, data.features)
        identity = DatasetIdentity(f"synthetic-{digest[:12]}", digest, "synthetic", "synthetic", data.samples)
    else:
        reader = open_dataset(data.source, storage, cache_dir=cache_dir)
        m = reader.manifest
        if features_explicit and m.features.get("kind") != "analytic-v1":
            check_features(m.features, data.features, f"Dataset {data.source}")
        store = _Store(reader=reader)
        receivers, world, features = m.receivers, m.world, m.features
        identity = DatasetIdentity(reader.name, m.content_hash, data.source, "shards", m.samples)
    labelled = np.flatnonzero(np.isfinite(store.small["tx_latlon"]).all(axis=1))
    if data.split == "spatial":
        parts = spatial_split_indices(store.small["tx_latlon"][labelled], data.val_fraction, data.test_fraction,
                                      data.seed, data.split_cell_m)
    else:
        parts = split_indices(len(labelled), data.val_fraction, data.test_fraction, data.seed)
    train_idx, val_idx, test_idx = (labelled[i] for i in parts)
    stats = feature_stats(store, train_idx)
    if world is not None and world.random_placement:
        origin = (float(np.mean(world.lat_range)), float(np.mean(world.lon_range)))
    else:
        origin = network_centre(receivers)
        if not np.isfinite(origin).all():  # no fixed receiver with a position: the labels' centre
            lat0, lon0 = np.mean(store.small["tx_latlon"][train_idx], axis=0)
            origin = (float(lat0), float(lon0))
    return Splits(
        train=RFDataset(store, train_idx, origin), val=RFDataset(store, val_idx, origin),
        test=RFDataset(store, test_idx, origin), stats=stats, identity=identity, receivers=receivers, world=world,
        origin=origin, features=features, layout=store.layout, unlabelled=int(len(store.small["tx_latlon"])
                                                                              - len(labelled)),
    )

