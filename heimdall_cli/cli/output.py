"""One output object for every command: human tables, ``--json`` or ``-q`` (bare values).

Results go to stdout; progress, hints, warnings and errors go to stderr, so stdout
stays machine-readable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from heimdall_cli.redact import scrub


def stderr_console() -> Any:
    """A Rich console on stderr (colour only on a terminal)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Any:
    """A Rich console on stdout for human results."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


class Output:
    """Render a command's result in the mode the user asked for."""

    def __init__(self, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet and not json_mode

    def result(
        self,
        data: Any,
        *,
        human: Callable[[Any], None] | None = None,
        bare: str | Sequence[str] | None = None,
    ) -> None:
        """Print ``data`` as JSON, the ``bare`` value(s) for -q, or call ``human(console)``."""
        if self.json_mode:
            sys.stdout.write(scrub(json.dumps(data, indent=2, default=_json_default, sort_keys=False)) + "\n")
        elif self.quiet:
            values = [bare] if isinstance(bare, str) else list(bare or [])
            for value in values:
                sys.stdout.write(scrub(value) + "\n")
        elif human is not None:
            human(stdout_console())
        sys.stdout.flush()

    def info(self, message: str) -> None:
        """A progress or status line on stderr (suppressed by -q)."""
        if not self.quiet:
            stderr_console().print(scrub(message))

    def warn(self, message: str) -> None:
        """A warning line on stderr (always shown)."""
        stderr_console().print(f"[yellow]Warning:[/yellow] {escape(scrub(message))}")


def escape(text: str) -> str:
    """Escape Rich markup in user-provided text."""
    from rich.markup import escape as _escape

    return _escape(text)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], **kwargs: Any) -> Any:
    """A Rich table with the project's look."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold", **kwargs)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(c if hasattr(c, "__rich_console__") else escape(scrub(_cell(c))) for c in row))
    return t


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def run_id_cell(run_id: str | None, wide: bool = False) -> str | None:
    """A run id as tables show it: the first 8 characters, as git shows commits (any unique prefix is
    accepted back wherever a run id is); ``wide``: all 32."""
    from heimdall_cli.tracking.search import SHORT_ID

    return run_id if wide or not run_id else run_id[:SHORT_ID]


def timestamp(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO-8601 UTC string."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "__fspath__"):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return str(value)


def render_error(message: str, hint: str | None = None, *, detail: str | None = None) -> None:
    """The one place errors are printed: one line, an optional hint, details with -v."""
    console = stderr_console()
    console.print(f"[bold red]Error:[/bold red] {escape(scrub(message))}")
    if hint:
        console.print(f"[dim]Hint:[/dim] {escape(scrub(hint))}")
    if detail:
        console.print(escape(scrub(detail)), style="dim")
