"""Profiles shipped inside the package (``heimdall_cli/profiles/*.yaml``), found by name.

``--config quickstart`` reads the packaged quickstart profile; a path to a file still works
and wins over a profile of the same name. ``configs/*.yaml`` in a checkout are copies of
these files (a test keeps them identical).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from heimdall_cli.errors import ConfigError


def profiles_dir() -> Path:
    """The folder of packaged profiles."""
    return Path(str(files("heimdall_cli") / "profiles"))


def profile_names() -> list[str]:
    """Names of the packaged profiles, sorted (``default``, ``quickstart``, ``sweep``)."""
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def profile_path(name: str) -> Path:
    """The packaged profile ``name``; ConfigError (exit 2) listing the names when there is none."""
    path = profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"No packaged profile {name!r}; packaged profiles: {', '.join(profile_names())}.")
    return path


def resolve_config(value: Path | str) -> Path:
    """A ``--config`` value: an existing file, else the packaged profile of that name (``quickstart``)."""
    path = Path(value)
    if path.is_file():
        return path
    text = str(value)
    if "/" not in text and "\\" not in text and path.suffix.lower() in ("", ".yaml", ".yml"):
        if (profiles_dir() / f"{path.stem}.yaml").is_file():
            return profiles_dir() / f"{path.stem}.yaml"
        if not path.suffix:
            raise ConfigError(f"--config {text}: no such file, and no packaged profile {text!r}; "
                              f"packaged profiles: {', '.join(profile_names())}.",
                              "Give a path to a YAML or JSON file, or a packaged profile's name.")
    hint = (f"The packaged profile needs no checkout: --config {path.stem}"
            if path.stem in profile_names() else f"Packaged profiles: {', '.join(profile_names())}.")
    raise ConfigError(f"Config file {path} not found.", hint)
