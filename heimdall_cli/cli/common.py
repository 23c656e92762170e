"""Helpers every command uses: resolve settings, open the tracker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heimdall_cli.settings import ResolvedSettings, Settings
    from heimdall_cli.tracking import Tracker


def resolve(config: Path | None, flags: dict[str, Any] | None = None) -> ResolvedSettings:
    """Resolve settings with the documented precedence (flags > env > .env > file > defaults)."""
    from heimdall_cli.settings import resolve_settings

    return resolve_settings(config, flags)


def settings_for(config: Path | None, tracking_uri: str | None = None, **dotted: Any) -> Settings:
    """Resolve settings; ``dotted`` maps ``"tracking.experiment"``-style keys to flag values."""
    from heimdall_cli.settings import set_flag

    flags: dict[str, Any] = {}
    set_flag(flags, "tracking.uri", tracking_uri)
    for key, value in dotted.items():
        set_flag(flags, key.replace("__", "."), value)
    return resolve(config, flags).settings


def query_tracker(settings: Settings) -> Tracker:
    """A fail-fast tracker for query commands."""
    from heimdall_cli.tracking import open_tracker

    return open_tracker(settings, patient=False)
