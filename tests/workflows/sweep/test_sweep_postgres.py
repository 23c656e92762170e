"""Sweeps on real PostgreSQL: two workers on one study, and a worker killed mid-trial."""

from __future__ import annotations

import math
import signal
import uuid

import pytest

from tests.workflows.sweep.conftest import children, report, spawn, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pg_env(postgres_db, tmp_path) -> dict[str, str]:
    unique = uuid.uuid4().hex[:8]
    return {"HEIMDALL_TRACKING__URI": postgres_db.uri, "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "HEIMDALL_TRACKING__EXPERIMENT": f"sweep-{unique}", "STUDY": f"study-{unique}"}


def _client(env):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=env["HEIMDALL_TRACKING__URI"])


def test_two_workers_finish_exactly_n_trials_under_one_parent(pg_env, tmp_path):
    n, study = 6, pg_env["STUDY"]
    config = tiny_config(tmp_path, trials=n)
    a = spawn(["start", "-c", str(config), "--name", study, "--json"], pg_env, tmp_path, "a")
    a.wait_for(r"trial 0 started")  # the study exists: the second worker joins it
    b = spawn(["join", study, "--json"], pg_env, tmp_path, "b")
    (rc_a, out_a, err_a), (rc_b, out_b, err_b) = a.wait(), b.wait()
    assert rc_a == 0, err_a
    assert rc_b == 0, err_b
    ra, rb = report(out_a), report(out_b)
    assert ra["finished"] == rb["finished"] == n and ra["failed"] == 0
    assert ra["parent_run_id"] == rb["parent_run_id"]
    assert ra["trials"] and rb["trials"], "both workers ran trials"
    numbers = [t["number"] for t in ra["trials"] + rb["trials"]]
    assert sorted(numbers) == list(range(n)), "no trial twice, none lost"

    c = _client(pg_env)
    parent = c.get_run(ra["parent_run_id"])
    kids = children(c, pg_env["HEIMDALL_TRACKING__EXPERIMENT"], parent.info.run_id)
    assert len(kids) == n
    assert sorted(int(r.data.params["sweep.trial"]) for r in kids) == list(range(n))
    assert {r.info.status for r in kids} == {"FINISHED"}
    assert {r.data.tags["heimdall.sweep.state"] for r in kids} == {"complete"}
    best_child = min(kids, key=lambda r: r.data.metrics["best/val_loss"])
    assert parent.info.status == "FINISHED"
    assert math.isclose(parent.data.metrics["best/val_loss"], best_child.data.metrics["best/val_loss"], rel_tol=0,
                        abs_tol=0)
    assert parent.data.tags["heimdall.sweep.best_run_id"] == best_child.info.run_id
    assert parent.data.params["best.training.learning_rate"] == best_child.data.params["training.learning_rate"]
    plots = {a.path for a in c.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png",
                     "plots/parallel_coordinate.png"}

    best = spawn(["best", study, "-q"], pg_env, tmp_path, "best")
    rc, out, err = best.wait(60)
    assert rc == 0, err
    assert out.strip() == best_child.info.run_id
    assert "postgres@" not in err


def test_a_worker_killed_mid_trial_leaves_its_trial_to_the_other(pg_env, tmp_path):
    n, study = 3, pg_env["STUDY"]
    config = tiny_config(tmp_path, trials=n, heartbeat_s=1, stale_after_s=3)
    a = spawn(["start", "-c", str(config), "--name", study, "--progress", "plain",
               "training.progress_interval_s=0.1"], pg_env, tmp_path, "a")
    a.wait_for(r" step [1-9]")  # trial 0 is training
    a.kill(signal.SIGKILL)
    a.wait(30)
    b = spawn(["join", study, "--json"], pg_env, tmp_path, "b")
    rc, out, err = b.wait()
    assert rc == 0, err
    r = report(out)
    assert (r["finished"], r["complete"], r["failed"]) == (n, n, 1)
    assert "trial 0 lost its worker" in err
    assert sorted(t["number"] for t in r["trials"]) == [1, 2, 3]

    c = _client(pg_env)
    kids = children(c, pg_env["HEIMDALL_TRACKING__EXPERIMENT"], r["parent_run_id"])
    by_trial: dict[int, list] = {}
    for run in kids:
        by_trial.setdefault(int(run.data.params["sweep.trial"]), []).append(run)
    assert sorted(by_trial) == [0, 1, 2, 3] and all(len(v) == 1 for v in by_trial.values())
    dead = by_trial[0][0]
    assert dead.info.status == "KILLED" and dead.data.tags["heimdall.sweep.state"] == "failed"
    finished = [run for t, (run,) in by_trial.items() if t != 0]
    assert {run.info.status for run in finished} == {"FINISHED"}
    # the dead trial's parameters were tried again, by the other worker (once)
    retried = [run for run in finished
               if run.data.params["training.learning_rate"] == dead.data.params["training.learning_rate"]]
    assert len(retried) == 1
