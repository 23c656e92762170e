"""Settings shown to people and logged to MLflow: always with credentials masked or left out."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from heimdall_cli.redact import MASK
from heimdall_cli.settings.models import SECRET_KEYS, Settings, walk

# Settings that shape how a run is watched, not what it computes: not logged as params.
_NOT_PARAMS = {"tracking.query_timeout_s", "tracking.register_timeout_s", "training.progress",
               "training.progress_interval_s", "tracking.flush_interval_s", "data.synth_workers"}


def explain(settings: Settings) -> list[tuple[str, str, str, str]]:
    """Rows of (key, shown value, source, description) for every setting, secrets masked."""
    sources = settings.sources
    return [(key, _show(value), sources.get(key, "default"), description)
            for key, value, description in walk(settings)]


def to_display_dict(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain JSON-able data, secrets masked."""
    data = settings.model_dump(mode="json")
    for key, value, _ in walk(settings):
        if isinstance(value, SecretStr):
            node = data
            for part in key.split(".")[:-1]:
                node = node[part]
            node[key.split(".")[-1]] = MASK
    return data


def run_params(settings: Settings) -> dict[str, Any]:
    """Flattened settings that shape a run, for MLflow params. Secrets are left out."""
    return {key: value for key, value, _ in walk(settings)
            if key not in SECRET_KEYS and not isinstance(value, SecretStr) and key not in _NOT_PARAMS}


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if value is None:
        return "—"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)
