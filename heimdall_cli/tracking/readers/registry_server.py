"""The local registry server: registry writes to a SQLite or PostgreSQL store in well under a second.

Writing to a SQL store means MLflow's own store code, and loading it costs a fresh process
about 3 s (``import mlflow`` and its SQLAlchemy store); MLflow's schema is not an interface
to write to. Scripts call ``model register``, ``promote`` and ``rollback`` many times, so the
first of them on such a store starts ``mlflow server`` for it in the background, listening
on a Unix socket in a private folder (mode 0700), and does its own write in-process as
before. Later writes find the server and go through MLflow's public REST API, as they do
with an http tracking server; the registry lock is still the store's own (advisory lock or
file lock), so concurrent promotions behave the same. The server exits after
``tracking.registry_server_idle_s`` without use; ``tracking.registry_server=false`` turns it off.

Files, per store (the key hashes the store, its credentials and this Python environment):
``KEY.sock`` the socket; ``KEY.lock`` held by the supervisor while it lives; ``KEY.busy``
held shared by every command using the server (the supervisor stops it only when it can take
it exclusively, so no command loses the server half-way); ``KEY.used`` touched at each use;
``KEY.pid`` the supervisor's process id (SIGTERM it to stop the server now); ``KEY.log`` the
server's output; ``KEY.failed`` a failed start (no new try for a minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from heimdall_cli.tracking.readers.rest import RestReader, unix_request

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings

START_TIMEOUT_S = 120.0
RETRY_AFTER_S = 60.0
_held: dict[Path, IO[str]] = {}  # the flocks this process holds, by file; released when it exits


class Paths:
    """The files of one store's registry server (see the module's docstring)."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self.key = folder, key
        self.sock, self.lock, self.busy, self.used, self.log, self.failed = (
            folder / f"{key}.{suffix}" for suffix in ("sock", "lock", "busy", "used", "log", "failed"))
        self.pid = folder / f"{key}.pid"


def runtime_folder() -> Path:
    """``$XDG_RUNTIME_DIR/heimdall``, else ``~/.cache/heimdall/run``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "heimdall"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heimdall" / "run"


def paths_for(settings: Settings) -> Paths | None:
    """The server's files for this store, in a folder only this user can enter (None: not safely possible).

    A socket's path must be short (about 100 bytes): where the usual folder is too deep,
    ``/tmp/heimdall-UID`` (as tmux does).
    """
    t, s = settings.tracking, settings.storage
    identity = [os.getuid(), t.connection_uri(), s.artifact_root if s.is_s3 else str(Path(s.artifact_root).resolve()),
                s.s3_endpoint_url, s.access_key_id and s.access_key_id.get_secret_value(),
                s.secret_access_key and s.secret_access_key.get_secret_value(), s.region, s.addressing_style,
                os.path.realpath(sys.prefix)]  # this environment, however it is reached (a linked .venv)
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
    for folder in (runtime_folder(), Path(tempfile.gettempdir()) / f"heimdall-{os.getuid()}"):
        paths = Paths(folder, key)
        if len(str(paths.sock)) < 100:
            return paths if _private(folder) else None
    return None


def _private(folder: Path) -> bool:
    """Make ``folder`` (mode 0700) if needed; True if only this user can reach what is inside."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077 and folder.is_dir() and not folder.is_symlink()


def registry_writer(settings: Settings, timeout: float) -> RestReader | None:
    """A REST client on this store's registry server if one answers; otherwise start one for next time.

    None means: write in-process this time (the server is off, starting, stopping or failed).
    """
    t = settings.tracking
    if not t.registry_server or t.backend not in ("sqlite", "postgresql"):
        return None
    paths = paths_for(settings)
    if paths is None:
        return None
    if paths.sock.exists() and _hold(paths):
        paths.used.touch()
        if _healthy(paths.sock, min(timeout, 2.0)):
            return RestReader(settings, timeout, socket=str(paths.sock))
    start(settings, paths)
    return None


def _hold(paths: Paths) -> bool:
    """Take a shared hold on KEY.busy for the rest of this process (False: the server is stopping)."""
    return paths.busy in _held or _take(paths.busy, fcntl.LOCK_SH)


def _take(path: Path, mode: int) -> bool:
    """``flock`` ``path`` without waiting and keep it until this process exits (False: held the other way)."""
    handle = open(path, "a")  # noqa: SIM115 (kept open: closing it would release the lock)
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _held[path] = handle
    return True


def _healthy(sock: Path, timeout: float) -> bool:
    try:
        return unix_request(str(sock), "GET", "http://localhost/health", None, {}, timeout)[0] == 200
    except OSError:
        return False


def _locked(path: Path) -> bool:
    """Whether a process holds ``path`` exclusively (a supervisor is alive)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def start(settings: Settings, paths: Paths) -> None:
    """Start the supervisor in the background (it exits at once if another one runs)."""
    from heimdall_cli.tracking.server_process import server_command

    if paths.failed.exists() and time.time() - paths.failed.stat().st_mtime < RETRY_AFTER_S:
        return
    if _locked(paths.lock):
        return
    command, env = server_command(settings, socket=paths.sock)
    config = {"command": command, "env": env, "folder": str(paths.folder), "key": paths.key,
              "idle_s": settings.tracking.registry_server_idle_s}
    proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, text=True)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(json.dumps(config))  # secrets travel here, never on a command line
        proc.stdin.close()


def _die_with_parent() -> None:
    """In the server's process: SIGTERM it when the supervisor dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(config: dict[str, Any]) -> int:
    """The supervisor: run the server until it has been idle for ``idle_s``, then stop it."""
    from heimdall_cli.tracking.server_process import stop_group

    paths = Paths(Path(config["folder"]), config["key"])
    if not _take(paths.lock, fcntl.LOCK_EX):
        return 0  # another supervisor got there first
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    paths.sock.unlink(missing_ok=True)
    paths.pid.write_text(f"{os.getpid()}\n")
    with open(paths.log, "wb") as log:
        proc = subprocess.Popen(config["command"], env={**os.environ, **config["env"]}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(paths.sock, 1.0):
            if proc.poll() is not None or time.monotonic() > deadline or stopping:
                paths.failed.touch()
                return 1
            time.sleep(0.2)
        paths.failed.unlink(missing_ok=True)
        paths.used.touch()
        while not stopping and proc.poll() is None:
            time.sleep(1.0)
            if time.time() - paths.used.stat().st_mtime >= config["idle_s"] and _quiet(paths):
                break
        return 0
    finally:
        paths.sock.unlink(missing_ok=True)  # no new command finds it
        stop_group(proc)
        paths.pid.unlink(missing_ok=True)


def _quiet(paths: Paths) -> bool:
    """No command is using the server; once this returns True none can start to (the hold stays taken)."""
    return _take(paths.busy, fcntl.LOCK_EX)


def stop_all(folder: Path | None = None) -> list[int]:
    """SIGTERM every registry server's supervisor in ``folder`` (default: this user's); their pids."""
    stopped = []
    for pid_file in (folder or runtime_folder()).glob("*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, OSError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
    return stopped


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.stdin.read())))
