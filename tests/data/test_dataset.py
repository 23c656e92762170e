import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from heimdall_cli.data.baselines import errors_m
from heimdall_cli.data.dataset import build_splits, split_indices
from heimdall_cli.data.packing import TAIL
from heimdall_cli.data.receivers import NETWORK_CENTRE
from heimdall_cli.data.synth import generate, write_dataset
from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import DataSettings, FeatureSettings


@pytest.fixture
def settings(world):
    return DataSettings(samples=300, seed=3, val_fraction=0.1, test_fraction=0.2, world=world)


def test_split_indices_deterministic_and_disjoint():
    train, val, test = split_indices(1000, 0.1, 0.2, seed=4)
    assert (len(train), len(val), len(test)) == (700, 100, 200)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(1000))
    again = split_indices(1000, 0.1, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(split_indices(1000, 0.1, 0.2, seed=5)[2], test)
    with pytest.raises(ConfigError):
        split_indices(2, 0.4, 0.4, seed=0)


def test_synthetic_splits(settings, features):
    splits = build_splits(settings)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (210, 30, 60)
    item = splits.train[0]
    assert set(item) == {"receivers", "y", "y_sigma", "tx_latlon"}
    assert item["receivers"].shape == (7, features.bands * features.frames + TAIL)
    assert item["receivers"].dtype == torch.float32 and item["y"].shape == (2,)
    assert splits.identity.kind == "synthetic" and splits.identity.samples == 300
    assert splits.origin == NETWORK_CENTRE and splits.world == settings.world and splits.slots == 7

    again = build_splits(settings)
    assert torch.equal(again.test[5]["receivers"], splits.test[5]["receivers"])
    assert again.identity == splits.identity
    assert np.array_equal(again.stats.spec_mean, splits.stats.spec_mean)
    assert build_splits(settings.model_copy(update={"seed": 4})).identity.digest != splits.identity.digest
    other_features = settings.model_copy(update={"features": FeatureSettings(fft_size=128)})
    assert build_splits(other_features).identity.digest != splits.identity.digest


def test_statistics_come_from_the_train_split_and_recorded_slots(settings):
    splits = build_splits(settings)
    raw = generate(300, settings.seed, settings.world, settings.features)
    idx = splits.train.indices
    spec, mask = raw.spectrograms[idx].astype(np.float64), raw.rx_mask[idx]
    expected = [(spec[:, s][mask[:, s]]).mean() for s in range(7)]
    np.testing.assert_allclose(splits.stats.spec_mean, expected, rtol=1e-5)
    power = raw.scalars[idx][..., 0][mask]
    assert splits.stats.scalar_mean[0] == pytest.approx(power.mean(), rel=1e-4)
    assert (splits.stats.scalar_mean[4], splits.stats.scalar_std[4]) == (0.0, 1.0)  # "present" stays a flag


def test_labels_in_local_km(settings):
    splits = build_splits(settings)
    val = splits.val
    assert np.abs(val.y_km).max() < 300  # km from the centre, not metres or degrees
    assert errors_m(splits.to_latlon(val.y_km), val.tx_latlon).max() < 1.0
    assert val.small("scalars").shape == (30, 7, 5)


def test_shard_source_matches_synthetic(settings, tmp_path):
    manifest = write_dataset(tmp_path / "ds", 300, settings.seed, settings.world, settings.features, shard_size=100)
    from_disk = build_splits(settings.model_copy(update={"source": str(tmp_path / "ds")}))
    in_memory = build_splits(settings)
    assert from_disk.identity.digest == manifest.content_hash and from_disk.identity.name == "ds"
    np.testing.assert_allclose(from_disk.stats.spec_mean, in_memory.stats.spec_mean, rtol=1e-6)
    for i in (0, 99, 100, 209):
        a, b = from_disk.train[i], in_memory.train[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
    clone = pickle.loads(pickle.dumps(from_disk.val))  # workers: memory maps are reopened, not copied
    assert torch.equal(clone[3]["receivers"], from_disk.val[3]["receivers"])
    batch = next(iter(DataLoader(from_disk.train, batch_size=16)))
    assert batch["receivers"].shape[:2] == (16, 7) and batch["tx_latlon"].dtype == torch.float64


def test_a_dataset_of_other_feature_parameters_is_refused_when_the_settings_name_them(settings, tmp_path):
    write_dataset(tmp_path / "ds", 100, 1, settings.world, FeatureSettings(fft_size=128), shard_size=100)
    data = settings.model_copy(update={"source": str(tmp_path / "ds")})
    assert build_splits(data).layout.frames == 32  # not named: the dataset's own parameters are used
    with pytest.raises(ConfigError, match=r"other feature parameters: fft_size 128 \(asked: 64\)"):
        build_splits(data, features_explicit=True)


def test_unlabelled_samples_are_left_out_of_the_splits(settings, tmp_path):
    from heimdall_cli.data.features import params_dict
    from heimdall_cli.data.receivers import RECEIVERS
    from heimdall_cli.data.shards import ShardWriter

    samples = generate(120, 2, settings.world, settings.features)
    samples.tx_latlon[::3] = np.nan  # a third are recordings of unknown sources
    writer = ShardWriter(tmp_path / "mixed", receivers=RECEIVERS, features=params_dict(settings.features),
                         source={"kind": "test"}, job={})
    writer.add(samples, np.arange(1, 121))
    writer.close()
    splits = build_splits(settings.model_copy(update={"source": str(tmp_path / "mixed")}))
    assert splits.unlabelled == 40 and len(splits.train) + len(splits.val) + len(splits.test) == 80
    assert np.isfinite(splits.train.tx_latlon).all()


def test_a_version_1_dataset_still_splits_for_training(tmp_path, small_world):
    from tests.data.conftest import write_v1_dataset

    write_v1_dataset(tmp_path / "v1", 120, 2, small_world)
    splits = build_splits(DataSettings(source=str(tmp_path / "v1"), seed=1))
    assert splits.features == {"kind": "analytic-v1"} and splits.world.version == 1
    assert (splits.layout.bands, splits.layout.frames, splits.slots) == (8, 8, 7)
    assert splits.train[0]["receivers"].shape == (7, 8 * 8 + TAIL)
    # Named feature settings do not refuse it: analytic features have no extractor parameters to compare.
    assert build_splits(DataSettings(source=str(tmp_path / "v1")), features_explicit=True).slots == 7
