"""The same conventions on every command, checked by walking the command tree.

Every command takes ``--json`` and ``-q``; every not-found answer is exit 4 with one
line on stderr and nothing on stdout (whatever the output mode); ``verify -q`` prints
nothing. A fresh embedded store is the backend: real MLflow schema, nothing mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from heimdall_cli.cli import app
from tests.cli.conftest import cli

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"


def leaf_commands() -> list[tuple[str, ...]]:
    """Every command of ``heimdall``, as the words that name it."""
    out: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, (*path, name))
        else:
            out.append(path)

    walk(typer.main.get_command(app), ())
    return out


def test_the_tree_is_walked():
    commands = leaf_commands()
    assert len(commands) >= 20
    assert ("runs", "best") in commands and ("verify",) in commands and ("model", "promote") in commands


@pytest.mark.parametrize("words", leaf_commands(), ids=" ".join)
def test_every_command_has_json_and_quiet(words):
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    opts = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert {"--json", "-q", "--quiet"} <= opts, f"heimdall {' '.join(words)} lacks --json or -q"
    result = cli(*words, "--help")
    assert result.exit_code == 0 and "--json" in result.stdout


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store that MLflow created, with one experiment and one run, and no registered model."""
    folder = tmp_path_factory.mktemp("conventions")
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    flags = {"tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
             "storage": {"artifact_root": str(folder / "artifacts")}}
    tracker = open_tracker(load_settings(flags=flags, env_file=None), patient=False)
    tracker.client.create_run(tracker.get_or_create_experiment(), run_name="only")
    return folder


@pytest.fixture
def empty_store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's store, selected by the environment for this test."""
    db = store_dir / "mlflow.db"
    monkeypatch.setenv("HEIMDALL_TRACKING__URI", f"sqlite:///{db}")
    monkeypatch.setenv("HEIMDALL_STORAGE__ARTIFACT_ROOT", str(store_dir / "artifacts"))
    monkeypatch.chdir(store_dir)
    return db


NOT_FOUND = [
    ("runs", "show", UNKNOWN_RUN),
    ("runs", "show", "ffff0000"),  # a prefix of no run
    ("runs", "compare", UNKNOWN_RUN, "ffff0000"),
    ("runs", "best", "--metric", "no/such"),
    ("runs", "list", "--experiment", "no-such-experiment"),
    ("runs", "best", "--experiment", "no-such-experiment"),
    ("model", "list"),
    ("model", "promote", "--version", "1", "--stage", "Production"),
    ("model", "promote", "--from-alias", "staging", "--stage", "Production"),
    ("model", "rollback"),
    ("model", "export", "--version", "1"),
    ("model", "register", "--run-id", UNKNOWN_RUN),
    ("train", "--resume", UNKNOWN_RUN),
]


@pytest.mark.parametrize("args", NOT_FOUND, ids=" ".join)
@pytest.mark.parametrize("mode", ["human", "--json", "-q"])
def test_not_found_is_exit_4_one_line_and_nothing_on_stdout(empty_store, args, mode):
    result = cli(*args, *([] if mode == "human" else [mode]))
    assert result.exit_code == 4, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    assert len(lines) <= 2  # the error, and its hint


def test_quiet_prints_the_one_value(empty_store):
    run_id = cli("runs", "list", "-q").stdout.split()
    assert len(run_id) == 1 and len(run_id[0]) == 32
    assert cli("runs", "show", run_id[0][:6], "-q").stdout.strip() == "RUNNING"
    assert cli("config", "show", "--key", "tracking.uri", "-q").stdout.strip() == f"sqlite:///{empty_store}"
    listing = cli("runs", "list").stdout
    assert run_id[0][:8] in listing and run_id[0] not in listing  # short ids in tables
    assert run_id[0] in cli("runs", "list", "--wide").stdout
    assert json.loads(cli("runs", "list", "--json").stdout)["runs"][0]["run_id"] == run_id[0]


def test_verify_quiet_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HEIMDALL_TRACKING__URI", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    result = cli("verify", "-q")
    assert result.exit_code == 3 and result.stdout == ""


def test_shell_completion_suggests_run_ids_from_the_backend(empty_store):
    """The completion protocol of a real shell (zsh's), in a fresh process: ids from the store; dead backend: none."""
    import os
    import subprocess
    import sys
    import time

    run_id = cli("runs", "list", "-q").stdout.split()[0]
    heimdall = str(Path(sys.executable).with_name("heimdall"))

    def complete(words: str, **env: str) -> str:
        done = subprocess.run([heimdall], env={**os.environ, "_HEIMDALL_COMPLETE": "complete_zsh",
                                               "_TYPER_COMPLETE_ARGS": words, **env},
                              capture_output=True, text=True, timeout=60)
        return done.stdout

    assert run_id in complete(f"heimdall runs show {run_id[:3]}")
    assert run_id in complete("heimdall train --resume ")
    assert run_id not in complete("heimdall runs show zz")
    started = time.monotonic()
    dead = complete("heimdall runs show ", HEIMDALL_TRACKING__URI="postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert run_id not in dead and time.monotonic() - started < 20
