"""The local registry server: registry writes to SQLite / PostgreSQL through ``mlflow server`` on a private socket.

Real processes throughout: ``heimdall`` commands as console scripts, the supervisor they
start in the background, the ``mlflow server`` it runs, the worlds' real stores. Checked:
the first write starts the server and still succeeds in-process; later ones go through
the server's REST API without importing MLflow (``-X importtime``) and land in MLflow;
an idle server exits; a supervisor killed with SIGKILL takes its server along and the
next command still works; no password on any command line, in the log or the folder;
``tracking.registry_server=false`` starts nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import HEIMDALL, World, clone_model_run, subprocess_env

pytestmark = pytest.mark.slow
PASSWORD = "Reg-Server-Canary-55e1"


def _env(world: World, run_dir: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(world, **{"HEIMDALL_TRACKING__REGISTRY_SERVER": "true", "XDG_RUNTIME_DIR": str(run_dir),
                                    **extra})


def _heimdall(env: dict[str, str], *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-X", "importtime", "-m", "heimdall_cli", *args] if importtime else [HEIMDALL, *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def _folder(run_dir: Path) -> Path:
    return run_dir / "heimdall"


def _wait_ready(run_dir: Path, timeout: float = 90) -> Path:
    """The server's socket once it answers /health."""
    from heimdall_cli.tracking.readers.registry_server import _healthy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sock in _folder(run_dir).glob("*.sock"):
            if _healthy(sock, 1.0):
                return sock
        time.sleep(0.3)
    logs = "\n".join(p.read_text()[-2000:] for p in _folder(run_dir).glob("*.log"))
    raise AssertionError(f"no registry server came up in {timeout} s\n{logs}")


def _supervisor(run_dir: Path) -> int:
    (pid_file,) = _folder(run_dir).glob("*.pid")
    return int(pid_file.read_text())


def _tree(pid: int) -> dict[int, str]:
    """``pid`` and its descendants with their full command lines."""
    rows = subprocess.run(["ps", "-eww", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    args: dict[int, str] = {}
    for line in rows.splitlines():
        p, pp, cmd = line.strip().split(None, 2) + [""] * (3 - len(line.strip().split(None, 2)))
        children.setdefault(int(pp), []).append(int(p))
        args[int(p)] = cmd
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in args:
            out[p] = args[p]
            todo += children.get(p, [])
    return out


def _gone(pids: list[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("world", ["sqlite", pytest.param("postgres_s3", marks=pytest.mark.integration)],
                         indirect=True)
def test_writes_go_through_the_server_once_it_runs(world, run_dir):
    from heimdall_cli.tracking import registry

    env = _env(world, run_dir)
    tracker = world.tracker()
    runs = [clone_model_run(tracker, world, f"reg-server-{i}", best=0.5 + i / 10) for i in range(2)]
    # The first write starts the server in the background and writes in-process itself.
    first = _heimdall(env, "model", "register", "--run-id", runs[0], "-q")
    assert first.returncode == 0 and first.stdout == "1\n", first.stderr
    sock = _wait_ready(run_dir)
    # Later writes, fresh processes: through the server's REST API, MLflow never imported.
    for args, expected in ((("model", "register", "--run-id", runs[1], "-q"), "2\n"),
                           (("model", "promote", "--version", "1", "--stage", "Production", "-q"), "1\n"),
                           (("model", "promote", "--version", "2", "--stage", "Production", "-q"), "2\n"),
                           (("model", "rollback", "-q"), "1\n")):
        done = _heimdall(env, *args, importtime=True)
        assert done.returncode == 0 and done.stdout == expected, (args, done.stderr[-3000:])
        imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
        assert "heimdall_cli.tracking.readers.rest_registry" in imported, args
        assert not [m for m in imported if m.split(".")[0] in ("mlflow", "torch", "lightning", "sqlalchemy")], args
    log = sock.with_suffix(".log").read_text()
    assert "POST /api/2.0/mlflow/model-versions/create" in log and "POST /api/2.0/mlflow/registered-models/alias" in log
    # What landed in MLflow, read with MLflow's own client.
    name = world.env["HEIMDALL_TRACKING__MODEL_NAME"]
    aliases = tracker.client.get_registered_model(name).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"production": "1"}
    versions = {v: registry.get_version(tracker, name, v) for v in (1, 2)}
    assert (versions[1].tags["stage"], versions[2].tags["stage"]) == ("Production", "Archived")
    assert versions[2].tags["previous_version"] == "1" and versions[1].run_id == runs[0]


def test_idle_server_exits_and_a_killed_supervisor_takes_its_server_along(sqlite_only, run_dir):
    env = _env(sqlite_only, run_dir, HEIMDALL_TRACKING__REGISTRY_SERVER_IDLE_S="5")
    tracker = sqlite_only.tracker()
    run = clone_model_run(tracker, sqlite_only, "reg-server-idle")
    assert _heimdall(env, "model", "register", "--run-id", run, "-q").returncode == 0
    _wait_ready(run_dir)
    supervisor = _supervisor(run_dir)
    tree = list(_tree(supervisor))
    assert len(tree) >= 3, tree  # supervisor, mlflow server, uvicorn
    assert _gone(tree, timeout=60), "the idle server did not exit"
    assert not list(_folder(run_dir).glob("*.sock")) and not list(_folder(run_dir).glob("*.pid"))

    env["HEIMDALL_TRACKING__REGISTRY_SERVER_IDLE_S"] = "300"
    assert _heimdall(env, "model", "promote", "--version", "1", "--stage", "Staging", "-q").returncode == 0
    _wait_ready(run_dir)
    tree = list(_tree(_supervisor(run_dir)))
    os.kill(tree[0], signal.SIGKILL)  # the supervisor, killed hard: its server must not outlive it
    assert _gone(tree, timeout=30), "the server outlived its supervisor"
    again = _heimdall(env, "model", "promote", "--version", "1", "--stage", "Production", "-q")
    assert again.returncode == 0 and again.stdout == "1\n", again.stderr  # a stale socket: in-process, no error
    assert "Traceback" not in again.stderr
    _wait_ready(run_dir)  # and a new server for the next command


def test_off_starts_nothing(sqlite_only, run_dir):
    env = _env(sqlite_only, run_dir, HEIMDALL_TRACKING__REGISTRY_SERVER="false")
    run = clone_model_run(sqlite_only.tracker(), sqlite_only, "reg-server-off")
    assert _heimdall(env, "model", "register", "--run-id", run, "-q").returncode == 0
    time.sleep(2)
    assert not _folder(run_dir).exists() or not list(_folder(run_dir).iterdir())


@pytest.mark.integration
def test_no_password_on_command_lines_in_the_log_or_the_folder(pg_world, postgres_db, run_dir):
    uri = postgres_db.uri_with_password(PASSWORD)  # trust auth: any password connects
    env = _env(pg_world, run_dir, HEIMDALL_TRACKING__URI=uri)
    tracker = pg_world.tracker()
    run = clone_model_run(tracker, pg_world, "reg-server-secret")
    outputs = [_heimdall(env, "model", "register", "--run-id", run, "-q")]
    _wait_ready(run_dir)
    outputs.append(_heimdall(env, "-v", "model", "promote", "--version", "1", "--stage", "Production"))
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    tree = _tree(_supervisor(run_dir))
    assert any("mlflow server" in cmd for cmd in tree.values()), tree
    places = {f"command line of {pid}": cmd for pid, cmd in tree.items()}
    places.update({str(p): p.read_bytes().decode(errors="replace") for p in _folder(run_dir).iterdir()
                   if p.is_file()})
    places.update({f"output {i}": o.stdout + o.stderr for i, o in enumerate(outputs)})
    assert [where for where, text in places.items() if "Canary" in text] == []
    assert oct(_folder(run_dir).stat().st_mode & 0o777) == "0o700"
