"""The trainer's DataLoaders read whole batches at once and give the batches item-by-item reads gave."""

import torch
from torch.utils.data import DataLoader

from heimdall_cli.data.batch import collate
from heimdall_cli.data.dataset import build_splits
from heimdall_cli.settings import load_settings
from heimdall_cli.training.prepare import make_loaders
from tests.data.item_by_item import ItemByItem


def test_train_loader_gives_the_batches_of_item_by_item_reads_in_the_seeded_order():
    settings = load_settings(None, flags={"data": {"samples": 160, "seed": 1},
                                          "training": {"batch_size": 16, "seed": 7, "accelerator": "cpu"}},
                             env_file=None)
    splits = build_splits(settings.data)
    train = make_loaders(settings, splits)["train"]
    assert train.collate_fn is collate and not train.pin_memory  # pinned memory only where CUDA takes the batch
    before = DataLoader(ItemByItem(splits.train), batch_size=16, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(settings.training.seed))
    got, want = list(train), list(before)
    assert len(got) == len(want) == len(splits.train) // 16
    for a, b in zip(got, want, strict=True):
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in b)
