"""``load_settings``: the one way to resolve settings from every layer.

It merges the layers of :func:`~heimdall_cli.settings.sources.layers` (lowest
precedence first), validates once, reports every bad value with its field, value
(credentials masked) and source, registers secrets for scrubbing, and records where
each value came from (``Settings.sources``, shown by ``config show --explain``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from heimdall_cli.errors import ConfigError
from heimdall_cli.redact import MASK, register_secret
from heimdall_cli.settings.models import SECRET_KEYS, Settings, walk
from heimdall_cli.settings.profiles import resolve_config
from heimdall_cli.settings.sources import layers, name_variable

# Names that look like a credential (a misspelt password too): their values are never shown.
_SECRET_LIKE = re.compile(r"pass|pasw|pwd|secret|key|token|cred|auth", re.IGNORECASE)


def load_settings(
    config_file: Path | str | None = None,
    flags: dict[str, Any] | None = None,
    env_file: Path | str | None = ".env",
) -> Settings:
    """Resolve settings: flags > environment > ``env_file`` > ``config_file`` > defaults."""
    path = resolve_config(config_file) if config_file else None
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, source in layers(path, Path(env_file) if env_file else None, flags):
        try:
            values = source()
        except ConfigError:
            raise
        except Exception as e:  # pydantic-settings parse errors (bad JSON in env, …)
            raise ConfigError(f"Cannot read settings from {label}: {e}") from e
        values = values if isinstance(values, dict) else {}
        _deep_merge(merged, values)
        for key in _flatten_keys(values):
            sources[key] = name_variable(label, key)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe_validation_error(e, merged, sources)) from None
    for _, value, _ in walk(settings):
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    if sources.get("tracking.uri") and settings.tracking.password is not None:
        sources.setdefault("tracking.password", sources["tracking.uri"])
    settings._sources = sources
    return settings


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["training.weight_decay=0.01", …]`` into a nested flags dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"Override {item!r} is not KEY=VALUE.", "Example: training.weight_decay=0.01")
        if key.split(".")[0] not in Settings.model_fields:
            sections = ", ".join(Settings.model_fields)
            raise ConfigError(f"Override {key!r}: unknown section {key.split('.')[0]!r}.", f"Sections: {sections}.")
        set_flag(out, key, _parse_scalar(value))
    return out


def _parse_scalar(value: str) -> Any:
    value = value.strip()
    if value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def set_flag(flags: dict[str, Any], dotted: str, value: Any) -> None:
    """Put ``value`` at ``dotted`` (e.g. ``training.epochs``) when it was given."""
    if value is None:
        return
    *path, last = dotted.split(".")
    node = flags
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _flatten_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        if isinstance(value, dict):
            keys.extend(_flatten_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _describe_validation_error(error: ValidationError, merged: dict[str, Any], sources: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not isinstance(p, int))
        value = _lookup(merged, loc)
        source = sources.get(loc) or _source_of_section(loc, sources)
        secret = loc in SECRET_KEYS or _SECRET_LIKE.search(loc.rsplit(".", 1)[-1]) is not None
        shown = MASK if secret and value is not None else repr(value)
        if item["type"] == "extra_forbidden":
            problems.append(f"{loc} = {shown} from {source}: unknown setting")
            continue
        problems.append(f"{loc or '(top level)'} = {shown} from {source}: {item['msg']}")
    return "Invalid configuration: " + "; ".join(problems)


def _source_of_section(loc: str, sources: dict[str, str]) -> str:
    hits = {v for k, v in sources.items() if k.startswith(loc + ".") or loc.startswith(k + ".")}
    return " / ".join(sorted(hits)) or "default"


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split(".") if dotted else []:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
