"""The layers settings are read from, in one list: :func:`layers` (lowest precedence first).

Precedence, highest first: command-line flags > environment (``HEIMDALL_…``
with ``__`` nesting, then the standard ``MLFLOW_TRACKING_URI``, ``MLFLOW_S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) > ``.env`` > ``--config FILE`` (YAML
or JSON) > defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
)

from heimdall_cli.errors import ConfigError
from heimdall_cli.settings.models import ENV_PREFIX, Settings

#: Standard variables other tools already use, mapped onto our fields.
STANDARD_ENV: dict[str, tuple[str, str]] = {
    "MLFLOW_TRACKING_URI": ("tracking", "uri"),
    "MLFLOW_S3_ENDPOINT_URL": ("storage", "s3_endpoint_url"),
    "AWS_ACCESS_KEY_ID": ("storage", "access_key_id"),
    "AWS_SECRET_ACCESS_KEY": ("storage", "secret_access_key"),
}


def layers(config_file: Path | None, env_file: Path | None,
           flags: dict[str, Any]) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """(label, source) for every layer, lowest precedence first; the label names it in errors and --explain."""
    std_dotenv = StandardEnvSource(Settings, dotenv=True)
    std_dotenv.config = {**std_dotenv.config, "env_file": env_file}
    return [
        (f"file {config_file}", ConfigFileSource(Settings, config_file)),
        (f"{env_file} (standard variable)", std_dotenv),
        (str(env_file), DotEnvSettingsSource(Settings, env_file=env_file)),
        ("environment (standard variable)", StandardEnvSource(Settings)),
        (f"environment ({ENV_PREFIX}…)", EnvSettingsSource(Settings)),
        ("flag", InitSettingsSource(Settings, init_kwargs=flags)),
    ]


def name_variable(label: str, key: str) -> str:
    """Name the variable in environment sources: ``environment (HEIMDALL_TRAINING__SEED)``."""
    if label.endswith("(standard variable)"):
        var = next((v for v, path in STANDARD_ENV.items() if ".".join(path) == key), None)
        return label.replace("standard variable", var) if var else label
    if label == f"environment ({ENV_PREFIX}…)":
        return f"environment ({ENV_PREFIX}{key.upper().replace('.', '__')})"
    return label


class StandardEnvSource(PydanticBaseSettingsSource):
    """``MLFLOW_TRACKING_URI`` and friends, from the environment or from ``.env``."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: bool = False) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def _values(self) -> dict[str, str]:
        if not self.dotenv:
            return dict(os.environ)
        env_file = Path(self.config.get("env_file") or ".env")
        if not env_file.is_file():
            return {}
        from dotenv import dotenv_values

        return {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        values = self._values()
        for var, (section, key) in STANDARD_ENV.items():
            if values.get(var):
                out.setdefault(section, {})[key] = values[var]
        return out


class ConfigFileSource(PydanticBaseSettingsSource):
    """A YAML or JSON file given with ``--config``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config_file(self.path) if self.path else {}


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file; syntax errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror}", "Check the --config path.") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
            if context and start and mark and start.line != mark.line:
                # An unclosed bracket or quote is reported where the file ends: name where it began.
                problem += f" ({context} started at line {start.line + 1})"
            # from None: the parser's exception quotes the offending line, which may hold a credential.
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    _check_keys(data, path)
    return data


def _check_keys(data: dict[Any, Any], path: Path, prefix: str = "") -> None:
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {prefix}{key!r} is not a name (a {type(key).__name__}).")
        if isinstance(value, dict):
            _check_keys(value, path, f"{prefix}{key}.")

