import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from heimdall_cli.data.baselines import errors_m
from heimdall_cli.data.dataset import build_splits, split_indices
from heimdall_cli.data.receivers import NETWORK_CENTRE
from heimdall_cli.data.shards import write_dataset
from heimdall_cli.data.synth import generate
from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import DataSettings


@pytest.fixture
def settings(small_world):
    return DataSettings(samples=300, seed=3, val_fraction=0.1, test_fraction=0.2, world=small_world)


def test_split_indices_deterministic_and_disjoint():
    train, val, test = split_indices(1000, 0.1, 0.2, seed=4)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(1000))
    again = split_indices(1000, 0.1, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(split_indices(1000, 0.1, 0.2, seed=5)[2], test)
    with pytest.raises(ConfigError):
        split_indices(2, 0.4, 0.4, seed=0)


def test_synthetic_splits(settings):
    splits = build_splits(settings)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (210, 30, 60)
    item = splits.train[0]
    assert set(item) == {"x", "y", "rx_power_dbm", "heard", "tx_latlon"}
    assert item["x"].shape == (7, 8, 8) and item["x"].dtype == torch.float32
    assert item["y"].shape == (2,) and item["y"].dtype == torch.float32
    assert splits.identity.kind == "synthetic" and splits.identity.samples == 300
    assert splits.origin == NETWORK_CENTRE and splits.world == settings.world

    # Deterministic: same settings, same items and statistics.
    again = build_splits(settings)
    assert torch.equal(again.test[5]["x"], splits.test[5]["x"])
    assert again.identity == splits.identity
    assert np.array_equal(again.norm.mean, splits.norm.mean)
    other = build_splits(settings.model_copy(update={"seed": 4}))
    assert other.identity.digest != splits.identity.digest


def test_normalisation_uses_train_only(settings):
    splits = build_splits(settings)
    raw = generate(300, settings.seed, settings.world).spectrograms.astype(np.float64)
    train = raw[splits.train.indices]
    np.testing.assert_allclose(splits.norm.mean, train.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(splits.norm.std, train.std(axis=(0, 2, 3)), rtol=1e-4)
    assert not np.allclose(splits.norm.mean, raw.mean(axis=(0, 2, 3)), rtol=1e-5)
    x = torch.stack([splits.train[i]["x"] for i in range(len(splits.train))])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(7), atol=1e-3)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(7), atol=1e-2)


def test_labels_in_local_km(settings):
    splits = build_splits(settings)
    val = splits.val
    assert np.abs(val.y_km).max() < 300  # km from the centre, not metres or degrees
    assert errors_m(splits.to_latlon(val.y_km), val.tx_latlon).max() < 1.0
    assert val.rx_power_dbm.shape == (30, 7) and val.heard.shape == (30, 7)


def test_shard_source_matches_synthetic(settings, tmp_path):
    manifest = write_dataset(tmp_path / "ds", 300, settings.seed, settings.world, shard_size=100)
    from_disk = build_splits(settings.model_copy(update={"source": str(tmp_path / "ds")}))
    in_memory = build_splits(settings)
    assert from_disk.identity.digest == manifest.content_hash and from_disk.identity.name == "ds"
    np.testing.assert_allclose(from_disk.norm.mean, in_memory.norm.mean, rtol=1e-6)
    for i in (0, 99, 100, 209):
        a, b = from_disk.train[i], in_memory.train[i]
        assert all(torch.equal(a[k], b[k]) or torch.allclose(a[k], b[k], equal_nan=True) for k in a)
    # Workers get the dataset pickled: memory maps are reopened, not copied.
    clone = pickle.loads(pickle.dumps(from_disk.val))
    assert torch.equal(clone[3]["x"], from_disk.val[3]["x"])
    batch = next(iter(DataLoader(from_disk.train, batch_size=16)))
    assert batch["x"].shape == (16, 7, 8, 8) and batch["tx_latlon"].dtype == torch.float64
