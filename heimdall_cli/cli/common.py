"""What every command does first: resolve settings, open the tracker, pick the output mode."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heimdall_cli.cli.output import Output
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.tracking.search import RunSource


def settings_for(config: Path | None, tracking_uri: str | None = None, flags: dict[str, Any] | None = None,
                 **dotted: Any) -> Settings:
    """Resolve settings (flags > env > .env > file > defaults); ``dotted`` maps ``"tracking.experiment"``-style
    keys to flag values (None: not given)."""
    from heimdall_cli.settings import load_settings, set_flag

    flags = dict(flags or {})
    set_flag(flags, "tracking.uri", tracking_uri)
    for key, value in dotted.items():
        set_flag(flags, key, value)
    return load_settings(config, flags)


def query_tracker(config: Path | None, tracking_uri: str | None = None, **dotted: Any) -> Tracker:
    """A fail-fast tracker (queries, registry changes) for the resolved settings."""
    from heimdall_cli.tracking import open_tracker

    return open_tracker(settings_for(config, tracking_uri, **dotted), patient=False)


def query_source(config: Path | None, tracking_uri: str | None = None, **dotted: Any) -> RunSource:
    """The fast read-only source for run queries (MLflow is imported only for what it does not handle)."""
    from heimdall_cli.tracking.readers import open_source

    return open_source(settings_for(config, tracking_uri, **dotted))


def make_output(json_out: bool = False, quiet: bool = False) -> Output:
    """The output object for ``--json`` / ``-q`` / human tables."""
    from heimdall_cli.cli.output import Output

    return Output(json_mode=json_out, quiet=quiet)
