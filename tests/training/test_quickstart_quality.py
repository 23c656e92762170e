"""The quickstart's model against the references the run logs (issue targets, measured on every CI run).

The quickstart world has what real networks have (station gains and antenna patterns,
a fixed terrain, stations off); the classical RSSI estimator reads the extractor's power
estimates and knows only the path-loss model. Training on the CPU is deterministic for a
fixed seed, so these numbers repeat on this kind of machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from heimdall_cli.settings import load_settings
    from heimdall_cli.training.fit import fit

    tmp = tmp_path_factory.mktemp("quickstart")
    settings = load_settings(QUICKSTART, flags={
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}, "storage": {"artifact_root": str(tmp / "artifacts")},
        "training": {"output_dir": str(tmp / "outputs"), "progress": "none"}}, env_file=None)
    return fit(settings)


def test_the_model_beats_the_classical_estimator_and_is_calibrated(result):
    test = result.test
    model = test["test/error_m_p50"]
    assert model <= 0.85 * test["test/baseline_rssi_error_m_p50"], test
    assert model <= 0.60 * test["test/baseline_centre_error_m_p50"], test
    assert 0.63 <= test["test/coverage_68"] <= 0.73, test


def test_every_run_logs_the_oracle_and_the_sim_to_real_gap(result):
    test = result.test
    assert test["test/baseline_oracle_error_m_p50"] < test["test/baseline_rssi_error_m_p50"]
    assert test["test/sim2real_gap"] == pytest.approx(test["test/sim2real_error_m_p50"] / test["test/error_m_p50"])
    assert 0.8 < test["test/sim2real_gap"] < 2.0  # another terrain: the learned gains still hold
