"""``heimdall ui`` stops on SIGINT even when it was started with SIGINT ignored.

A shell without job control (``heimdall ui &`` in a script, ``nohup``) starts background
commands with SIGINT ignored, and Python then installs no KeyboardInterrupt handler: before
the fix, ``kill -INT`` (or Ctrl+C after ``fg``) did nothing and the server kept running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port, wait_until_healthy

HEIMDALL = str(Path(sys.executable).with_name("heimdall"))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("inherited", ["ignored", "default"])
@pytest.mark.slow
def test_ui_stops_on_sigint_and_takes_its_server_along(inherited: str, tmp_path: Path):
    port = free_port()
    env = {**os.environ, "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts"),
           "HEIMDALL_TRACKING__EXPERIMENT": "ui-signals"}
    proc = subprocess.Popen(
        [HEIMDALL, "ui", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--port", str(port), "-q"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None)
    server_pgid, alive_after = None, False
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith(f"http://localhost:{port}/#/experiments"), proc.stderr.read()[-2000:]
        base = url.split("/#", 1)[0]
        wait_until_healthy(proc, base, "the UI")
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert children, "no server process under heimdall ui"
        server_pgid = os.getpgid(int(children[0]))
        assert server_pgid != os.getpgid(proc.pid)  # the server runs in a group of its own

        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if server_pgid is not None and _group_alive(server_pgid):
            os.killpg(server_pgid, signal.SIGKILL)
            alive_after = True
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert not alive_after, "the MLflow server outlived heimdall ui"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/health", timeout=2)
