"""Which run a resume continues and what it may change: job keys, settings compared, checkpoint picked.

No training here: settings, a real SQLite MLflow store and real Lightning checkpoints of a tiny model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import load_settings, run_params
from heimdall_cli.tracking.records import flatten_params
from heimdall_cli.training.resume import (
    compare_settings,
    find_job_run,
    job_key,
    newest_checkpoint,
    plan_resume,
)


@pytest.fixture
def no_scheduler(monkeypatch):
    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_job_key_comes_from_the_flag_then_slurm_then_torchrun(monkeypatch, no_scheduler):
    assert job_key() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default rendezvous id names no job
    assert job_key() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "elastic-7")
    assert job_key() == "elastic-7"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert job_key() == "4242"
    assert job_key("nightly-1") == "nightly-1"
    with pytest.raises(ConfigError, match="not valid"):
        job_key("a'b")  # it goes into a search filter


def test_a_fresh_run_carries_the_schedulers_job_id(monkeypatch, no_scheduler):
    assert plan_resume(load_settings(), None, None).job_key is None
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    plan = plan_resume(load_settings(), None, None)
    assert (plan.run_id, plan.job_key) == (None, "4242")
    monkeypatch.setenv("SLURM_JOB_ID", "42 42")  # not asked to resume: an odd id is no reason to fail
    assert plan_resume(load_settings(), None, None).job_key is None


def test_resume_auto_without_any_key_is_a_usage_error(no_scheduler):
    with pytest.raises(ConfigError) as e:
        plan_resume(load_settings(), "auto", None)
    assert e.value.exit_code == 2 and "--job-key" in e.value.hint


def _logged(**changes) -> dict[str, str]:
    return flatten_params(run_params(load_settings(flags=changes)))


def test_changing_what_the_model_is_is_refused_naming_every_key():
    logged = _logged(training={"backbone": "test_convnext"}, data={"samples": 600})
    now = load_settings(flags={"training": {"backbone": "test_resnet", "head_width": 64}, "data": {"samples": 900}})
    with pytest.raises(ConfigError) as e:
        compare_settings(now, logged, "abc")
    message = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in message
    for key in ("training.backbone", "training.head_width", "data.samples"):
        assert key in message
    assert "'test_convnext' -> 'test_resnet'" in message


def test_changes_made_on_purpose_are_allowed_and_listed():
    logged = _logged(training={"epochs": 1, "learning_rate": 0.003})
    now = load_settings(flags={"training": {"epochs": 2, "learning_rate": 0.05, "devices": "2",
                                            "pretrained_path": "/elsewhere/weights.safetensors"},
                               "data": {"synth_workers": 3}})
    changes = compare_settings(now, logged, "abc")
    assert changes == {"training.devices": ["auto", "2"], "training.epochs": ["1", "2"],
                       "training.learning_rate": ["0.003", "0.05"],
                       "training.pretrained_path": ["", "/elsewhere/weights.safetensors"]}
    assert compare_settings(load_settings(), _logged(), "abc") == {}


@pytest.mark.slow  # a fresh MLflow store: 4-10 s under load
def test_find_job_run_takes_the_newest_unfinished_run_of_the_key(tmp_path):
    from heimdall_cli.tracking import open_tracker
    from heimdall_cli.tracking.readers import open_source

    settings = load_settings(flags={"tracking": {"uri": f"sqlite:///{tmp_path}/m.db", "experiment": "jobs"},
                                    "storage": {"artifact_root": str(tmp_path / "a")}})
    tracker = open_tracker(settings)
    ids = {}
    for name, key, status in (("old", "k1", "KILLED"), ("new", "k1", "FAILED"), ("done", "k1", "FINISHED"),
                              ("other", "k2", "KILLED")):
        tracker.start_run(name, tags={"heimdall.job_key": key})
        ids[name] = tracker.run_id
        tracker.end_run(status)
    source = open_source(settings)
    assert find_job_run(source, "jobs", "k1") == ids["new"]  # not the FINISHED one, even though it is newer
    assert find_job_run(source, "jobs", "k3") is None
    # A rank beside rank 0 does not take up the run rank 0 started after this process began.
    started = {r.info.run_id: r.info.start_time for r in tracker.client.search_runs([tracker.find_experiment("jobs")])}
    assert find_job_run(source, "jobs", "k1", started_before_ms=started[ids["new"]]) == ids["old"]
    assert find_job_run(source, "no-such-experiment", "k1") is None


def _ckpt(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(4)}}, path)
    return path


def test_the_newest_checkpoint_is_the_one_of_the_highest_step_whatever_kind(tmp_path):
    run_dir = tmp_path / "run"
    assert newest_checkpoint(run_dir) is None
    last = _ckpt(run_dir / "checkpoints" / "last.ckpt", 15)
    _ckpt(run_dir / "checkpoints" / "epoch000-step000015.ckpt", 15)
    assert newest_checkpoint(run_dir) == last  # same step: last.ckpt, written after the top-k one
    steps = _ckpt(run_dir / "checkpoints" / "steps" / "epoch001-step000020.ckpt", 20)
    assert newest_checkpoint(run_dir) == steps
    hpc = _ckpt(run_dir / "hpc_ckpt_1.ckpt", 22)  # Lightning's SLURM requeue checkpoint
    assert newest_checkpoint(run_dir) == hpc
    os.utime(steps, (1, 1))
    assert newest_checkpoint(run_dir) == hpc
    hpc.write_bytes(hpc.read_bytes()[:100])  # cut short by a kill while it was written
    assert newest_checkpoint(run_dir) == steps
