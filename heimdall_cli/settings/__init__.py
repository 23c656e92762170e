"""Layered configuration: the settings model, its sources, the one resolver, and its display."""

from typing import Any

from heimdall_cli.settings.display import explain, run_params, to_display_dict
from heimdall_cli.settings.models import (
    SECRET_KEYS,
    DataSettings,
    Settings,
    StorageSettings,
    TrackingSettings,
    TrainingSettings,
)
from heimdall_cli.settings.resolve import load_settings, parse_overrides, set_flag
from heimdall_cli.settings.world import FeatureSettings, WorldSettings

__all__ = ["SECRET_KEYS", "DataSettings", "FeatureSettings", "Settings", "StorageSettings", "TrackingSettings",
           "TrainingSettings", "WorldSettings", "explain", "load_settings", "parse_overrides", "run_params", "set_flag",
           "to_display_dict"]


def __getattr__(name: str) -> Any:
    """``from heimdall_cli.settings import settings`` is ``load_settings()``.

    (The spelling of the original ``MLflowTracker`` usage example.)
    """
    if name == "settings":
        return load_settings()
    raise AttributeError(name)
