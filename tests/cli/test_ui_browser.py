"""``heimdall ui`` in a real headless browser (Debian's chromium): it opens the model-training view.

MLflow 3.17's UI starts a fresh browser on its GenAI workflow (overview, traces, judges); the
URL ``heimdall ui`` prints names the experiment's runs and ``workflowType=machine_learning``.
The rendered DOM of that page lists the tiny training's run; the run's "Model metrics" tab
has chart sections named after the logged metric groups, and its artifacts show the plots. The
experiment's Models tab lists the run's logged models, and the run page links to each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import World, subprocess_env
from tests.services import free_port, wait_until_healthy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                   reason="Debian's chromium is not installed (.ci/run installs it)")]


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after the page's scripts ran (a fresh browser profile: no stored UI choices)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1400,1000", "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_ui_opens_the_training_view_with_charts_and_plots(sqlite_world: World, tmp_path: Path):
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    world = sqlite_world
    tracker = open_tracker(load_settings(flags=world.flags(), env_file=None), patient=False)
    run = tracker.get_run(world.run_id)
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("heimdall")), "ui", "--port", str(port), "-q"],
                            env=subprocess_env(world), cwd=world.tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith(f"http://localhost:{port}/#/experiments/") and "workflowType=machine_learning" in url
        base = url.split("/#", 1)[0]
        wait_until_healthy(proc, base, "the UI")

        landing = render(url, tmp_path / "profile-1")
        assert run.name in landing  # the runs table, not the GenAI overview
        assert "Judges" not in landing

        experiment_id = url.split("/experiments/", 1)[1].split("/", 1)[0]
        page = f"{base}/#/experiments/{experiment_id}/runs/{run.run_id}"
        metrics = render(f"{page}/model-metrics?workflowType=machine_learning", tmp_path / "profile-2")
        groups = {key.split("/", 1)[0] for key in run.metrics if "/" in key}
        assert {"train", "val", "best"} <= groups
        for group in ("val", "best"):
            assert f">{group}<" in metrics, f"no chart section {group!r} on the Model metrics tab"
        assert "Evaluations" not in metrics
        artifacts = render(f"{page}/artifacts?workflowType=machine_learning", tmp_path / "profile-3")
        assert ">plots<" in artifacts and ">model<" in artifacts

        # MLflow 3's Models tab lists the run's kept checkpoints and final model; the run page links to each,
        # with the step and the dataset split its metrics were measured on.
        models = tracker.logged_models(run.run_id)
        assert {m.kind for m in models} == {"checkpoint", "final"}
        tab = render(f"{base}/#/experiments/{experiment_id}/models?workflowType=machine_learning",
                     tmp_path / "profile-4")
        assert ">checkpoint<" in tab and ">localizer<" in tab and ">Ready<" in tab and run.name in tab
        overview = render(f"{page}?workflowType=machine_learning", tmp_path / "profile-5")
        assert f"Logged models ({len(models)})" in overview
        for m in models:
            assert f"#/experiments/{experiment_id}/models/{m.model_id}" in overview, m
        assert "/val (#" in overview and "/test (#" in overview
    finally:
        os.killpg(proc.pid, 2)
        proc.communicate(timeout=60)
