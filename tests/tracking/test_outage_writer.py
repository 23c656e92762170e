"""The outage-tolerant run writer on its own: a real PostgreSQL stopped and started, a dead server.

``RunWriter`` is what every write of a running run goes through (the CLI-level outage
tests in ``tests/training/test_outage.py`` train through it end to end).
"""

from __future__ import annotations

import time

import pytest

from heimdall_cli.errors import BackendUnavailable, ConfigError
from heimdall_cli.tracking.outage import RunWriter
from heimdall_cli.tracking.spool import ORIGIN_RUN_ID, open_spool
from tests.services import PrivatePostgres, free_port

pytestmark = pytest.mark.integration


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _set_tag(key: str, value: str):
    return lambda client, run_id: client.set_tag(run_id, key, value)


def test_unreachable_then_recovered_with_one_warning_each(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    events: list[str] = []
    with PrivatePostgres() as pg:
        client = _client(pg.uri + "?connect_timeout=2")
        experiment = client.create_experiment("outage-writer", artifact_location=(tmp_path / "a").as_uri())
        run_id = client.create_run(experiment).info.run_id
        writer = RunWriter(client, run_id, experiment_name="outage-writer", run_name="w", spool_dir=tmp_path / "spool",
                           bound_s=600, pending=lambda: 7, on_event=events.append)
        writer.call("Setting a tag", _set_tag("before", "1"))
        pg.stop()
        for _ in range(2):
            with pytest.raises(BackendUnavailable, match="unreachable"):
                writer.call("Setting a tag", _set_tag("during", "1"))
        assert len(events) == 1 and "unreachable" in events[0] and "7 metric points queued" in events[0]
        pg.start()
        writer.call("Setting a tag", _set_tag("after", "1"))
        assert len(events) == 2 and events[1].startswith("tracking backend recovered")
        assert not writer.diverted
        tags = client.get_run(run_id).data.tags
        assert tags["before"] == tags["after"] == "1" and "during" not in tags  # the caller's queue retries it


def test_an_outage_past_the_bound_diverts_the_run_to_the_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    dead = _client(f"http://127.0.0.1:{free_port()}")
    events: list[str] = []
    writer = RunWriter(dead, "a" * 32, experiment_name="diverted", run_name="long", spool_dir=tmp_path / "spool",
                       bound_s=0.5, on_event=events.append)
    writer.remember(params={"training.seed": "1"}, tags={"backbone": "test_convnext"})
    with pytest.raises(BackendUnavailable):
        writer.call("Setting a tag", _set_tag("x", "1"))
    time.sleep(0.6)
    writer.call("Setting a tag", _set_tag("x", "2"))  # past the bound: lands in the spool instead
    assert writer.diverted and "continues in the local spool" in events[-1]
    writer.call("Setting a tag", _set_tag("y", "3"))

    spool = open_spool(tmp_path / "spool")
    run = _client(spool.tracking_uri).get_run(writer.spool_run_id)
    assert run.data.tags[ORIGIN_RUN_ID] == "a" * 32
    assert (run.data.tags["x"], run.data.tags["y"], run.data.tags["backbone"]) == ("2", "3", "test_convnext")
    assert run.data.params == {"training.seed": "1"}


def test_a_refused_write_is_not_an_outage(tmp_path):
    client = _client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("refused")).info.run_id
    events: list[str] = []
    writer = RunWriter(client, run_id, experiment_name="refused", run_name=None, spool_dir=tmp_path / "spool",
                       bound_s=0, on_event=events.append)
    with pytest.raises(ConfigError, match="Invalid value"):
        writer.call("Logging a metric", lambda c, r: c.log_metric(r, "bad key!", 1.0))  # MLflow refuses the name
    assert events == [] and not writer.diverted
