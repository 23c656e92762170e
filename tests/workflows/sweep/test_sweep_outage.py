"""A sweep through a tracking-server outage: each trial's writes take `heimdall train`'s outage path.

A real `mlflow server` (PostgreSQL behind it) is killed while trial 0 trains and started again
20 s later; the study lives in a SQLite file of its own (`--storage`), as it would beside an
http tracking server.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.training.conftest import history
from tests.workflows.sweep.conftest import children, report, spawn, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_server_killed_mid_trial_and_restarted_the_sweep_finishes_and_loses_nothing(make_mlflow_server, tmp_path):
    server = make_mlflow_server()
    env = {"MLFLOW_TRACKING_URI": server.url, "HEIMDALL_TRACKING__EXPERIMENT": "sweep-outage",
           "HEIMDALL_TRACKING__FLUSH_INTERVAL_S": "0.2"}
    n = 2
    config = tiny_config(tmp_path, trials=n)
    w = spawn(["start", "-c", str(config), "--name", "outage", "--storage", f"sqlite:///{tmp_path / 'study.db'}",
               "--json", "--progress", "plain", "training.progress_interval_s=0.1"], env, tmp_path, "w")
    w.wait_for(r"trial 0 started")
    w.wait_for(r" step [3-9]")
    server.kill()
    time.sleep(20)
    server.start()
    rc, out, err = w.wait()
    assert rc == 0, err[-3000:]
    assert "tracking backend unreachable" in err and "tracking backend recovered" in err, err[-3000:]
    assert "Traceback" not in err
    r = report(out)
    assert (r["finished"], r["complete"], r["failed"]) == (n, n, 0), r["trials"]

    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=server.url)
    kids = children(c, "sweep-outage", r["parent_run_id"])
    assert sorted(int(k.data.params["sweep.trial"]) for k in kids) == list(range(n))
    train_samples, expected = _steps_per_trial(config)  # 320 samples, 2 epochs x 10 steps: a trial without outage
    for kid in kids:
        assert kid.info.status == "FINISHED" and kid.data.tags["heimdall.sweep.state"] == "complete"
        steps = [s for s, _ in history(c, kid.info.run_id, "train/loss")]
        # Every step, the last ones too, none twice: the trial that trained through the outage has exactly as
        # many train/loss points as its configuration makes (a lost tail would still be 0..n-1).
        assert steps == list(range(expected)), (kid.data.params["sweep.trial"], len(steps), expected)
        assert int(kid.data.params["data.train_samples"]) == train_samples, kid.data.params
        assert len(history(c, kid.info.run_id, "val/loss")) == 2, "both epochs' validation"
    parent = c.get_run(r["parent_run_id"])
    best_child = min(kids, key=lambda k: k.data.metrics["best/val_loss"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best/val_loss"] == best_child.data.metrics["best/val_loss"]
    assert parent.data.tags["heimdall.sweep.best_run_id"] == best_child.info.run_id == r["best_run_id"]


def _steps_per_trial(config: Path) -> tuple[int, int]:
    """Train samples and optimizer steps of one trial of the sweep config: epochs x (train samples // batch size).

    The train split is what is left of data.samples after validation and test (the default fractions);
    the loader drops the last incomplete batch. Nothing stops a trial early here: no pruner, no early stopping.
    """
    from heimdall_cli.settings import DataSettings

    cfg = yaml.safe_load(config.read_text())
    training, data, sweep = cfg["training"], cfg["data"], cfg["sweep"]
    assert sweep["pruner"] == "none" and training["early_stopping_patience"] == 0, cfg
    assert not {"training.epochs", "training.batch_size", "data.samples"} & set(sweep["space"]), sweep["space"]
    defaults = DataSettings()
    n = data["samples"]
    train = n - max(1, round(n * defaults.val_fraction)) - max(1, round(n * defaults.test_fraction))
    return train, training["epochs"] * (train // training["batch_size"])
