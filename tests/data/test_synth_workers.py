"""Generation in several processes gives the same bytes as in one: in memory and written as a dataset."""

import threading

import numpy as np

from heimdall_cli.data.synth import generate, write_dataset


def test_a_dataset_written_by_two_processes_equals_one_written_by_one(tmp_path, world, features):
    assert threading.active_count() == 1  # otherwise generate() stays in-process and this proves nothing
    one = write_dataset(tmp_path / "one", 600, 5, world, features, shard_size=600, workers=1)
    two = write_dataset(tmp_path / "two", 600, 5, world, features, shard_size=600, workers=2)
    assert one.content_hash == two.content_hash
    assert [s.sha256 for s in one.shards] == [s.sha256 for s in two.shards]


def test_parallel_generation_from_an_unaligned_start_equals_serial(world, features):
    serial = generate(400, 1, world, features, start=100, workers=1)
    parallel = generate(400, 1, world, features, start=100, workers=2)
    np.testing.assert_array_equal(serial.spectrograms, parallel.spectrograms)
    np.testing.assert_array_equal(serial.scalars, parallel.scalars)
