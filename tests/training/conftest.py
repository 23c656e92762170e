"""Helpers for end-to-end training tests: real `heimdall` processes, real MLflow stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HEIMDALL = str(Path(sys.executable).with_name("heimdall"))
#: A real but tiny training: timm's test_convnext on 600 synthetic samples.
TINY = ["--backbone", "test_convnext", "--no-pretrained", "--batch-size", "32", "data.samples=600",
        "training.save_top_k=1", "training.num_workers=0"]
POINT = re.compile(r"(?P<key>[a-z_0-9]+/[a-z_0-9]+|lr)=(?P<value>[-+0-9.e]+|nan|inf)@(?P<step>\d+)")


@dataclass
class Result:
    """A finished `heimdall` process."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_heimdall(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> Result:
    """Run the installed `heimdall` console script with ``env`` on top of the test environment."""
    proc = subprocess.run([HEIMDALL, *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def local_env(folder: Path) -> dict[str, str]:
    """The embedded backend in ``folder``: sqlite file plus a local artifact folder."""
    return {"HEIMDALL_TRACKING__URI": f"sqlite:///{folder}/mlflow.db",
            "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(folder / "artifacts"),
            "HEIMDALL_TRACKING__EXPERIMENT": "e2e"}


def client(env: dict[str, str]):
    """A plain MlflowClient on the same store (what a person would use to look)."""
    from mlflow import MlflowClient

    uri = env.get("HEIMDALL_TRACKING__URI") or env["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri)


def history(mlflow_client, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) points of a metric, in step order."""
    return sorted((m.step, m.value) for m in mlflow_client.get_metric_history(run_id, key))


def shown_points(stderr: str) -> set[tuple[str, int, str]]:
    """Every (metric, step, printed value) that plain progress showed."""
    return {(m["key"], int(m["step"]), m["value"]) for m in POINT.finditer(stderr)}


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    """A folder shared by the tests of one module (trainings are expensive)."""
    return tmp_path_factory.mktemp("train")


def train_with_fault(args: list[str], env: dict[str, str], cwd: Path, fault, *, at_step: int = 5,
                     timeout: float = 600) -> Result:
    """Run `heimdall train ARGS` with plain progress; call ``fault(proc)`` once step ``at_step`` is shown.

    The fault (kill a server, stop PostgreSQL, send SIGTERM…) runs while training goes on;
    then the process is waited for.
    """
    err_path = cwd / "train-stderr.txt"
    command = [HEIMDALL, "train", *args, "--progress", "plain", "training.progress_interval_s=0.1"]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE, stderr=err,
                                text=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [int(s) for s in re.findall(r" step (\d+) ", err_path.read_text())]
            if steps and max(steps) >= at_step:
                break
            time.sleep(0.1)
        fault(proc)
        stdout, _ = proc.communicate(timeout=timeout)
    return Result(proc.returncode, stdout, err_path.read_text())
