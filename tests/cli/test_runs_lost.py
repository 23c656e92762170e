"""A training killed with -9 shows as LOST in runs list/show/best; runs reap marks it FAILED."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.training.conftest import HEIMDALL, TINY, local_env, run_heimdall


def _wait_for(path, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text() if path.exists() else "")
        if match:
            return match
        assert proc.poll() is None, path.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not seen in {timeout} s")


@pytest.mark.slow
def test_a_killed_training_is_lost_until_reaped(tmp_path):
    env = {**local_env(tmp_path), "HEIMDALL_TRACKING__HEARTBEAT_INTERVAL_S": "1"}
    err = tmp_path / "train-stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen([HEIMDALL, "train", *TINY, "--epochs", "50", "--progress", "plain"],
                                env={**os.environ, **env}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        run_id = _wait_for(err, r"training started: run ([0-9a-f]{32})", proc)[1]
        _wait_for(err, r"epoch 1 done", proc)  # best/val_loss exists: runs best can find it
        alive = run_heimdall(["runs", "show", run_id, "-q"], env, tmp_path)
        assert alive.stdout.strip() == "RUNNING", alive.stderr
    finally:
        proc.kill()  # SIGKILL: no handler runs, the run stays RUNNING in MLflow
        proc.wait()
    time.sleep(4)  # > 3 × the 1 s interval

    listed = run_heimdall(["runs", "list", "--json"], env, tmp_path).json()["runs"]
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "LOST")]
    last_seen = listed[0]["last_seen"]
    assert last_seen and listed[0]["duration_s"] > 0
    table = run_heimdall(["runs", "list"], env, tmp_path)
    assert "LOST (seen" in table.stdout
    assert run_heimdall(["runs", "show", run_id, "-q"], env, tmp_path).stdout.strip() == "LOST"
    best = run_heimdall(["runs", "best", "--json"], env, tmp_path).json()
    assert (best["run_id"], best["status"], best["last_seen"]) == (run_id, "LOST", last_seen)

    dry = run_heimdall(["runs", "reap", "--dry-run", "--json"], env, tmp_path)
    assert dry.returncode == 0 and [r["run_id"] for r in dry.json()["runs"]] == [run_id]
    assert run_heimdall(["runs", "show", run_id, "-q"], env, tmp_path).stdout.strip() == "LOST"

    reaped = run_heimdall(["runs", "reap", "-q"], env, tmp_path)
    assert reaped.returncode == 0 and reaped.stdout.split() == [run_id], reaped.stderr
    shown = run_heimdall(["runs", "show", run_id, "--json"], env, tmp_path).json()
    assert shown["status"] == "FAILED" and shown["end_time"] == last_seen  # ended when it was last seen
    assert shown["tags"]["heimdall.reaped"].startswith("FAILED: no heartbeat for")
    again = run_heimdall(["runs", "reap", "--json"], env, tmp_path).json()
    assert again["count"] == 0
