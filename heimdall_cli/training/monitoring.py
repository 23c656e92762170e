"""What a run measures about itself: throughput (``perf/…``) and system metrics (``system/…``).

``perf/steps_per_s`` and ``perf/samples_per_s`` go through the
:class:`~heimdall_cli.training.logger.TrackerLogger` like every training metric, so the
progress view shows them. ``system/…`` samples come from a background thread
(:class:`~heimdall_cli.tracking.system_metrics.SystemSampler`, MLflow's collectors) straight into
the tracker's queue; they are not training metrics and the progress view does not show them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import Callback

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.tracking.system_metrics import GpuRef, SystemSampler


class Throughput(Callback):
    """Logs ``perf/steps_per_s`` and ``perf/samples_per_s`` once per training epoch.

    The time is from the epoch's start to its last training batch: data loading and the
    optimizer count, the validation that follows does not. Samples are global (all ranks).
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._last = 0.0
        self._steps = 0
        self._samples = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a resume mid-epoch: that epoch's start hook never comes

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._last = time.perf_counter()
        self._steps = self._samples = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._last = time.perf_counter()
        self._steps += 1
        self._samples += batch_size(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = self._last - self._started
        if not trainer.is_global_zero or trainer.logger is None or self._steps == 0 or seconds <= 0:
            return
        trainer.logger.log_metrics({"perf/steps_per_s": self._steps / seconds,
                                    "perf/samples_per_s": self._samples / seconds}, step=trainer.global_step)


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (dict, list or tensor)."""
    if hasattr(batch, "shape"):
        return int(batch.shape[0]) if len(batch.shape) else 1
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        n = batch_size(item)
        if n:
            return n
    return 0


def gpu_refs(device_ids: Sequence[int], *, visible: str | None = None,
             uuid_of: Callable[[int], str | None] | None = None) -> list[GpuRef]:
    """The GPUs of a run, from the CUDA ordinals Lightning uses (``trainer.device_ids``).

    ``visible`` is ``CUDA_VISIBLE_DEVICES``: with a list of indices, ordinal ``i`` is host GPU
    ``visible[i]`` (NVML numbers GPUs on the host, ignoring that variable). ``uuid_of`` gives
    an ordinal's NVML UUID, which beats any index mapping (UUID lists, CUDA's device order).
    """
    from heimdall_cli.tracking.system_metrics import GpuRef

    entries = [v.strip() for v in visible.split(",")] if visible else []
    refs = []
    for ordinal in device_ids:
        index = ordinal
        if ordinal < len(entries) and entries[ordinal].isdigit():
            index = int(entries[ordinal])
        refs.append(GpuRef(label=ordinal, index=index, uuid=uuid_of(ordinal) if uuid_of else None))
    return refs


def cuda_uuid(ordinal: int) -> str | None:
    """NVML's UUID (``GPU-…``) of CUDA device ``ordinal`` in this process, if torch knows it."""
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(ordinal), "uuid", None)
    except Exception:
        return None
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def run_gpus(trainer: L.Trainer) -> list[GpuRef]:
    """The GPUs this trainer trains on (none on CPU or MPS)."""
    from lightning.pytorch.accelerators import CUDAAccelerator

    if not isinstance(trainer.accelerator, CUDAAccelerator):
        return []
    return gpu_refs(trainer.device_ids, visible=os.environ.get("CUDA_VISIBLE_DEVICES"), uuid_of=cuda_uuid)


class SystemMetrics(Callback):
    """Samples ``system/…`` metrics on global rank 0 from fit's setup until :meth:`stop`.

    ``fit`` stops it before the run ends (after evaluation, so testing is covered too).
    ``start_step`` continues a resumed run's sample count.
    """

    def __init__(self, tracker: Tracker, interval_s: float, start_step: int = 0) -> None:
        self.tracker = tracker
        self.interval_s = interval_s
        self.start_step = start_step
        self.sampler: SystemSampler | None = None
        self._stopped = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.sampler is not None or self._stopped or not trainer.is_global_zero:
            return
        from heimdall_cli.tracking.system_metrics import SystemSampler

        tracker = self.tracker
        self.sampler = SystemSampler(lambda metrics, step: tracker.log_metrics(metrics, step=step), self.interval_s,
                                     gpus=run_gpus(trainer), start_step=self.start_step)
        self.sampler.start()

    def stop(self) -> None:
        """Log a last sample and stop sampling (idempotent)."""
        sampler, self.sampler, self._stopped = self.sampler, None, True
        if sampler is not None:
            sampler.stop()


def system_start_step(skip_until: dict[str, int]) -> int:
    """The next system-metric step of a resumed run (0 for a new one)."""
    steps = [s for k, s in skip_until.items() if k.startswith("system/")]
    return max(steps) + 1 if steps else 0
