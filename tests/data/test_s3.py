"""Datasets in S3, against a real moto server over HTTP (no mocks)."""

import numpy as np
import pytest

from heimdall_cli.data.dataset import build_splits
from heimdall_cli.data.store import open_dataset, upload_dataset
from heimdall_cli.data.synth import write_dataset
from heimdall_cli.errors import BackendUnavailable, ConfigError
from heimdall_cli.settings import DataSettings, StorageSettings
from heimdall_cli.storage import s3_client

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def local(tmp_path, world, features):
    root = tmp_path / "local"
    write_dataset(root, 200, 9, world, features, shard_size=64)
    return root


def test_round_trip_and_cache(local, storage, bucket, tmp_path):
    uri = f"s3://{bucket}/sets/v1"
    manifest = upload_dataset(local, uri, storage)
    keys = sorted(o["Key"] for o in s3_client(storage).list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["sets/v1/manifest.json"] + [f"sets/v1/shard-0000{i}.npz" for i in range(4)]

    cache = tmp_path / "cache"
    remote = open_dataset(uri, storage, cache_dir=cache)
    assert remote.manifest.content_hash == manifest.content_hash and remote.source == uri
    np.testing.assert_array_equal(remote.load().spectrograms, open_dataset(str(local)).load().spectrograms)

    # Cached shards are verified and reused: the bucket can lose one and the dataset still opens.
    s3_client(storage).delete_object(Bucket=bucket, Key="sets/v1/shard-00001.npz")
    assert len(open_dataset(uri, storage, cache_dir=cache)) == 200
    # A fresh cache has to download it: missing object -> ConfigError naming it.
    with pytest.raises(ConfigError, match=r"shard-00001\.npz not found"):
        open_dataset(uri, storage, cache_dir=tmp_path / "fresh")


def test_corrupt_remote_shard(local, storage, bucket, tmp_path):
    uri = f"s3://{bucket}/ds"
    upload_dataset(local, uri, storage)
    raw = bytearray((local / "shard-00002.npz").read_bytes())
    raw[-100] ^= 0xFF
    s3_client(storage).put_object(Bucket=bucket, Key="ds/shard-00002.npz", Body=bytes(raw))
    with pytest.raises(ConfigError, match=r"s3://.*/ds/shard-00002\.npz is corrupt") as e:
        open_dataset(uri, storage, cache_dir=tmp_path / "c")
    assert e.value.exit_code == 2
    assert not list((tmp_path / "c").rglob("shard-00002.npz"))  # nothing bad left in the cache


def test_missing_manifest_and_bucket(storage, bucket, tmp_path):
    with pytest.raises(ConfigError, match=r"manifest\.json not found"):
        open_dataset(f"s3://{bucket}/nothing-here", storage, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        open_dataset("s3://no-such-bucket-heimdall/x", storage, cache_dir=tmp_path)


def test_unreachable_endpoint(tmp_path):
    dead = StorageSettings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="k", secret_access_key="s")
    with pytest.raises(BackendUnavailable, match="unreachable") as e:
        open_dataset("s3://bucket/ds", dead, cache_dir=tmp_path)
    assert e.value.exit_code == 3


def test_build_splits_from_s3(local, storage, bucket, tmp_path):
    uri = f"s3://{bucket}/train-set"
    manifest = upload_dataset(local, uri, storage)
    splits = build_splits(DataSettings(source=uri, seed=1), storage, cache_dir=tmp_path / "c")
    assert splits.identity.digest == manifest.content_hash and splits.identity.source == uri
    assert splits.identity.name == "train-set" and splits.identity.kind == "shards"
    assert len(splits.train) + len(splits.val) + len(splits.test) == 200
    assert splits.train[0]["receivers"].shape[0] == 7
