"""Shell completion from the backend: run ids, model versions and aliases.

Install it once with ``heimdall --install-completion`` (bash, zsh, fish). Suggestions come
from the fast query path (no MLflow import) with a 2-second limit; a slow or dead backend
gives no suggestions rather than a stuck shell.
"""

from __future__ import annotations

from typing import Any

import typer

TIMEOUT_S = 2.0
LIMIT = 50


def _source(ctx: typer.Context) -> Any:
    from heimdall_cli.settings import load_settings, set_flag
    from heimdall_cli.tracking.readers import open_source

    params = dict(getattr(ctx, "params", None) or {})
    flags: dict[str, Any] = {}
    set_flag(flags, "tracking.uri", params.get("tracking_uri"))
    set_flag(flags, "tracking.experiment", params.get("experiment"))
    set_flag(flags, "tracking.model_name", params.get("name"))
    set_flag(flags, "tracking.query_timeout_s", TIMEOUT_S)
    return open_source(load_settings(params.get("config"), flags))


def _safely(fn: Any) -> list[Any]:
    import threading

    box: list[list[Any]] = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception:  # completion never prints errors into the shell
            box.append([])

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S + 1)
    return box[0] if box else []


def run_ids(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Newest runs of the experiment whose id starts with what was typed, with their names as help."""
    def ask() -> list[tuple[str, str]]:
        source = _source(ctx)
        runs = source.search([source.find_experiment()], None, None, LIMIT)
        return [(r.run_id, f"{r.name} ({r.status})") for r in runs if r.run_id.startswith(incomplete)]

    return _safely(ask)


def versions(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Versions of the registered model, newest first, with their aliases as help."""
    def ask() -> list[tuple[str, str]]:
        source = _source(ctx)
        found = source.search_versions(source.settings.tracking.model_name, LIMIT)
        return [(str(v.version), ", ".join(v.aliases) or v.status) for v in found
                if str(v.version).startswith(incomplete)]

    return _safely(ask)


def aliases(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Aliases of the registered model, with the version each points at."""
    def ask() -> list[tuple[str, str]]:
        source = _source(ctx)
        held = source.registered_model_aliases(source.settings.tracking.model_name) or {}
        return [(a, f"version {v}") for a, v in sorted(held.items()) if a.startswith(incomplete)]

    return _safely(ask)
