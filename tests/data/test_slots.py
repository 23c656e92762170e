"""Workers hand large arrays over in reused shared-memory slots; a batch stays valid as long as the trainer holds it."""

import gc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from heimdall_cli.data import slots
from heimdall_cli.data.batch import collate
from heimdall_cli.data.dataset import build_splits
from heimdall_cli.data.synth import write_dataset
from heimdall_cli.settings import DataSettings, FeatureSettings, WorldSettings
from tests.data.item_by_item import ItemByItem


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    root = tmp_path_factory.mktemp("slots") / "ds"
    write_dataset(root, 300, 4, WorldSettings(), FeatureSettings(), shard_size=70)
    return build_splits(DataSettings(source=str(root), seed=4)).train


def loader(dataset, workers, collate_fn=None):
    return DataLoader(dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(5),
                      num_workers=workers, collate_fn=collate_fn)


def test_a_slot_is_free_again_only_when_every_view_of_its_batch_is_gone():
    ring = slots.WorkerSlots(4 * 4096)
    first = np.arange(4096, dtype=np.float32).reshape(64, 64)
    handle = ring.put(first)
    assert handle is not None and handle[3] is not None and handle[4] is not None  # announces segment and flags
    tensor = slots.rebuild(*handle)
    assert torch.equal(tensor, torch.from_numpy(first)) and ring.flags[0] == 1
    view = tensor[3:5]
    del tensor
    gc.collect()
    assert ring.flags[0] == 1  # a view still reads the slot
    second = ring.put(first + 1)  # so the next array takes another slot
    assert second is not None and second[2] == 1 and second[4] is None
    assert torch.equal(view, torch.from_numpy(first[3:5]))
    del view
    gc.collect()
    assert ring.flags[0] == 0
    assert ring.put(first)[2:4] == (0, None)  # slot 0 again, already mapped
    too_big = np.zeros(4097, np.float32)
    assert ring.put(too_big) is None


def test_every_slot_in_use_falls_back_to_by_value():
    ring = slots.WorkerSlots(64)
    held = [slots.rebuild(*ring.put(np.full(16, i, np.float32))) for i in range(slots.MAX_SLOTS)]
    assert ring.put(np.zeros(16, np.float32)) is None
    assert [int(t[0]) for t in held] == list(range(slots.MAX_SLOTS))


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_send_the_batches_of_item_by_item_reads_through_slots(train, workers):
    want = list(loader(ItemByItem(train), 0))
    before = set(slots._ATTACHED)
    got = list(loader(train, workers, collate))  # all held at once: more batches than slots for one worker
    assert len(got) == len(want) > slots.MAX_SLOTS
    for a, b in zip(got, want, strict=True):
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in b)
    new = [a for t, a in slots._ATTACHED.items() if t not in before]
    assert len(new) == workers and all(0 < len(a.segments) <= slots.MAX_SLOTS for a in new)


def test_dropped_batches_free_their_slots_and_a_kept_view_stays_valid(train):
    reference = loader(ItemByItem(train), 0)
    want = [b for _ in range(3) for b in reference]  # each epoch draws its own order from the seeded generator
    before = set(slots._ATTACHED)
    kept = None
    epochs = loader(train, 1, collate)
    for n, batch in enumerate(b for _ in range(3) for b in epochs):
        assert all(torch.equal(batch[k], want[n][k]) for k in want[n])
        if n == 0:
            kept = batch["receivers"][2:4]  # a view of the first batch, held to the end
        del batch
    assert torch.equal(kept, want[0]["receivers"][2:4])
    (attached,) = [a for t, a in slots._ATTACHED.items() if t not in before]
    assert len(attached.segments) < slots.MAX_SLOTS  # 45 batches: slots were reused
