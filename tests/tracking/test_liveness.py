"""Liveness: a run beats while it runs; a RUNNING run whose beats stopped is lost."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import open_tracker
from heimdall_cli.tracking.liveness import HEARTBEAT_TAG, INTERVAL_TAG, is_lost, last_seen, shown_status
from heimdall_cli.tracking.records import RunRecord


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An empty MLflow sqlite store, migrated once (a fresh one costs ~10 s on a busy box)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("liveness-db") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(migrated_db, tmp_path) -> None:
    shutil.copyfile(migrated_db, tmp_path / "mlflow.db")  # the embedded default: sqlite:///mlflow.db in the cwd


def record(status: str = "RUNNING", **tags: str) -> RunRecord:
    return RunRecord("r1", "n", "0", status, 0, None, "file:///a", tags=dict(tags))


NOW = 1_000_000.0
BEAT = {HEARTBEAT_TAG: str(int((NOW - 100) * 1000)), INTERVAL_TAG: "30"}


def test_a_run_is_lost_after_three_missed_beats_or_the_configured_threshold():
    run = record(**BEAT)  # last beat 100 s ago, beating every 30 s: 3 × 30 = 90 s < 100 s
    assert last_seen(run) == NOW - 100
    assert is_lost(run, NOW) and shown_status(run, NOW) == "LOST"
    assert not is_lost(run, NOW - 20)  # 80 s of silence: not yet
    assert not is_lost(run, NOW, lost_after_s=600)  # a longer threshold, configured
    assert is_lost(run, NOW - 50, lost_after_s=30)


@pytest.mark.parametrize("run", [record(), record("FINISHED", **BEAT), record("KILLED", **BEAT),
                                 record(**{HEARTBEAT_TAG: "garbage", INTERVAL_TAG: "30"})],
                         ids=["never-beat", "finished", "killed", "unreadable"])
def test_runs_that_never_beat_or_ended_are_not_lost(run):
    assert not is_lost(run, NOW + 10**6)
    assert shown_status(run, NOW + 10**6) == run.status


@pytest.mark.slow  # a fresh MLflow store: ~10 s of migrations on a busy box
def test_the_active_run_beats_and_stops_beating_when_it_ends(monkeypatch, store):
    monkeypatch.setenv("HEIMDALL_TRACKING__HEARTBEAT_INTERVAL_S", "0.2")
    tracker = open_tracker(load_settings(env_file=None))
    run_id = tracker.start_run("beating")
    first = last_seen(tracker.get_run(run_id))
    time.sleep(0.9)
    running = tracker.get_run(run_id)
    assert running.tags[INTERVAL_TAG] == "0.2"
    assert last_seen(running) > first and not is_lost(running, time.time())
    tracker.end_run()
    ended = tracker.get_run(run_id)
    time.sleep(0.5)
    assert last_seen(tracker.get_run(run_id)) == last_seen(ended)  # no beat after the end
    assert ended.status == "FINISHED" and not is_lost(ended, time.time() + 3600)


@pytest.mark.slow  # a fresh MLflow store: ~10 s of migrations on a busy box
def test_beats_can_be_turned_off_and_a_sweep_parent_does_not_beat(monkeypatch, store):
    monkeypatch.setenv("HEIMDALL_TRACKING__HEARTBEAT_INTERVAL_S", "0")
    tracker = open_tracker(load_settings(env_file=None))
    run_id = tracker.start_run("quiet")
    tracker.end_run()
    assert HEARTBEAT_TAG not in tracker.get_run(run_id).tags
    monkeypatch.setenv("HEIMDALL_TRACKING__HEARTBEAT_INTERVAL_S", "5")
    tracker = open_tracker(load_settings(env_file=None))
    run_id = tracker.start_run("study", tags={"heimdall.sweep.role": "parent"})
    tracker.end_run()
    assert HEARTBEAT_TAG not in tracker.get_run(run_id).tags
