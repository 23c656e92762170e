"""A resume may change how training goes on, never what the model is.

Real `heimdall train` processes on a real SQLite MLflow store: a 1-epoch run resumed with
another backbone is refused (exit 2, one line naming the key, nothing trained or tagged);
resumed with more epochs and another learning rate it learns on (lr above zero in the added
epoch, the losses go down) and the run records what changed.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.training.conftest import TINY, client, history, local_env, run_heimdall

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 15  # TINY: 480 training samples, batches of 32


def test_a_changed_model_is_refused_and_more_epochs_learn_on(tmp_path):
    env = local_env(tmp_path)
    first = run_heimdall(["train", *TINY, "--epochs", "1", "--json", "--progress", "none"], env, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run_id = first.json()["run_id"]
    c = client(env)
    before = {k: history(c, run_id, k) for k in c.get_run(run_id).data.metrics}

    started = time.monotonic()
    refused = run_heimdall(["train", *TINY, "--epochs", "2", "--resume", run_id, "--backbone", "test_resnet"],
                           env, tmp_path)
    seconds = time.monotonic() - started
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    error = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "training.backbone ('test_convnext' -> 'test_resnet')" in error[0], refused.stderr
    assert seconds < 30, f"refused after {seconds:.0f} s: the check comes before data and model are built"
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and "heimdall.resumed_at" not in run.data.tags
    assert {k: history(c, run_id, k) for k in run.data.metrics} == before, "nothing was logged"

    more = run_heimdall(["train", *TINY, "--epochs", "2", "--learning-rate", "0.05", "--resume", run_id, "--json",
                         "--progress", "none"], env, tmp_path)
    assert more.returncode == 0, more.stderr[-2000:]
    assert more.json()["run_id"] == run_id and more.json()["steps"] == 2 * STEPS_PER_EPOCH
    tags = c.get_run(run_id).data.tags
    assert json.loads(tags["heimdall.resume_changes"]) == {"training.epochs": ["1", "2"],
                                                           "training.learning_rate": ["0.001", "0.05"]}
    lr = dict(history(c, run_id, "lr"))
    # The cosine spans the 30 steps now: at step 15 it is half-way down from the new peak, not at zero.
    assert 0.2 * 0.05 < lr[STEPS_PER_EPOCH] <= 0.05, lr
    losses = [v for _, v in history(c, run_id, "train/loss")]
    first_epoch, added = losses[:STEPS_PER_EPOCH], losses[STEPS_PER_EPOCH:]
    assert len(added) == STEPS_PER_EPOCH and np.ptp(added) > 0
    assert np.mean(added) < np.mean(first_epoch), (first_epoch, added)
    val = [v for _, v in history(c, run_id, "val/loss")]
    assert len(val) == 2 and val[1] < val[0], "the added epoch learned something"
