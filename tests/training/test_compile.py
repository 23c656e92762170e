"""training.compile: a real tiny training with the backbone through torch.compile."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import TINY, client, local_env, run_heimdall


@pytest.mark.slow
def test_a_compiled_training_runs_logs_the_setting_and_keeps_eager_checkpoints(tmp_path):
    env = local_env(tmp_path)
    result = run_heimdall(["train", *TINY, "data.samples=200", "--epochs", "1", "--max-steps", "3",
                           "training.compile=true", "--json"], env, tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.json()["run_id"]
    run = client(env).get_run(run_id)
    assert run.data.params["training.compile"] == "True"
    assert run.info.status == "FINISHED"
    # Compiled in place: the checkpoint holds the eager model's names, so eager runs load it (and resume it).
    (ckpt,) = (tmp_path / "outputs" / run_id / "checkpoints").glob("last.ckpt")
    keys = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert any(k.startswith("net.backbone.") for k in keys)
    assert not any("_orig_mod" in k for k in keys)
