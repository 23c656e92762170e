import hashlib
import json

import numpy as np
import pytest

from heimdall_cli.data.features import params_dict
from heimdall_cli.data.manifest import MANIFEST
from heimdall_cli.data.receivers import RECEIVERS
from heimdall_cli.data.samples import Samples
from heimdall_cli.data.shards import STATE, ShardWriter
from heimdall_cli.data.store import open_dataset, upload_dataset
from heimdall_cli.data.synth import generate, write_dataset
from heimdall_cli.errors import ConfigError
from tests.data.conftest import write_v1_dataset


@pytest.fixture
def dataset(tmp_path, world, features):
    root = tmp_path / "ds"
    manifest = write_dataset(root, 300, 5, world, features, shard_size=128)
    return root, manifest


def test_write_read_round_trip(dataset, world, features):
    root, manifest = dataset
    assert [s.samples for s in manifest.shards] == [128, 128, 44]
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST, "shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    data = json.loads((root / MANIFEST).read_text())
    assert data["format"] == "heimdall-rf" and data["version"] == 2 and data["samples"] == 300
    assert data["shape"] == {"slots": 7, "bands": features.bands, "frames": features.frames, "scalars": 5}
    assert data["generator"]["seed"] == 5 and data["generator"]["world"]["version"] == 2
    assert data["features"] == params_dict(features) and data["source"]["kind"] == "synthetic"
    assert [r["name"] for r in data["receivers"]] == [r.name for r in RECEIVERS]
    for s in data["shards"]:
        assert hashlib.sha256((root / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    joined = "".join(s["sha256"] + "\n" for s in data["shards"])
    assert data["content_hash"] == hashlib.sha256(joined.encode()).hexdigest()

    reader = open_dataset(str(root))
    assert len(reader) == 300 and reader.manifest == manifest and reader.manifest.world == world
    loaded, direct = reader.load(), generate(300, 5, world, features)
    for k in Samples.fields():
        np.testing.assert_array_equal(getattr(loaded, k), getattr(direct, k))
    assert isinstance(reader.spectrograms(1), np.memmap)


def test_same_seed_same_files(dataset, tmp_path, world, features):
    root, manifest = dataset
    again = write_dataset(tmp_path / "again", 300, 5, world, features, shard_size=128)
    assert again.content_hash == manifest.content_hash
    for p in root.iterdir():
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes()
    other = write_dataset(tmp_path / "other", 300, 6, world, features, shard_size=128)
    assert other.content_hash != manifest.content_hash


def test_refuses_to_overwrite(dataset, world, features):
    root, _ = dataset
    with pytest.raises(ConfigError, match="already exists"):
        write_dataset(root, 10, 5, world, features)
    write_dataset(root, 10, 5, world, features, overwrite=True)
    assert len(open_dataset(str(root))) == 10


def test_a_cut_off_write_resumes_without_writing_a_shard_twice(tmp_path, world, features):
    root = tmp_path / "cut"
    job = {"kind": "test"}
    writer = ShardWriter(root, receivers=RECEIVERS, features=params_dict(features), source={}, job=job, shard_size=50)
    writer.add(generate(120, 9, world, features), np.arange(1, 121))  # 2 shards written, 20 samples buffered: cut
    assert (root / STATE).is_file() and not (root / MANIFEST).exists()
    first = {p.name: p.stat().st_mtime_ns for p in root.glob("shard-*.npz")}
    assert sorted(first) == ["shard-00000.npz", "shard-00001.npz"]

    again = ShardWriter(root, receivers=RECEIVERS, features=params_dict(features), source={}, job=job, shard_size=50)
    assert again.resumed_samples == 100 and again.cursor == 100
    again.add(generate(80, 9, world, features, start=100), np.arange(101, 181))
    manifest = again.close()
    assert manifest.samples == 180 and not (root / STATE).exists()
    assert {p: (root / p).stat().st_mtime_ns for p in first} == first  # the finished shards were kept as they were
    np.testing.assert_array_equal(open_dataset(str(root)).load().tx_latlon, generate(180, 9, world, features).tx_latlon)
    other = ShardWriter(tmp_path / "x", receivers=RECEIVERS, features={}, source={}, job=job, shard_size=50)
    other.add(generate(60, 1, world, features), np.arange(1, 61))
    with pytest.raises(ConfigError, match="cut-off write of another job"):
        ShardWriter(tmp_path / "x", receivers=RECEIVERS, features={}, source={}, job={"kind": "other"})


def test_version_1_datasets_still_read(tmp_path, small_world):
    """A dataset written by the analytic generator (format version 1) reads into the current layout."""
    root = tmp_path / "v1"
    batch = write_v1_dataset(root, 100, 3, small_world)
    reader = open_dataset(str(root))
    assert reader.manifest.features == {"kind": "analytic-v1"} and reader.manifest.world.version == 1
    s = reader.load()
    assert s.spectrograms.shape == (100, 7, 8, 8) and s.rx_mask.all()
    np.testing.assert_array_equal(s.scalars[..., 4], batch.heard)
    np.testing.assert_array_equal(s.tx_latlon, batch.tx_latlon)


def test_flipped_byte_is_detected(dataset):
    root, _ = dataset
    shard = root / "shard-00001.npz"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=r"shard-00001\.npz") as e:
        open_dataset(str(root))
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_missing_shard(dataset):
    root, _ = dataset
    (root / "shard-00002.npz").unlink()
    with pytest.raises(ConfigError, match=r"shard-00002\.npz is missing"):
        open_dataset(str(root))


def test_missing_dir_and_manifest(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        open_dataset(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"manifest\.json not found"):
        open_dataset(str(tmp_path))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(version=3), "version 3"),
        (lambda m: m.update(format="other"), "not a heimdall-rf"),
        (lambda m: m["shards"][0].update(sha256="0" * 64), "content_hash"),
        (lambda m: m.update(content_hash="0" * 64), "content_hash"),
        (lambda m: m["shards"][0].update(file="../evil.npz"), "invalid shard file name"),
        (lambda m: m.pop("shards"), "malformed manifest"),
        (lambda m: m.update(samples=301), "disagree"),
    ],
)
def test_bad_manifest(dataset, edit, message):
    root, _ = dataset
    data = json.loads((root / MANIFEST).read_text())
    edit(data)
    (root / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as e:
        open_dataset(str(root))
    assert MANIFEST in str(e.value)


def test_unparseable_manifest(dataset):
    root, _ = dataset
    (root / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read manifest"):
        open_dataset(str(root))


def test_local_upload_source_must_be_valid(tmp_path):
    with pytest.raises(ConfigError):
        upload_dataset(tmp_path, "s3://bucket/x")
