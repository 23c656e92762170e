"""A model that learned something, for oracles that a constant or a shuffled answer fails.

The session's tiny training (tests/cli/conftest.py: 600 samples, 1 epoch, 19 steps) is
there to be logged, registered and exported; its positions are no better than the
receivers' centre. This one (1000 samples, 3 epochs of 16: 190 steps, about a minute on
2 cores) gets about 0.55x the centre's median error. It is trained once per session and
backend, into the experiment ``<experiment>-learned`` of the world's tracking store.
"""

from __future__ import annotations

from typing import Any

import pytest

LEARNED_TRAINING = {
    "training": {"backbone": "test_convnext", "pretrained": False, "epochs": 3, "batch_size": 16,
                 "progress": "none", "early_stopping_patience": 0, "save_top_k": 1},
    "data": {"samples": 1000},
}
_RUNS: dict[str, str] = {}


def learned_run(world: Any) -> str:
    """The run id of the learned model in ``world``'s tracking store (trained on first use)."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.training.fit import fit
    from tests.cli.conftest import _clean_env

    key = world.uri
    if key not in _RUNS:
        flags = world.flags(HEIMDALL_TRACKING__EXPERIMENT=f"{world.experiment}-learned")
        for section, values in LEARNED_TRAINING.items():
            flags.setdefault(section, {}).update(values)
        flags["training"].update(output_dir=str(world.tmp / "learned-outputs"), run_name="learned")
        with pytest.MonkeyPatch.context() as mp, _clean_env():
            mp.chdir(world.tmp)
            result = fit(load_settings(flags=flags, env_file=None))
        assert result.status == "FINISHED" and result.model_uri, result
        _RUNS[key] = result.run_id
    return _RUNS[key]
