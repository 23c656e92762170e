"""Leaving a distributed process group together, so no rank dies in gloo's or NCCL's teardown."""

from __future__ import annotations


def leave_process_group() -> None:
    """Every rank waits for the others, then the group is destroyed (a no-op without one).

    Left to the interpreter's exit handlers, a gloo rank could abort ("terminate called without
    an active exception") after the run had finished, and the job exited non-zero.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
