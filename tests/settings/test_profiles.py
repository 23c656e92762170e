"""Packaged profiles: found by name, identical to the checkout's configs/, written out by `config init`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings import load_settings
from heimdall_cli.settings.profiles import profile_names, profiles_dir

ROOT = Path(__file__).resolve().parents[2]
HEIMDALL = str(Path(sys.executable).with_name("heimdall"))
PACKAGED = ("default", "quickstart", "sweep")


def heimdall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEIMDALL, *args], capture_output=True, text=True, timeout=60)


def test_the_three_profiles_ship_in_the_package():
    assert profile_names() == list(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_configs_folder_holds_the_packaged_files(name):
    # One source of truth: the checkout's configs/NAME.yaml is byte for byte the packaged profile.
    assert (ROOT / "configs" / f"{name}.yaml").read_bytes() == (profiles_dir() / f"{name}.yaml").read_bytes()


@pytest.mark.parametrize("name", PACKAGED)
def test_a_profile_loads_by_name_from_any_folder(name):
    by_name = load_settings(name, env_file=None)
    by_path = load_settings(ROOT / "configs" / f"{name}.yaml", env_file=None)
    assert by_name.model_dump() == by_path.model_dump()
    assert load_settings(f"{name}.yaml", env_file=None).model_dump() == by_path.model_dump()


def test_a_file_wins_over_the_profile_of_the_same_name(tmp_path):
    (tmp_path / "quickstart").write_text("training:\n  epochs: 17\n")
    assert load_settings("quickstart", env_file=None).training.epochs == 17


def test_an_unknown_name_lists_the_packaged_ones():
    with pytest.raises(ConfigError, match=r"no packaged profile 'nope'; packaged profiles: default, quickstart, sweep"):
        load_settings("nope", env_file=None)
    with pytest.raises(ConfigError, match="not found") as e:
        load_settings("configs/quickstart.yaml", env_file=None)  # outside a checkout
    assert e.value.hint == "The packaged profile needs no checkout: --config quickstart"


def test_cli_unknown_profile_is_one_line_exit_2():
    proc = heimdall("config", "show", "--config", "nope")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == ("Error: --config nope: no such file, and no packaged profile 'nope'; "
                                           "packaged profiles: default, quickstart, sweep.")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_config_init_writes_a_copy_and_refuses_to_overwrite(tmp_path):
    proc = heimdall("config", "init", "quickstart")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "quickstart.yaml\n"
    assert (tmp_path / "quickstart.yaml").read_bytes() == (profiles_dir() / "quickstart.yaml").read_bytes()
    assert "heimdall train --config quickstart.yaml" in proc.stderr

    (tmp_path / "quickstart.yaml").write_text("training:\n  epochs: 9\n")
    again = heimdall("config", "init", "quickstart")
    assert again.returncode == 2 and "quickstart.yaml exists already" in again.stderr
    assert (tmp_path / "quickstart.yaml").read_text() == "training:\n  epochs: 9\n"
    forced = heimdall("config", "init", "quickstart", "--force")
    assert forced.returncode == 0
    assert (tmp_path / "quickstart.yaml").read_bytes() == (profiles_dir() / "quickstart.yaml").read_bytes()

    other = heimdall("config", "init", "default", "gpu/box.yaml")
    assert other.returncode == 0 and other.stdout == "gpu/box.yaml\n"
    shown = heimdall("config", "show", "--config", "gpu/box.yaml", "--key", "training.backbone", "-q")
    assert shown.stdout.strip() == load_settings("default", env_file=None).training.backbone

    unknown = heimdall("config", "init", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "Error: No packaged profile 'nope'; packaged profiles: default, quickstart, sweep."
