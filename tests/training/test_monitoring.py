"""System metrics and throughput pieces that need no training: GPU selection, sampling, batch sizes."""

from __future__ import annotations

import time

import torch

from heimdall_cli.tracking.system_metrics import GpuRef, SystemSampler
from heimdall_cli.training.monitoring import batch_size, gpu_refs, system_start_step


def test_only_the_runs_gpus_are_monitored_whatever_cuda_visible_devices_says():
    # devices=1,3 on a box where the job sees host GPUs 4-7: CUDA ordinals 1 and 3 are host GPUs 5 and 7.
    assert gpu_refs([1, 3], visible="4,5,6,7") == [GpuRef(label=1, index=5), GpuRef(label=3, index=7)]
    assert gpu_refs([0], visible=None) == [GpuRef(label=0, index=0)]
    # A UUID list (or any ordering doubt): the UUID identifies the device, the index is only a fallback.
    refs = gpu_refs([0, 1], visible="GPU-aaa,GPU-bbb", uuid_of=lambda i: f"GPU-{i}")
    assert refs == [GpuRef(0, 0, "GPU-0"), GpuRef(1, 1, "GPU-1")]
    assert gpu_refs([], visible="0,1") == []


def test_gpu_metric_names_carry_the_runs_device_ordinal():
    sampler = SystemSampler(lambda m, s: None, gpus=gpu_refs([1, 3], visible="4,5,6,7"))
    sampler._gpu_labels = {0: 1, 1: 3}  # what _gpu_monitor records for the handles it keeps, in order
    assert sampler._rename("gpu_0_utilization_percentage") == "gpu_1_utilization_percentage"
    assert sampler._rename("gpu_1_memory_usage_megabytes") == "gpu_3_memory_usage_megabytes"
    assert sampler._rename("cpu_utilization_percentage") == "cpu_utilization_percentage"


def _wait_until(condition, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; a busy 2-core box may be slow, so only a hang fails."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.02)


def test_sampler_logs_mlflow_named_system_metrics_and_survives_a_dead_sink():
    # No wall-time bound here (how often it samples is bench/bench_batcher.py's number): the thread must
    # sample on its own, with consecutive steps from start_step.
    got: list[tuple[int, dict[str, float]]] = []
    sampler = SystemSampler(lambda m, s: got.append((s, dict(m))), 0.1, gpus=[GpuRef(0, 0)], start_step=7)
    sampler.start()  # no NVML on this box: the GPU collector is skipped, the rest flows
    _wait_until(lambda: len(got) >= 2)  # two samples from the thread itself, before any stop()
    sampler.stop()  # plus the final sample
    assert [s for s, _ in got] == list(range(7, 7 + len(got))) and len(got) >= 3
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/disk_usage_percentage", "system/network_receive_megabytes"} <= got[-1][1].keys()

    calls: list[int] = []

    def dead(metrics, step):
        calls.append(step)
        raise ConnectionError("backend gone")

    quiet = SystemSampler(dead, 0.05)
    quiet.start()
    _wait_until(lambda: calls)
    time.sleep(0.3)  # six more intervals: a sampler that kept trying would call again
    tries = len(calls)
    quiet.stop()  # no exception, no retry storm: the first failure ends the sampling
    assert tries == 1, calls
    assert quiet.samples == 0


def test_batch_sizes_and_resumed_sample_steps():
    assert batch_size({"features": torch.zeros(32, 4, 8), "label": torch.zeros(32, 2)}) == 32
    assert batch_size([torch.zeros(5, 3), torch.zeros(5)]) == 5
    assert system_start_step({"train/loss": 99, "system/cpu_utilization_percentage": 4}) == 5
    assert system_start_step({"train/loss": 99}) == 0
