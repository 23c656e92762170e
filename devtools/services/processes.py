"""Process helpers the services share: free ports, the venv's executables, process sessions, the fast-lane guard."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: Variables that would point a child process at some other tracking store or S3 account.
_FOREIGN_ENV_PREFIXES = ("HEIMDALL_", "AWS_", "MLFLOW_")


#: Set to 1 by ``make test-fast``: any service a test then starts is refused (see :func:`refuse_without_services`).
NO_SERVICES_VAR = "TESTS_WITHOUT_SERVICES"


def refuse_without_services(what: str) -> None:
    """Raise when the fast lane (``TESTS_WITHOUT_SERVICES=1``) reaches for a real service.

    A test that needs PostgreSQL, S3 or an mlflow server belongs to the ``integration`` lane;
    this turns a forgotten marker into a clear failure instead of a slow, flaky fast lane.
    """
    if os.environ.get(NO_SERVICES_VAR) == "1":
        raise RuntimeError(f"{what} requested with {NO_SERVICES_VAR}=1 (make test-fast): "
                           "mark the test 'integration' or use a service fixture")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def venv_executable(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (e.g. ``mlflow``)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def clean_child_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without HEIMDALL_*, AWS_* and MLFLOW_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV_PREFIXES)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env["HEIMDALL_TRACKING__REGISTRY_SERVER"] = "false"  # no background server per throw-away store
    env.update(extra)
    return env


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError):
        return False


def wait_until_healthy(proc: subprocess.Popen[Any], base_url: str, what: str, timeout: float = 120) -> None:
    """Wait until ``base_url``/health answers; fail at once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not http_ok(f"{base_url}/health", timeout=2):
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.5)


def log_tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- processes


def session_processes(sid: int) -> list[dict[str, Any]]:
    """Live processes whose session id is ``sid`` (zombies excluded), read from /proc.

    Each entry: ``pid``, ``ppid``, ``pgid``, ``state`` and ``cmdline``.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, ppid, pgid, session = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
        if session == sid and state not in ("Z", "X"):
            found.append({"pid": int(entry), "ppid": ppid, "pgid": pgid, "state": state, "cmdline": cmdline.strip()})
    return found


def ps_session(sid: int) -> list[str]:
    """``ps`` lines (pid, sid, stat, args) of the non-zombie processes in session ``sid``."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[1] == str(sid) and not parts[2].startswith("Z"):
            lines.append(line.strip())
    return lines


def stop_process_group(proc: subprocess.Popen[Any], *, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL what is left after ``grace_s``.

    Returns when no (non-zombie) process of the session remains, so no child
    survives (the session leader must have been started with ``start_new_session``).
    """
    sid = proc.pid
    if grace_s > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()
            if not session_processes(sid):
                break
            time.sleep(0.1)
    # SIGKILL the group and any straggler of the session that changed its group.
    for _ in range(50):
        left = session_processes(sid)
        if not left:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGKILL)
        time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    left = session_processes(sid)
    if left:
        raise RuntimeError(f"processes of session {sid} survived SIGKILL: {left}")


# --------------------------------------------------------------------------- PostgreSQL
