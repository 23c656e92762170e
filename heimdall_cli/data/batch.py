"""Batched reads: many items of a dataset fetched in one pass, and the collate function that keeps them batched.

``torch.utils.data.DataLoader`` calls a map-style dataset's ``__getitems__(indices)`` for a
batch when it has one; :class:`Batch` is what :class:`~heimdall_cli.data.dataset.RFDataset`
returns there. ``DataLoader(..., collate_fn=collate)`` takes it as the finished batch; with
any other collate function (``default_collate``) it is a sequence of the single items, so the
result is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from heimdall_cli.data.slots import rebuild, worker_put

SLOT_MIN_BYTES = 1 << 16  # smaller arrays go by value: a slot's bookkeeping costs more than copying them


class Batch(Sequence[dict[str, torch.Tensor]]):
    """Items fetched together (:meth:`RFDataset.__getitems__`). ``collated`` is the batch that
    ``default_collate`` makes of them; as a sequence it yields the items (views into it), so any
    collate function still works."""

    def __init__(self, collated: dict[str, torch.Tensor]) -> None:
        self.collated = collated

    def __len__(self) -> int:
        return len(self.collated["y"])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return {k: v[i] for k, v in self.collated.items()}


class Collated(dict[str, torch.Tensor]):
    """A finished batch (name -> tensor) as a DataLoader worker sends it.

    A tensor leaving a worker otherwise moves into a new shared-memory segment, one per tensor
    and batch, whose every page is faulted in twice (written in the worker, read in the
    trainer); on a virtual machine that costs more CPU than reading the samples. Instead, large
    arrays go through the worker's reused shared-memory slots (:mod:`heimdall_cli.data.slots`),
    and small ones (or all of them, outside a worker or when every slot is in use) by value.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        if all(isinstance(v, torch.Tensor) and v.device.type == "cpu" and not v.requires_grad
               for v in self.values()):
            arrays = {k: v.numpy() for k, v in self.items()}
            return _rebuild, ({k: (worker_put(a) if a.nbytes >= SLOT_MIN_BYTES else None) or a
                               for k, a in arrays.items()},)
        return Collated, (dict(self),)

    def __copy__(self) -> Collated:
        return Collated(self)


def _rebuild(arrays: dict[str, Any]) -> Collated:
    return Collated({k: rebuild(*a) if isinstance(a, tuple) else torch.from_numpy(a) for k, a in arrays.items()})


def collate(batch: Any) -> Any:
    """The DataLoader's collate function: a :class:`Batch` as it is, anything else through ``default_collate``."""
    if isinstance(batch, Batch):
        return Collated(batch.collated)
    from torch.utils.data import default_collate

    return default_collate(batch)
