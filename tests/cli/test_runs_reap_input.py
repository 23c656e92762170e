"""runs reap: bad input is one line and exit 2; durations read as a person writes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heimdall_cli.cli.reap import parse_duration
from heimdall_cli.errors import ConfigError

HEIMDALL = str(Path(sys.executable).with_name("heimdall"))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                               ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-3m", "0", "m", "10 minutes"])
def test_bad_durations(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


@pytest.mark.parametrize(("args", "needle"), [(["--older-than", "5x"], "--older-than '5x' is not a duration."),
                                              (["--status", "DONE"], "a lost run ends FAILED or KILLED")])
def test_bad_input_is_one_line_exit_2(args, needle):
    proc = subprocess.run([HEIMDALL, "runs", "reap", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert needle in proc.stderr.splitlines()[0] and "Traceback" not in proc.stderr
