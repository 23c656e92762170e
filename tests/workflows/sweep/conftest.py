"""Helpers for sweep tests: a tiny sweep config, real `heimdall sweep` processes, a look at the store.

Trials are real trainings (timm's test_convnext on 400 synthetic samples, 2 epochs, one
CPU thread), a few seconds each.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

HEIMDALL = str(Path(sys.executable).with_name("heimdall"))


def tiny_config(folder: Path, *, pruner: str = "none", trials: int = 4, space: dict[str, Any] | None = None,
                **sweep: Any) -> Path:
    """A sweep config of tiny trials written to ``folder/sweep.yaml``."""
    config = {
        "training": {"backbone": "test_convnext", "pretrained": False, "epochs": 2, "batch_size": 32,
                     "early_stopping_patience": 0, "save_top_k": 1, "accelerator": "cpu", "devices": "1",
                     "cpu_threads": 1, "progress": "none", "output_dir": str(folder / "outputs")},
        "data": {"samples": 400, "synth_workers": 1},
        "sweep": {"metric": "best/val_loss", "direction": "min", "trials": trials, "pruner": pruner,
                  "plots_interval_s": 0, "space": space or {
                      "training.learning_rate": {"log_uniform": [1e-4, 1e-2]},
                      "training.weight_decay": {"choice": [0.0, 0.05]}}, **sweep},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Worker:
    """A running `heimdall sweep start|join` process, stderr in a file."""

    proc: subprocess.Popen
    err_path: Path

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        stdout, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stdout, self.stderr

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.stderr)
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode} before {pattern!r}:\n{self.stderr}")
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.stderr}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)


def spawn(args: list[str], env: dict[str, str], cwd: Path, tag: str) -> Worker:
    err_path = cwd / f"{tag}-stderr.txt"
    err = open(err_path, "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen([HEIMDALL, "sweep", *args], env={**os.environ, **env}, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    return Worker(proc, err_path)


def children(mlflow_client: Any, experiment: str, parent: str) -> list[Any]:
    """Every run whose mlflow.parentRunId is ``parent``."""
    exp = mlflow_client.get_experiment_by_name(experiment)
    return mlflow_client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'",
                                     max_results=1000)


def report(stdout: str) -> dict[str, Any]:
    return json.loads(stdout)


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep")
