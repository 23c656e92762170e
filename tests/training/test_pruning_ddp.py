"""Pruning under DDP: rank 0 decides, the decision is broadcast, every rank stops at the same epoch.

Two CPU processes (gloo, ``ddp_spawn``) and Lightning's own BoringModel: nothing mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from heimdall_cli.training.pruning import TrialPruning


def _prune_from_epoch_2(value: float, step: int) -> bool:
    return step >= 2


class Logged(BoringModel):
    """BoringModel that logs its validation loss as ``val/loss`` (synced across ranks)."""

    def validation_step(self, batch, batch_idx):
        loss = self.step(batch)
        self.log("val/loss", loss, sync_dist=True)
        return loss


class Record(L.Callback):
    """Each rank writes where it stopped and what its pruning callback saw."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_fit_end(self, trainer, pl_module):
        p = next(c for c in trainer.callbacks if isinstance(c, TrialPruning))
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"epoch": trainer.current_epoch, "reported": p.reported, "pruned": p.pruned}))

    def teardown(self, trainer, pl_module, stage):
        # Both ranks leave the process group together: left to the exit handlers of two spawned
        # processes, gloo's teardown raced now and then (rank 1 SIGABRT after both had finished).
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


@pytest.mark.slow
def test_rank_0_decides_and_every_rank_stops_at_the_same_epoch(tmp_path: Path):
    pruning = TrialPruning("val/loss", _prune_from_epoch_2)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=6, limit_train_batches=2,
                        limit_val_batches=2, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[pruning, Record(tmp_path)])
    trainer.fit(Logged())
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == {"epoch": 2, "reported": 2, "pruned": True}  # reported after epochs 1 and 2, pruned at 2
    assert ranks[1] == {"epoch": 2, "reported": 0, "pruned": True}  # never reported, stopped by the broadcast
