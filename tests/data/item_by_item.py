"""A split without ``__getitems__``: the DataLoader reads it one item at a time (the reference for batched reads)."""

from __future__ import annotations

from torch.utils.data import Dataset


class ItemByItem(Dataset):
    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split[i]
