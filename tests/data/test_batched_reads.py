"""Batched reads (``RFDataset.__getitems__`` + ``collate``) give exactly the batches that item-by-item reads give."""

import copy
import io
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from heimdall_cli.data.batch import Batch, Collated, collate
from heimdall_cli.data.dataset import build_splits
from heimdall_cli.data.synth import write_dataset
from heimdall_cli.settings import DataSettings, FeatureSettings, WorldSettings
from tests.data.item_by_item import ItemByItem

from .conftest import V1_FIXTURE


def batches(dataset, *, seed=5, batch_size=16, **kwargs):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        **kwargs)
    return list(loader)


def assert_same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert set(a) == set(b)
        for key in b:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched") / "ds"
    write_dataset(root, 300, 4, WorldSettings(), FeatureSettings(), shard_size=70)  # 5 shards, the last short
    return build_splits(DataSettings(source=str(root), seed=4))


def test_shard_batches_equal_item_by_item_in_the_same_order(shards):
    want = batches(ItemByItem(shards.train))
    assert_same(batches(shards.train, collate_fn=collate), want)
    assert_same(batches(shards.train), want)  # default_collate over a Batch: the items, the same result


def test_in_memory_and_v1_batches_equal_item_by_item(world):
    synthetic = build_splits(DataSettings(samples=120, seed=2, world=world))
    assert_same(batches(synthetic.train, collate_fn=collate), batches(ItemByItem(synthetic.train)))
    v1 = build_splits(DataSettings(source=str(V1_FIXTURE)))
    assert_same(batches(v1.val, batch_size=4, collate_fn=collate), batches(ItemByItem(v1.val), batch_size=4))


def test_repeated_and_unsorted_indices_across_shards(shards):
    items = [len(shards.train) - 1, 0, 0, 130, 7, 200]
    got = shards.train.__getitems__(items).collated
    want = default_collate([shards.train[i] for i in items])
    assert_same([got], [want])
    np.testing.assert_array_equal(shards.train.packed(20), np.stack([shards.train[i]["receivers"] for i in
                                                                       range(20)]))


def test_a_worker_sends_the_same_batches(shards):
    want = batches(shards.train, collate_fn=collate)
    assert_same(batches(shards.train, collate_fn=collate, num_workers=1), want)


def test_collated_pickles_by_value_and_copies():
    batch = collate(Batch({"receivers": torch.arange(12.0).view(2, 2, 3), "y": torch.zeros(2, 2)}))
    assert isinstance(batch, Collated)
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(batch)  # what a worker's queue does
    back = pickle.loads(buf.getvalue())
    assert isinstance(back, Collated) and torch.equal(back["receivers"], batch["receivers"])
    assert not back["receivers"].is_shared()  # bytes through the pipe, not a shared-memory segment
    clone = copy.copy(batch)  # what pin_memory does before replacing the values
    assert isinstance(clone, Collated) and clone["y"] is batch["y"]
