"""``system/…`` metrics of a run: MLflow's own collectors, sampled into the tracker's queue.

:class:`SystemSampler` produces the points; they go through ``log`` (the tracker's
metric queue), so outages and offline runs treat them like every other metric.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger("heimdall")


@dataclass(frozen=True)
class GpuRef:
    """A GPU the run uses: ``label`` is its CUDA ordinal in the run (``gpu_<label>_…`` in the metric names).

    ``uuid`` (NVML's ``GPU-…``) finds it whatever ``CUDA_VISIBLE_DEVICES`` and the CUDA device
    order say; without one, ``index`` is taken as the NVML index.
    """

    label: int
    index: int
    uuid: str | None = None


LogFn = Callable[[Mapping[str, float], int], None]
_GPU_KEY = re.compile(r"^gpu_(\d+)_")


class SystemSampler:
    """System metrics from MLflow's monitors (CPU, memory, disk, network, GPU), sent through ``log``.

    MLflow's ``SystemMetricsMonitor`` thread logs with its own ``MlflowClient`` and polls
    ``get_run`` at every sample: it would bypass the batcher, the outage handling and the
    offline spool, and it watches every GPU on the host. Here only its collectors are used;
    every sample goes to ``log(metrics, step)`` (the tracker's queue), so a dead backend or an
    offline run is handled like any other metric, and only the ``gpus`` given are read.
    Names are MLflow's, with its ``system/`` prefix; steps count samples from ``start_step``.
    Sampling never raises: a failing collector is dropped with one debug line.
    """

    PREFIX = "system/"

    def __init__(self, log: LogFn, interval_s: float = 10.0, *, gpus: Sequence[GpuRef] = (),
                 start_step: int = 0) -> None:
        self._log = log
        self.interval_s = interval_s
        self.gpus = list(gpus)
        self.step = start_step
        self.samples = 0
        self._monitors: list[Any] = []
        self._gpu_labels: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _build(self) -> None:
        import psutil
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        psutil.cpu_percent()  # its first reading is 0.0 by definition; start the interval now
        self._monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
        if self.gpus:
            try:
                self._monitors.append(self._gpu_monitor())
            except Exception as e:  # no NVML, no driver, or a GPU that vanished: CPU metrics still flow
                _log.debug("GPU system metrics unavailable: %s", e)

    def _gpu_monitor(self) -> Any:
        import pynvml
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitor = GPUMonitor()  # initialises NVML and opens a handle per host GPU; keep only the run's
        handles = []
        for position, gpu in enumerate(self.gpus):
            handle = None
            if gpu.uuid:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
                except pynvml.NVMLError:
                    handle = None
            handles.append(handle if handle is not None else pynvml.nvmlDeviceGetHandleByIndex(gpu.index))
            self._gpu_labels[position] = gpu.label
        monitor.gpu_handles = handles
        monitor.num_gpus = len(handles)
        return monitor

    def start(self) -> None:
        """Start sampling every ``interval_s`` in a daemon thread."""
        if self._thread is not None:
            return
        self._build()
        self._thread = threading.Thread(target=self._run, name="heimdall-system-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> dict[str, float]:
        """Collect one sample of every monitor and log it; returns what was logged."""
        with self._lock:
            values: dict[str, float] = {}
            for monitor in list(self._monitors):
                try:
                    monitor.collect_metrics()
                    values.update(monitor.aggregate_metrics())
                except Exception as e:
                    _log.debug("dropping system-metrics collector %s: %s", type(monitor).__name__, e)
                    self._monitors.remove(monitor)
                finally:
                    monitor.clear_metrics()
            metrics = {self.PREFIX + self._rename(k): float(v) for k, v in values.items()}
            if not metrics:
                return {}
            try:
                self._log(metrics, self.step)
            except Exception as e:  # the run ended under us; never an error of the training
                _log.debug("system metrics not logged: %s", e)
                self._stop.set()
                return {}
            self.step += 1
            self.samples += 1
            return metrics

    def _rename(self, key: str) -> str:
        m = _GPU_KEY.match(key)
        if not m:
            return key
        label = self._gpu_labels.get(int(m.group(1)), int(m.group(1)))
        return f"gpu_{label}_{key[m.end():]}"

    def stop(self, *, final_sample: bool = True) -> None:
        """Stop the thread; ``final_sample`` logs one last sample (so a short run has one too)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.interval_s))
        self._thread = None
        if final_sample:
            self.sample()
        self._stop.set()

