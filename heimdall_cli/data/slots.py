"""Shared-memory slots a DataLoader worker reuses to hand its batches' large arrays to the trainer.

A tensor that leaves a worker normally moves into a new shared-memory segment, or goes by value
through the pipe into memory the trainer allocates for it. Either way every batch touches fresh
pages or pays for the pipe in small chunks, and on a virtual machine that costs more CPU than
reading the samples. Here each worker keeps a few segments (:class:`WorkerSlots`), maps each
into the trainer once, and afterwards sends only a handle: the worker copies the array into a
free slot, the trainer wraps the slot's pages in a tensor without copying.

A slot is reused only after the trainer has dropped every tensor (and view) of the batch it
holds: the trainer's array carries a finalizer that marks the slot free in a flag array both
processes share. When every slot is in use (the trainer keeps many batches), the array goes
by value as before, so nothing waits and nothing is overwritten.
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

MAX_SLOTS = 8  # per worker: prefetched batches, the one in the trainer, the previous one, pinning
_FREE, _IN_USE = 0, 1


class WorkerSlots:
    """One worker process's slots: same-sized shared segments and the shared in-use flags."""

    def __init__(self, nbytes: int) -> None:
        self.token = uuid.uuid4().hex  # tells this worker's slots apart from any other's in the trainer
        self.nbytes = nbytes
        self.flags = torch.zeros(MAX_SLOTS, dtype=torch.uint8).share_memory_()
        self._flags = self.flags.numpy()
        self.segments: list[torch.Tensor] = []  # uint8 [nbytes] each, shared
        self._announced = False

    def put(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        """Copy ``array`` into a free slot and return the handle that rebuilds it in the trainer
        (:func:`rebuild`), or None when it does not fit or every slot is in use."""
        if array.nbytes > self.nbytes or not array.flags.c_contiguous:
            return None
        free = np.flatnonzero(self._flags[: len(self.segments)] == _FREE)
        if len(free):
            slot = int(free[0])
            segment = None
        elif len(self.segments) < MAX_SLOTS:
            slot = len(self.segments)
            self.segments.append(torch.empty(self.nbytes, dtype=torch.uint8).share_memory_())
            segment = self.segments[slot]  # the first handle of a slot carries its segment
        else:
            return None
        self.segments[slot].numpy()[: array.nbytes] = array.reshape(-1).view(np.uint8)
        self._flags[slot] = _IN_USE
        flags = None if self._announced else self.flags
        self._announced = True
        return (self.token, os.getpid(), slot, segment, flags, array.dtype.str, array.shape)


_WORKER: dict[str, WorkerSlots] = {}  # this process's slots, when it is a DataLoader worker


def worker_put(array: NDArray[Any]) -> tuple[Any, ...] | None:
    """In a DataLoader worker, :meth:`WorkerSlots.put` into this worker's slots; elsewhere None (by value)."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is None or array.nbytes == 0:
        return None
    slots = _WORKER.get("slots")
    if slots is None or array.nbytes > slots.nbytes:
        if slots is not None and any(slots._flags[: len(slots.segments)] == _IN_USE):
            return None  # a larger batch while the trainer holds the old slots: by value
        slots = _WORKER["slots"] = WorkerSlots(array.nbytes)
    return slots.put(array)


class _Attached:
    """The trainer's side of one worker's slots: its flags and the segments mapped so far."""

    def __init__(self, pid: int, flags: torch.Tensor) -> None:
        self.pid, self.flags = pid, flags
        self.release = flags.numpy()
        self.segments: dict[int, NDArray[np.uint8]] = {}


_ATTACHED: dict[str, _Attached] = {}
_LOCK = threading.Lock()  # batches may be rebuilt in the pin-memory thread


def rebuild(token: str, pid: int, slot: int, segment: torch.Tensor | None, flags: torch.Tensor | None, dtype: str,
            shape: tuple[int, ...]) -> torch.Tensor:
    """The trainer's tensor over a worker's slot; the slot is free again once the tensor and its views are gone."""
    with _LOCK:
        if flags is not None:
            _forget_exited_workers()
            _ATTACHED[token] = _Attached(pid, flags)
        attached = _ATTACHED[token]
        if segment is not None:
            attached.segments[slot] = segment.numpy()
        pages = attached.segments[slot]
    array = np.ndarray(shape, np.dtype(dtype), buffer=pages)  # a new array per batch: its lifetime is the batch's
    weakref.finalize(array, _release, attached.release, slot)
    return torch.from_numpy(array)  # the tensor's storage holds ``array`` until the last view is gone


def _release(flags: NDArray[np.uint8], slot: int) -> None:
    flags[slot] = _FREE


def _forget_exited_workers() -> None:
    for token, attached in list(_ATTACHED.items()):
        try:
            os.kill(attached.pid, 0)
        except ProcessLookupError:
            del _ATTACHED[token]
        except PermissionError:
            pass


def attached_slots() -> int:
    """How many worker slots this process has mapped (for tests and benchmarks)."""
    return sum(len(a.segments) for a in _ATTACHED.values())
