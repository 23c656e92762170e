"""``--resume auto``: a job killed or requeued runs the same command again and continues its own run.

Real `heimdall train` processes, real signals (SIGTERM, ``kill -9``, SLURM's SIGUSR1 with Lightning's
own requeue handler and a stand-in ``scontrol``) and a real SQLite MLflow store; what is checked is what
a person sees: exit codes, one run per job, metric steps without duplicates or gaps.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.training.conftest import TINY, client, history, local_env, run_heimdall, train_with_fault

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 15  # TINY: 480 training samples, batches of 32


def _one_run(c) -> str:
    runs = c.search_runs([c.get_experiment_by_name("e2e").experiment_id])
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return runs[0].info.run_id


def _steps(c, run_id: str) -> dict[str, list[int]]:
    out = {}
    for key in c.get_run(run_id).data.metrics:
        steps = [s for s, _ in history(c, run_id, key)]
        assert len(steps) == len(set(steps)), f"{key} has duplicated steps: {steps}"
        out[key] = steps
    return out


def _resumed_from(stderr: str) -> int:
    return int(re.search(r"Resuming from \S+ at step (\d+)\.", stderr)[1])


def _check_finished(c, run_id: str, result, epochs: int) -> dict[str, list[int]]:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.json()["run_id"] == run_id and result.json()["status"] == "FINISHED"
    assert c.get_run(run_id).info.status == "FINISHED"
    steps = _steps(c, run_id)
    assert steps["train/loss"] == list(range(epochs * STEPS_PER_EPOCH)), "no step twice, none missing"
    # The loop position came back: validation ran once per epoch, at each epoch's last step.
    assert steps["val/loss"] == [STEPS_PER_EPOCH * (e + 1) - 1 for e in range(epochs)]
    # Throughput of the resumed epoch is timed from the resume (its epoch-start hook never came): several
    # steps a second here, not 15 steps over the seconds since the box booted.
    rates = [v for _, v in history(c, run_id, "perf/steps_per_s")]
    assert len(rates) == epochs and min(rates) > 0.2, rates
    return steps


def test_sigterm_then_the_same_command_continues_the_same_run(tmp_path):
    env = local_env(tmp_path)
    args = [*TINY, "--epochs", "2", "--resume", "auto", "--job-key", "job-a", "training.checkpoint_every_s=0.3",
            "--json"]
    first = train_with_fault(args, env, tmp_path, lambda proc: proc.send_signal(signal.SIGTERM), at_step=20)
    assert first.returncode == 130, first.stderr[-2000:]
    assert "No unfinished run of job job-a in experiment 'e2e': starting a new run." in first.stderr
    c = client(env)
    run_id = _one_run(c)
    assert c.get_run(run_id).data.tags["heimdall.job_key"] == "job-a"

    shutil.rmtree(tmp_path / "outputs")  # requeued on another node: the checkpoints come from the store
    again = run_heimdall(["train", *args, "--progress", "plain"], env, tmp_path)
    assert f"Resuming run {run_id} of job job-a." in again.stderr
    assert _one_run(c) == run_id
    steps = _check_finished(c, run_id, again, epochs=2)
    # The time-based checkpoints were saved, uploaded and their cost recorded.
    stored = [a.path for a in c.list_artifacts(run_id, "checkpoints/time")]
    assert len(stored) == 1 and stored[0].endswith(".ckpt"), f"the newest only, older ones deleted: {stored}"
    cost = history(c, run_id, "perf/checkpoint_seconds")
    assert cost and all(v > 0 for _, v in cost) and steps["perf/checkpoint_seconds"] == sorted({s for s, _ in cost})


def test_kill_9_mid_epoch_loses_at_most_the_step_interval(tmp_path):
    env = local_env(tmp_path)
    every = 4
    args = [*TINY, "--epochs", "2", "--resume", "auto", "--job-key", "job-b",
            f"training.checkpoint_every_n_steps={every}", "--json"]
    killed = train_with_fault(args, env, tmp_path, lambda proc: proc.kill(), at_step=10)
    assert killed.returncode == -signal.SIGKILL
    c = client(env)
    run_id = _one_run(c)
    assert c.get_run(run_id).info.status == "RUNNING"  # kill -9: nobody ended it
    done = max(int(s) for s in re.findall(r" step (\d+) ", killed.stderr))  # the last step it showed

    again = run_heimdall(["train", *args, "--progress", "plain"], env, tmp_path)
    _check_finished(c, run_id, again, epochs=2)
    start = _resumed_from(again.stderr)
    assert start > 0 and start % STEPS_PER_EPOCH != 0, "the test meant a mid-epoch checkpoint"
    # At most one interval lost. The kill can land after a checkpoint was saved but before that step's progress
    # line came out, so the resumed step may also be up to one interval past the last step shown.
    assert -every <= done - start <= every, f"killed after {done} steps, resumed at step {start}"


def test_slurm_requeue_checkpoint_is_found_after_sigusr1_and_kill_9(tmp_path):
    """Lightning's SLURM handler saves ``hpc_ckpt_1.ckpt`` and calls ``scontrol requeue``; the node then dies."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    env = {**local_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "heimdall-train", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
           "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    args = [*TINY, "--epochs", "2", "--resume", "auto", "--json"]  # the key is SLURM_JOB_ID

    def requeue_then_die(proc) -> None:
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "scontrol.log").exists():
            time.sleep(0.1)  # Lightning calls scontrol once the checkpoint is written
        proc.kill()

    killed = train_with_fault(args, env, tmp_path, requeue_then_die, at_step=18)
    assert killed.returncode in (130, -signal.SIGKILL), killed.stderr[-2000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    c = client(env)
    run_id = _one_run(c)
    assert c.get_run(run_id).data.tags["heimdall.job_key"] == "4242"
    hpc = list(Path(tmp_path / "outputs" / run_id).glob("hpc_ckpt_*.ckpt"))
    assert hpc, "Lightning saved its requeue checkpoint in the run's folder"

    again = run_heimdall(["train", *args, "--progress", "plain"], env, tmp_path)
    assert re.search(r"Resuming from hpc_ckpt_1\.ckpt at step \d+\.", again.stderr), again.stderr[-2000:]
    _check_finished(c, run_id, again, epochs=2)
