"""No metric lost: training through a tracking-server outage, offline training plus `runs sync`,
and a sync interrupted halfway. Real processes, real faults."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.training.conftest import HEIMDALL, TINY, history, run_heimdall, train_with_fault

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _counts(c, run_id: str) -> dict[str, int]:
    out = {}
    for key in c.get_run(run_id).data.metrics:
        steps = [s for s, _ in history(c, run_id, key)]
        assert len(steps) == len(set(steps)), f"{key}: duplicated steps"
        out[key] = len(steps)
    return out


def _expected_counts(steps: int, epochs: int) -> dict[str, int]:
    per_epoch = ["val/loss", "val/error_m_mean", "val/error_m_p50", "val/error_m_p68", "val/error_m_p95",
                 "val/coverage_68", "lr"]
    once = ["test/loss", "test/error_m_mean", "test/error_m_p50", "test/error_m_p68", "test/error_m_p95",
            "test/coverage_68", "test/baseline_centre_error_m_p50", "test/baseline_rssi_error_m_p50"]
    return {"train/loss": steps, **dict.fromkeys(per_epoch, epochs), **dict.fromkeys(once, 1)}


def test_server_killed_mid_training_and_restarted_20s_later_loses_nothing(make_mlflow_server, tmp_path):
    server = make_mlflow_server()
    env = {"MLFLOW_TRACKING_URI": server.url, "HEIMDALL_TRACKING__EXPERIMENT": "outage",
           "HEIMDALL_TRACKING__FLUSH_INTERVAL_S": "0.2"}
    def outage(proc):
        server.kill()
        time.sleep(20)
        server.start()

    result = train_with_fault([*TINY, "--epochs", "3", "--json"], env, tmp_path, outage)
    stderr = result.stderr
    assert result.returncode == 0, stderr[-3000:]
    assert stderr.count("tracking backend unreachable") == 1, stderr[-3000:]
    assert stderr.count("tracking backend recovered") == 1
    summary = result.json()
    c = _client(server.url)
    assert c.get_run(summary["run_id"]).info.status == "FINISHED"
    counts = _counts(c, summary["run_id"])
    expected = _expected_counts(summary["steps"], summary["epochs"])
    assert {k: counts.get(k) for k in expected} == expected
    assert [s for s, _ in history(c, summary["run_id"], "train/loss")] == list(range(summary["steps"]))
    stored = [a.path for a in c.list_artifacts(summary["run_id"], "checkpoints")]
    assert {"checkpoints/last.ckpt", "checkpoints/last.ckpt.alias.json"} & set(stored), stored
    # The logged models waited out the outage too: the kept checkpoint and the final model, READY.
    assert _models(c, summary["run_id"]) == [("checkpoint", "READY"), ("final", "READY")]


def _models(c, run_id: str) -> list[tuple[str, str]]:
    experiment_id = c.get_run(run_id).info.experiment_id
    found = c.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return sorted((m.tags["heimdall.kind"], str(getattr(m.status, "value", m.status))) for m in found)


@pytest.mark.parametrize("backend_env", ["postgres_s3"], indirect=True)
def test_offline_training_then_sync_equals_the_online_run(backend_env, tmp_path):
    for folder in ("online", "offline"):
        (tmp_path / folder).mkdir()
    online = run_heimdall(["train", *TINY, "--epochs", "2", "--seed", "3", "--json", "--progress", "none"],
                          backend_env, tmp_path / "online")
    offline_dir = tmp_path / "offline"
    offline = run_heimdall(["train", *TINY, "--epochs", "2", "--seed", "3", "--json", "--progress", "none",
                            "--offline"], backend_env, offline_dir)
    assert online.returncode == 0 and offline.returncode == 0, online.stderr[-2000:] + offline.stderr[-2000:]
    spool = offline_dir / "outputs" / "spool"
    assert offline.json()["spool"] == "outputs/spool"

    first = run_heimdall(["runs", "sync", str(spool), "--json"], backend_env, tmp_path)
    assert first.returncode == 0, first.stderr
    report = first.json()["runs"][0]
    assert report["created"] and report["metric_points"] > 0
    again = run_heimdall(["runs", "sync", str(spool), "--json"], backend_env, tmp_path)
    assert again.returncode == 0
    rerun = again.json()["runs"][0]
    assert (rerun["created"], rerun["params"], rerun["metric_points"], rerun["artifacts"], rerun["models"]) == (
        False, 0, 0, 0, 0)
    assert report["models"] == 2 and rerun["skipped"]["models"] == 2  # the kept checkpoint and the final model

    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    open_tracker(load_settings())  # S3 endpoint and credentials for this process, from the same settings
    c = _client(backend_env.tracking_uri)
    a, b = online.json()["run_id"], report["target_run_id"]
    ra, rb = c.get_run(a), c.get_run(b)
    assert rb.info.status == "FINISHED" and rb.data.tags["heimdall.synced_from"].endswith(report["source_run_id"])
    ignore = {"tracking.offline"}
    assert {k: v for k, v in ra.data.params.items() if k not in ignore} == {
        k: v for k, v in rb.data.params.items() if k not in ignore}
    assert set(ra.data.metrics) == set(rb.data.metrics)
    assert "system/cpu_utilization_percentage" in rb.data.metrics, "system metrics spooled and synced"
    for key in ra.data.metrics:
        ha, hb = history(c, a, key), history(c, b, key)
        if key.startswith("system/"):  # samples of the box over time: as many as the run lasted
            assert ha and hb, key
            continue
        assert [s for s, _ in ha] == [s for s, _ in hb], key
        if not key.startswith("perf/"):  # throughput is measured, not computed
            assert [v for _, v in ha] == pytest.approx([v for _, v in hb], rel=1e-4), key

    def files(run_id, path=None):
        out = []
        for info in c.list_artifacts(run_id, path):
            out += files(run_id, info.path) if info.is_dir else [info.path]
        return sorted(out)

    assert files(a) == files(b)
    assert _models(c, a) == _models(c, b) == [("checkpoint", "READY"), ("final", "READY")]
    experiment_id = rb.info.experiment_id
    synced = {m.tags["heimdall.kind"]: m for m in c.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{b}'")}
    assert {m.key for m in synced["final"].metrics} >= {"test/loss", "test/error_m_p50"}
    assert synced["checkpoint"].metrics[0].dataset_name.endswith("/val")
    assert {o.model_id for o in rb.outputs.model_outputs} == {m.model_id for m in synced.values()}
    import mlflow.pytorch

    assert mlflow.pytorch.load_model(f"{rb.info.artifact_uri}/model") is not None


def test_sync_interrupted_halfway_then_run_again_completes_without_duplicates(make_mlflow_server, tmp_path):
    made = run_heimdall(["train", *TINY, "--epochs", "2", "--offline", "--progress", "none", "--json"],
                        {"HEIMDALL_TRACKING__EXPERIMENT": "interrupted-sync"}, tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    spool = tmp_path / "outputs" / "spool"
    server = make_mlflow_server()
    env = {"MLFLOW_TRACKING_URI": server.url}
    c = _client(server.url)
    proc = subprocess.Popen([HEIMDALL, "runs", "sync", str(spool), "--json"], env={**os.environ, **env},
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        experiment = _safe(lambda: c.get_experiment_by_name("interrupted-sync"))
        if experiment is not None and _safe(lambda e=experiment: c.search_runs([e.experiment_id])):
            break
        time.sleep(0.05)
    server.kill()  # the network drops mid-sync
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err  # a dead backend: exit 3, one line
    assert "Traceback" not in err
    server.start()
    partial = c.search_runs([c.get_experiment_by_name("interrupted-sync").experiment_id])
    assert len(partial) == 1

    done = run_heimdall(["runs", "sync", str(spool), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = done.json()["runs"][0]["target_run_id"]
    assert run_id == partial[0].info.run_id and not done.json()["runs"][0]["created"]
    counts = _counts(c, run_id)
    expected = _expected_counts(made.json()["steps"], 2)
    assert {k: counts.get(k) for k in expected} == expected
    assert c.get_run(run_id).info.status == "FINISHED"
    assert len(c.search_runs([c.get_experiment_by_name("interrupted-sync").experiment_id])) == 1


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None


def test_long_outage_diverts_to_the_spool_and_sync_merges_it_back(make_mlflow_server, tmp_path):
    server = make_mlflow_server()
    env = {"MLFLOW_TRACKING_URI": server.url, "HEIMDALL_TRACKING__EXPERIMENT": "diverted",
           "HEIMDALL_TRACKING__OUTAGE_BOUND_S": "3", "HEIMDALL_TRACKING__FLUSH_INTERVAL_S": "0.2"}
    result = train_with_fault([*TINY, "--epochs", "2", "--json"], env, tmp_path, lambda proc: server.kill())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continues in the local spool" in result.stderr
    summary = result.json()
    assert summary["spool"] and Path(tmp_path / summary["spool"]).is_dir()
    server.start()
    synced = run_heimdall(["runs", "sync", summary["spool"], "--json"], env, tmp_path)
    assert synced.returncode == 0, synced.stderr
    report = synced.json()["runs"][0]
    assert report["target_run_id"] == summary["run_id"] and not report["created"], "merged into the original run"
    c = _client(server.url)
    counts = _counts(c, summary["run_id"])
    expected = _expected_counts(summary["steps"], summary["epochs"])
    assert {k: counts.get(k) for k in expected} == expected
    assert c.get_run(summary["run_id"]).info.status == "FINISHED"
    assert "model/MLmodel" in [a.path for a in c.list_artifacts(summary["run_id"], "model")]


def test_postgres_restarted_mid_training_loses_nothing(tmp_path):
    from tests.services import PrivatePostgres

    with PrivatePostgres() as pg:
        env = {"MLFLOW_TRACKING_URI": pg.uri, "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts"),
               "HEIMDALL_TRACKING__EXPERIMENT": "pg-restart", "HEIMDALL_TRACKING__FLUSH_INTERVAL_S": "0.2"}

        def restart(proc):
            pg.stop()
            time.sleep(20)
            pg.start()

        result = train_with_fault([*TINY, "--epochs", "3", "--json"], env, tmp_path, restart)
        stderr = result.stderr
        assert result.returncode == 0, stderr[-3000:]
        assert stderr.count("tracking backend unreachable") == 1, stderr[-3000:]
        assert stderr.count("tracking backend recovered") == 1
        summary = result.json()
        c = _client(pg.uri)
        assert c.get_run(summary["run_id"]).info.status == "FINISHED"
        counts = _counts(c, summary["run_id"])
        expected = _expected_counts(summary["steps"], summary["epochs"])
        assert {k: counts.get(k) for k in expected} == expected
