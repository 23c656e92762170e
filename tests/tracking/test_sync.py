"""The spool and ``runs sync`` on their own (no CLI): a diff, so idempotent, resumable and mergeable.

The spool is written by a real offline tracker; the target is the embedded SQLite store
or a real PostgreSQL database. Nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import Tracker, open_tracker
from heimdall_cli.tracking.spool import ORIGIN_RUN_ID, SYNCED_FROM, open_spool
from heimdall_cli.tracking.sync import sync_spool

pytestmark = pytest.mark.parametrize(
    "backend_env", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)], indirect=True)


def _offline(spool_dir: Path) -> Tracker:
    return open_tracker(load_settings(flags={"tracking": {"offline": True, "spool_dir": str(spool_dir)}}))


def _spooled_run(spool_dir: Path, tmp_path: Path, tags: dict[str, str] | None = None) -> str:
    tracker = _offline(spool_dir)
    run_id = tracker.start_run("offline-run", tags=tags)
    tracker.log_params({"training.seed": 3, "data.name": "synthetic"})
    for step in range(25):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    tracker.log_metrics({"val/loss": 0.5, "best/val_loss": 0.5}, step=24)
    note = tmp_path / "note.txt"
    note.write_text("hello from the spool")
    tracker.log_artifact(note, "notes")
    tracker.end_run("FINISHED")
    return run_id


@pytest.mark.slow
def test_sync_copies_everything_once_and_a_rerun_sends_nothing(backend_env, tmp_path):
    spool_dir = tmp_path / "spool"
    source_id = _spooled_run(spool_dir, tmp_path)
    spool = open_spool(spool_dir)
    target = open_tracker(load_settings(), patient=True)

    dry = sync_spool(target, spool, dry_run=True)
    assert [(r.created, r.target_run_id, r.params, r.metric_points, r.artifacts) for r in dry] == [
        (True, None, 2, 27, 1)]
    assert target.client.search_runs([target.get_or_create_experiment()]) == []  # a dry run sends nothing

    [first] = sync_spool(target, spool)
    assert (first.source_run_id, first.created, first.params, first.metric_points, first.artifacts) == (
        source_id, True, 2, 27, 1)
    run = target.get_run(first.target_run_id)
    assert run.status == "FINISHED" and run.tags[SYNCED_FROM] == f"{spool.spool_id}/{source_id}"
    assert run.params == {"training.seed": "3", "data.name": "synthetic"}
    assert [s for s, _, _ in target.metric_history("train/loss", first.target_run_id)] == list(range(25))
    assert [p for p, _ in target.list_artifacts(run_id=first.target_run_id)] == ["notes/note.txt"]

    [again] = sync_spool(target, spool)
    assert (again.created, again.target_run_id, again.params, again.metric_points, again.artifacts) == (
        False, first.target_run_id, 0, 0, 0)
    assert again.skipped == {"params": 2, "metric_points": 27, "artifacts": 1, "models": 0}


@pytest.mark.slow
def test_a_run_diverted_during_an_outage_merges_back_into_its_original_run(backend_env, tmp_path):
    target = open_tracker(load_settings(), patient=True)
    original = target.start_run("long-outage")
    target.log_metrics({"train/loss": 9.0}, step=0)
    target.end_run("KILLED")
    _spooled_run(tmp_path / "spool", tmp_path, tags={ORIGIN_RUN_ID: original})

    [report] = sync_spool(target, open_spool(tmp_path / "spool"))
    assert (report.target_run_id, report.created) == (original, False)
    history = target.metric_history("train/loss", original)
    assert [s for s, _, _ in history] == [0, *range(25)]  # the point logged before the outage, then the spool's
    assert target.get_run(original).status == "FINISHED"  # the status is set last, from the spool


def test_a_folder_that_is_not_a_spool_is_refused(backend_env, tmp_path):
    with pytest.raises(ConfigError, match="is not a heimdall spool"):
        open_spool(tmp_path)
    created = open_spool(tmp_path / "new", create=True)
    assert open_spool(tmp_path / "new").spool_id == created.spool_id  # the id is stable
    (tmp_path / "new" / "spool.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        open_spool(tmp_path / "new")
