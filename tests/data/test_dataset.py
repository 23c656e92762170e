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


@pytest.mark.slow
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


#: Values read once from the checked-in version-1 dataset (tests/data/fixtures/v1-dataset, seed 2).
V1_RECEIVERS = {0: ("Aquila di Giaveno", 45.02, 7.29), 2: ("Torino", 45.044, 7.672),
                6: ("Milano-Baggio", 45.478, 9.123)}
V1_TX_LATLON = {0: (45.8715775829, 7.630372437), 1: (44.2933077367, 7.7120522634), 59: (45.0052479005, 8.4157759342)}
V1_RX_POWER_0 = [-83.797035, -79.85822, -78.08277, -87.93389, -96.85512, -100.2709, -89.49719]


def test_a_version_1_dataset_still_splits_for_training(v1_dataset):
    """Bytes an old heimdall wrote (checked in, not made by today's code) still read and split for training."""
    import zipfile

    from heimdall_cli.data.store import open_dataset

    reader = open_dataset(str(v1_dataset))
    assert reader.manifest.version == 1 and len(reader) == 60
    assert reader.manifest.features == {"kind": "analytic-v1"} and reader.manifest.world.version == 1
    for i, (name, lat, lon) in V1_RECEIVERS.items():
        r = reader.manifest.receivers[i]
        assert (r.name, r.lat, r.lon) == (name, lat, lon)
    s = reader.load()
    assert s.spectrograms.shape == (60, 7, 8, 8)
    with zipfile.ZipFile(v1_dataset / "shard-00000.npz") as zf:  # the raw members, read without heimdall
        assert sorted(zf.namelist()) == sorted(f"{k}.npy" for k in
                                               ("spectrograms", "rx_power_dbm", "tx_latlon", "heard", "tx_power_dbm"))
    with np.load(v1_dataset / "shard-00000.npz") as raw:
        np.testing.assert_array_equal(s.tx_latlon, raw["tx_latlon"])
        np.testing.assert_array_equal(s.spectrograms, raw["spectrograms"])
        np.testing.assert_array_equal(s.scalars[..., 0], raw["rx_power_dbm"])  # power_db is the v1 power
        np.testing.assert_array_equal(s.tx_power_dbm, raw["tx_power_dbm"])
        assert raw["heard"].all()
    for i, latlon in V1_TX_LATLON.items():
        np.testing.assert_allclose(s.tx_latlon[i], latlon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(s.scalars[0, :, 0], V1_RX_POWER_0, rtol=0, atol=1e-4)
    assert s.tx_power_dbm[0] == pytest.approx(38.57891, abs=1e-4)
    np.testing.assert_allclose(s.spectrograms[0, 0, 0, :3], [23.555328, 25.18039, 11.177826], atol=1e-5)
    for i, (_, lat, lon) in V1_RECEIVERS.items():  # every sample was heard at every receiver, where it stands
        np.testing.assert_allclose(s.rx_latlon[:, i], np.broadcast_to([lat, lon], (60, 2)))
    assert s.rx_mask.all() and (s.scalars[..., 4] == 1).all()

    splits = build_splits(DataSettings(source=str(v1_dataset), seed=1))
    assert splits.features == {"kind": "analytic-v1"} and splits.world.version == 1
    assert (len(splits.train), len(splits.val), len(splits.test)) == (48, 6, 6)
    assert (splits.layout.bands, splits.layout.frames, splits.slots) == (8, 8, 7)
    assert splits.origin == pytest.approx((44.966, 8.160571428571428))  # the receivers' centre
    assert splits.train[0]["receivers"].shape == (7, 8 * 8 + TAIL)
    every = np.concatenate([splits.train.tx_latlon, splits.val.tx_latlon, splits.test.tx_latlon])
    assert sorted(map(tuple, every)) == sorted(map(tuple, s.tx_latlon))  # each labelled sample in one split
    checked = 0
    for split in (splits.train, splits.val, splits.test):
        for k in range(len(split)):
            sample = int(split.indices[k])
            if sample in V1_TX_LATLON:
                item = split[k]
                np.testing.assert_allclose(item["tx_latlon"].numpy(), V1_TX_LATLON[sample], atol=1e-9)
                # The label in local km round-trips to the fixture's latitude/longitude (within a metre).
                back = splits.to_latlon(item["y"].numpy()[None].astype(np.float64))
                assert errors_m(back, np.array([V1_TX_LATLON[sample]]))[0] < 1.0
                checked += 1
    assert checked == len(V1_TX_LATLON)
    # Named feature settings do not refuse it: analytic features have no extractor parameters to compare.
    assert build_splits(DataSettings(source=str(v1_dataset)), features_explicit=True).slots == 7
